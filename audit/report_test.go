package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// The report fixture, testdata/report/, is a day's log with fixed times and
// the trust anchors it checks against: audit.jsonl, ca.pub, people.yaml.
// `go test -update` rewrites the golden reports (report*.md, report*.html)
// from it; it writes the fixture itself only when audit.jsonl is missing,
// since new keys and signatures change its bytes: delete the file to
// change the story.
const reportDir = "testdata/report"

var reportBase = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

// at is a time of the fixture day: hours, minutes and seconds after 09:00.
func at(h, m, s int) time.Time {
	return reportBase.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

type timedRec struct {
	t time.Time
	rec
}

// writeReportFixture writes the fixture log and its trust anchors.
func writeReportFixture(t *testing.T) {
	f := newGrantsFixture(t)
	r1 := f.request("req-01", "alice", "read", "demo/app", "refs/heads/main", "", "read the release notes")
	r1.TTL = "1h0m0s"
	r2 := f.request("req-02", "alice", "write", "demo/app", "refs/heads/feature/*", "2h0m0s", "login form", Step{Group: "leads", Count: 1})
	r3 := f.request("req-03", "dave", "force", "demo/app", "refs/heads/main", "1h0m0s", "revert <bad> merge | *urgent*", Step{Group: "leads", Count: 2})
	r4 := f.request("req-04", "dave", "write", "infra/terraform", "refs/heads/main", "4h0m0s", "bump provider")
	r4.Steps = []Step{{Group: "security", Count: 1}}
	r4.Rule = "reviewed"
	r5 := f.request("req-05", "frank", "read", "docs/handbook", "*", "1h0m0s", "onboarding")
	const zero, c1, c2, c3 = "0000000000000000000000000000000000000000", "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222", "3333333333333333333333333333333333333333"
	git := func(serial uint64, keyID, repo, service, decision, reason string, updates ...map[string]string) map[string]any {
		m := map[string]any{"serial": serial, "key_id": keyID, "repo": repo, "service": service, "decision": decision,
			"bytes_in": 1200, "bytes_out": 48000, "duration_ns": int64(850 * time.Millisecond), "remote": "192.0.2.10:51234"}
		if reason != "" {
			m["reason"] = reason
		}
		if len(updates) > 0 {
			m["updates"] = updates
		}
		return m
	}
	upd := func(ref, old, new, result, reason string) map[string]string {
		m := map[string]string{"ref": ref, "old": old, "new": new, "result": result}
		if reason != "" {
			m["reason"] = reason
		}
		return m
	}
	bgSerial := ca.BreakGlassBit | 1
	recs := []timedRec{
		{at(0, 0, 0), rec{"", KindRequest, "alice", r1}},
		{at(0, 0, 1), rec{"", KindIssue, "jitssh", f.issue(r1, 1, time.Hour, at(0, 0, 1))}},
		{at(0, 5, 0), rec{"", KindGit, "alice/req-01", git(1, "alice/req-01", "demo/app", "git-upload-pack", "allow", "")}},
		{at(0, 10, 0), rec{"", KindRequest, "alice", r2}},
		{at(0, 14, 0), rec{"", KindApprove, "bob", f.decide(KindApprove, r2, "bob", "", "looks fine")}},
		{at(0, 14, 1), rec{"", KindIssue, "jitssh", f.issue(r2, 2, 2*time.Hour, at(0, 14, 1), "bob")}},
		{at(0, 20, 0), rec{"", KindGit, "alice/req-01", git(1, "alice/req-01", "demo/app", "git-upload-pack", "allow", "")}},
		{at(0, 30, 0), rec{"", KindGit, "alice/req-02", git(2, "alice/req-02", "demo/app", "git-receive-pack", "allow", "",
			upd("refs/heads/feature/login", c1, c2, "updated", ""))}},
		{at(0, 35, 0), rec{"", KindGit, "alice/req-02", git(2, "alice/req-02", "demo/app", "git-receive-pack", "allow", "",
			upd("refs/heads/main", c1, c2, "refused", "not covered by the certificate's grants"))}},
		{at(0, 55, 0), rec{"", KindRelease, "alice", EndData{Subject: Subject{ID: "req-02", Serial: 2}, By: "alice", Reason: "merged"}}},
		{at(1, 0, 0), rec{"", KindRequest, "dave", r3}},
		{at(1, 5, 0), rec{"", KindGit, "alice/req-02", git(2, "alice/req-02", "demo/app", "git-upload-pack", "deny", "certificate revoked")}},
		{at(1, 12, 0), rec{"", KindApprove, "bob", f.decide(KindApprove, r3, "bob", "", "")}},
		{at(1, 41, 0), rec{"", KindApprove, "carol", f.decide(KindApprove, r3, "carol", "30m0s", "half an hour is plenty")}},
		{at(1, 41, 1), rec{"", KindIssue, "jitssh", f.issue(r3, 3, 30*time.Minute, at(1, 41, 1), "bob", "carol")}},
		{at(1, 45, 0), rec{"", KindGit, "dave/req-03", git(3, "dave/req-03", "demo/app", "git-receive-pack", "allow", "",
			upd("refs/heads/main", c2, c3, "updated", ""))}},
		{at(1, 58, 0), rec{"", KindRevoke, "carol", RevokeData{Subject: Subject{ID: "req-03", Serial: 3}, By: "carol", Reason: "done, closing early"}}},
		{at(2, 0, 0), rec{"", KindRequest, "dave", r4}},
		{at(2, 20, 0), rec{"", KindDeny, "carol", f.decide(KindDeny, r4, "carol", "", "use the change process")}},
		{at(2, 30, 0), rec{"", KindCASign, "erin", CASignData{Serial: bgSerial, KeyID: "erin/incident-4711",
			Principals: []string{"git:force:infra/terraform:*"}, ValidAfter: at(2, 29, 0), ValidBefore: at(3, 30, 0),
			PublicKey: "SHA256:Jk1yXlqvUd3J6RgCYLtW0j4gV6dN5p2x3R2n0Ew7a1s", CA: ssh.FingerprintSHA256(f.ca.PublicKey())}}},
		{at(2, 40, 0), rec{"", KindGit, "erin/incident-4711", git(bgSerial, "erin/incident-4711", "infra/terraform", "git-receive-pack", "allow", "",
			upd("refs/heads/main", c1, zero, "updated", ""))}},
		{at(3, 0, 0), rec{"", KindGit, "mallory/x", git(99, "mallory/x", "demo/app", "git-upload-pack", "deny", "certificate not signed by a trusted CA")}},
		{at(3, 10, 0), rec{"", KindRequest, "frank", r5}},
		{at(3, 10, 1), rec{"", KindIssue, "jitssh", f.issue(r5, 4, time.Hour, at(3, 10, 1))}},
		{at(3, 30, 0), rec{"", KindGit, "frank/req-05", git(4, "frank/req-05", "docs/handbook", "git-upload-pack", "allow", "")}},
	}
	require.NoError(t, os.MkdirAll(reportDir, 0o755))
	var log bytes.Buffer
	h := genesis
	for _, r := range recs {
		data, err := encodeData(r.data)
		require.NoError(t, err)
		e, line, err := h.next(r.kind, r.actor, data, r.t)
		require.NoError(t, err)
		log.Write(line)
		log.WriteByte('\n')
		h = advance(e.Seq, line)
	}
	require.NoError(t, os.WriteFile(filepath.Join(reportDir, "audit.jsonl"), log.Bytes(), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(reportDir, "ca.pub"), ssh.MarshalAuthorizedKey(f.ca.PublicKey()), 0o644))
	var people strings.Builder
	people.WriteString("# The people of the report fixture, as in the daemon's config.\npeople:\n")
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		people.WriteString("  - name: " + name + "\n    keys: [\"" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.signers[name].PublicKey()))) + "\"]\n")
		people.WriteString("    groups: [" + strings.Join(fixturePeople[name], ", ") + "]\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(reportDir, "people.yaml"), []byte(people.String()), 0o644))
}

// readReportFixture returns the fixture's entries and its verified summary.
func readReportFixture(t *testing.T) ([]Entry, Summary) {
	t.Helper()
	f, err := os.Open(filepath.Join(reportDir, "audit.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	ix, err := BuildIndex(f)
	require.NoError(t, err)
	_, err = f.Seek(0, 0)
	require.NoError(t, err)
	sum, err := Verify(f)
	require.NoError(t, err)
	return ix.List(Filter{}), sum
}

func TestReportGolden(t *testing.T) {
	if _, err := os.Stat(filepath.Join(reportDir, "audit.jsonl")); *update && errors.Is(err, fs.ErrNotExist) {
		writeReportFixture(t)
	}
	entries, sum := readReportFixture(t)
	for _, tt := range []struct {
		name  string
		since time.Time
	}{
		{"report", time.Time{}},
		{"report-since", at(1, 30, 0)},
	} {
		r := BuildReport(entries, tt.since)
		r.LogEntries, r.Head = sum.Entries, sum.Head
		for _, format := range []struct {
			ext    string
			render func(*Report, *bytes.Buffer) error
		}{
			{"md", func(r *Report, b *bytes.Buffer) error { return r.Markdown(b) }},
			{"html", func(r *Report, b *bytes.Buffer) error { return r.HTML(b) }},
		} {
			var got bytes.Buffer
			require.NoError(t, format.render(r, &got))
			golden := filepath.Join(reportDir, tt.name+"."+format.ext)
			if *update {
				require.NoError(t, os.WriteFile(golden, got.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			require.Equal(t, string(want), got.String(), "%s changed; if on purpose, rerun with -update", golden)
		}
	}
}

// TestReportFixtureChecks keeps the fixture honest: it passes the checks an
// auditor runs, with the anchors beside it.
func TestReportFixtureChecks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(reportDir, "people.yaml"))
	require.NoError(t, err)
	// The daemon's parser (approvals) imports this package, so the
	// fixture's plain people list is read here by hand.
	var list struct {
		People []struct {
			Name   string   `yaml:"name"`
			Keys   []string `yaml:"keys"`
			Groups []string `yaml:"groups"`
		} `yaml:"people"`
	}
	require.NoError(t, yaml.Unmarshal(data, &list))
	people := map[string]Person{}
	for _, p := range list.People {
		person := Person{Groups: p.Groups}
		for _, line := range p.Keys {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			require.NoError(t, err)
			person.Keys = append(person.Keys, k)
		}
		people[p.Name] = person
	}
	caLine, err := os.ReadFile(filepath.Join(reportDir, "ca.pub"))
	require.NoError(t, err)
	caKey, _, _, _, err := ssh.ParseAuthorizedKey(caLine)
	require.NoError(t, err)
	sum, err := checkFile(t, filepath.Join(reportDir, "audit.jsonl"), CheckOptions{CAKeys: []ssh.PublicKey{caKey}, People: people})
	require.NoError(t, err)
	assert.Equal(t, 4, sum.Issued)
	assert.Equal(t, 1, sum.BreakGlass)
	assert.Equal(t, 1, sum.Denials)
}

func TestBuildReport(t *testing.T) {
	entries, _ := readReportFixture(t)
	r := BuildReport(entries, time.Time{})
	require.Len(t, r.Certs, 5)
	byserial := make(map[uint64]CertRecord)
	for _, c := range r.Certs {
		byserial[c.Serial] = c
	}
	bg := byserial[ca.BreakGlassBit|1]
	assert.True(t, bg.BreakGlass)
	assert.Equal(t, "erin", bg.Requester)
	assert.Equal(t, "erin", bg.SignedBy)

	tests := []struct {
		serial                  uint64
		state                   string
		held, asked, wait       time.Duration
		fetches, pushes, refuse int
		approvers               []string
	}{
		{1, StateExpired, time.Hour, time.Hour, time.Second, 2, 0, 0, nil},
		{2, StateReleased, 41*time.Minute - time.Second, 2 * time.Hour, 4*time.Minute + time.Second, 0, 2, 1, []string{"bob"}},
		{3, StateRevoked, 17*time.Minute - time.Second, time.Hour, 41*time.Minute + time.Second, 0, 1, 0, []string{"bob", "carol"}},
		{4, StateActive, 20*time.Minute - time.Second, time.Hour, time.Second, 1, 0, 0, nil},
	}
	for _, tt := range tests {
		c := byserial[tt.serial]
		assert.Equal(t, tt.state, c.State(r.Until), "serial %d state", tt.serial)
		assert.Equal(t, tt.held, c.Held(r.Until), "serial %d held", tt.serial)
		assert.Equal(t, tt.asked, c.Asked, "serial %d asked", tt.serial)
		assert.Equal(t, tt.wait, c.Wait(), "serial %d wait", tt.serial)
		assert.Equal(t, [3]int{tt.fetches, tt.pushes, tt.refuse}, [3]int{c.Fetches, c.Pushes, c.Refused}, "serial %d Git operations", tt.serial)
		assert.Equal(t, tt.approvers, c.Approvers, "serial %d approvers", tt.serial)
	}
	assert.Equal(t, Stats{N: 2, Median: 4*time.Minute + time.Second, P90: 41*time.Minute + time.Second, Max: 41*time.Minute + time.Second}, r.Wait)
	assert.Equal(t, 2, r.AutoApproved)
	require.Len(t, r.Denials, 1)
	assert.Equal(t, Denial{Seq: 19, Time: at(2, 20, 0), RequestID: "req-04", Requester: "dave", Grant: "git:write:infra/terraform:refs/heads/main",
		By: "carol", Reason: "use the change process"}, r.Denials[0])
	require.Len(t, r.Revocations, 1)
	assert.Equal(t, uint64(3), r.Revocations[0].Serial)
	assert.Equal(t, uint64(17), r.Revocations[0].Seq)
	assert.Equal(t, 2, r.GitRefusedN)
	require.Len(t, r.GitUnknown, 1)
	assert.Equal(t, uint64(99), r.GitUnknown[0].Serial)
	require.NotEmpty(t, r.ByRepo)
	assert.Equal(t, Tally{Name: "demo/app", Certs: 3, Read: 1, Write: 1, Force: 1, Others: []string{"alice", "dave"},
		Asked: 4 * time.Hour, Held: time.Hour + 58*time.Minute - 2*time.Second, GitOps: 6}, r.ByRepo[0])

	since := BuildReport(entries, at(1, 30, 0))
	assert.Len(t, since.Certs, 3, "certificates issued from since on")
	assert.Equal(t, 2, since.Requests)
	assert.Equal(t, Stats{N: 1, Median: 41*time.Minute + time.Second, P90: 41*time.Minute + time.Second, Max: 41*time.Minute + time.Second}, since.Wait,
		"a request before since still times its certificate")
	assert.Equal(t, 1, since.GitRefusedN)

	empty := BuildReport(nil, time.Time{})
	var md bytes.Buffer
	require.NoError(t, empty.Markdown(&md))
	assert.Contains(t, md.String(), "No certificates were issued.")
}

// TestReportEscapes puts markup in every free-text field a person controls
// and checks that neither form lets it through.
func TestReportEscapes(t *testing.T) {
	const evil = "<script>alert(1)</script> | [x](javascript:alert(1)) *b*\n# h"
	data := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return b
	}
	entries := []Entry{
		{Seq: 1, Time: reportBase, Kind: KindRequest, Actor: "alice", Data: data(RequestData{ID: "r1", Requester: "alice", Grant: "git:read:demo/app:*", Reason: evil})},
		{Seq: 2, Time: reportBase.Add(time.Minute), Kind: KindDeny, Actor: "bob", Data: data(DecisionData{Subject: Subject{ID: "r1"}, By: "bob<i>", Reason: evil})},
		{Seq: 3, Time: reportBase.Add(2 * time.Minute), Kind: KindCASign, Actor: "erin", Data: data(CASignData{Serial: 5, KeyID: "<b>erin</b>/x",
			Principals: []string{"git:read:demo/app:*"}, ValidAfter: reportBase, ValidBefore: reportBase.Add(time.Hour)})},
	}
	r := BuildReport(entries, time.Time{})
	var html, md bytes.Buffer
	require.NoError(t, r.HTML(&html))
	require.NoError(t, r.Markdown(&md))
	for _, bad := range []string{"<script>", "<i>", "<b>"} {
		assert.NotContains(t, html.String(), bad)
		assert.NotContains(t, md.String(), bad)
	}
	assert.Contains(t, html.String(), "&lt;script&gt;")
	assert.NotContains(t, md.String(), "| [x]", "no cell break or link")
	assert.Contains(t, md.String(), `&lt;script&gt;alert(1)&lt;/script&gt; \| \[x\](javascript:alert(1)) \*b\* \# h`)
	assert.NotContains(t, html.String(), "http://", "no external assets")
	assert.NotContains(t, html.String(), "https://")
}

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{1499 * time.Millisecond, "1s"},
		{45 * time.Second, "45s"},
		{4 * time.Minute, "4m"},
		{4*time.Minute + 30*time.Second, "4m30s"},
		{time.Hour + 5*time.Minute + 10*time.Second, "1h05m"},
		{47 * time.Hour, "47h00m"},
		{50 * time.Hour, "2d02h"},
		{-90 * time.Second, "-1m30s"},
	} {
		assert.Equal(t, tt.want, FormatDuration(tt.d), "FormatDuration(%v)", tt.d)
	}
}

func TestStatsOf(t *testing.T) {
	m := time.Minute
	for _, tt := range []struct {
		in   []time.Duration
		want Stats
	}{
		{nil, Stats{}},
		{[]time.Duration{3 * m}, Stats{1, 3 * m, 3 * m, 3 * m}},
		{[]time.Duration{4 * m, 1 * m, 3 * m, 2 * m}, Stats{4, 2 * m, 4 * m, 4 * m}},
		{[]time.Duration{10 * m, 1 * m, 2 * m, 3 * m, 4 * m, 5 * m, 6 * m, 7 * m, 8 * m, 9 * m}, Stats{10, 5 * m, 9 * m, 10 * m}},
	} {
		assert.Equal(t, tt.want, statsOf(tt.in), "statsOf(%v)", tt.in)
	}
}

func TestCertState(t *testing.T) {
	issued := reportBase
	c := CertRecord{Issued: issued, ValidAfter: issued.Add(-time.Minute), ValidBefore: issued.Add(time.Hour)}
	revoked := c
	revoked.Ended, revoked.EndKind = issued.Add(10*time.Minute), KindRevoke
	released := c
	released.Ended, released.EndKind = issued.Add(10*time.Minute), KindRelease
	late := c
	late.Ended, late.EndKind = issued.Add(2*time.Hour), KindRevoke
	for _, tt := range []struct {
		name  string
		c     CertRecord
		now   time.Time
		state string
		held  time.Duration
	}{
		{"before expiry", c, issued.Add(5 * time.Minute), StateActive, 5 * time.Minute},
		{"at expiry", c, issued.Add(time.Hour), StateExpired, time.Hour},
		{"revoked", revoked, issued.Add(30 * time.Minute), StateRevoked, 10 * time.Minute},
		{"revoked later", revoked, issued.Add(5 * time.Minute), StateActive, 5 * time.Minute},
		{"released", released, issued.Add(3 * time.Hour), StateReleased, 10 * time.Minute},
		{"revoked after expiry", late, issued.Add(3 * time.Hour), StateExpired, time.Hour},
	} {
		assert.Equal(t, tt.state, tt.c.State(tt.now), tt.name)
		assert.Equal(t, tt.held, tt.c.Held(tt.now), tt.name)
	}
}

func TestSummarize(t *testing.T) {
	entries, _ := readReportFixture(t)
	want := map[uint64]string{
		1:  `alice asks read on demo/app refs/heads/main for 1h0m0s (req-01): "read the release notes"`,
		5:  `bob approves req-02: "looks fine"`,
		8:  `allow git-receive-pack demo/app serial 2; refs/heads/feature/login 1111111..2222222 updated`,
		10: `release serial 2 req-02 by alice: "merged"`,
		14: `carol approves req-03 for 30m0s: "half an hour is plenty"`,
		17: `revoke serial 3 req-03 by carol: "done, closing early"`,
		20: `break-glass serial 0x8000000000000001 erin/incident-4711 git:force:infra/terraform:* until 2025-03-03T12:30:00Z`,
		21: `allow git-receive-pack infra/terraform serial 0x8000000000000001; refs/heads/main 1111111..0000000 updated`,
		22: `deny git-upload-pack demo/app serial 99: "certificate not signed by a trusted CA"`,
	}
	for _, e := range entries {
		if w, ok := want[e.Seq]; ok {
			assert.Equal(t, w, Summarize(e), "seq %d", e.Seq)
		}
	}
	assert.Equal(t, `"{\"x\":\"\\n\"}"`, Summarize(Entry{Kind: "custom", Data: json.RawMessage(`{"x":"\n"}`)}))
}
