package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// people is who the grants fixture knows, and their groups.
var fixturePeople = map[string][]string{
	"alice": {"dev"},
	"bob":   {"dev", "leads"},
	"carol": {"leads", "security"},
	"dave":  {"dev"},
	"erin":  {"ops"},
	"frank": {"dev"},
}

// grantsFixture signs what the daemon and its users would put on the log:
// requests and decisions with each person's own key, certificates with a
// real CA.
type grantsFixture struct {
	t       testing.TB
	ca      *ca.Authority
	otherCA *ca.Authority
	signers map[string]ssh.Signer // everyone in fixturePeople, and mallory
}

func newGrantsFixture(t testing.TB) *grantsFixture {
	t.Helper()
	f := &grantsFixture{t: t, signers: make(map[string]ssh.Signer)}
	f.ca, f.otherCA = newTestCA(t), newTestCA(t)
	for name := range fixturePeople {
		f.signers[name] = newTestSigner(t)
	}
	f.signers["mallory"] = newTestSigner(t)
	return f
}

func newTestCA(t testing.TB) *ca.Authority {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	a, err := ca.New(priv)
	require.NoError(t, err)
	return a
}

func newTestSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// opts are the trust anchors an auditor would hold.
func (f *grantsFixture) opts() CheckOptions {
	people := make(map[string]Person)
	for name, groups := range fixturePeople {
		people[name] = Person{Keys: []ssh.PublicKey{f.signers[name].PublicKey()}, Groups: groups}
	}
	return CheckOptions{CAKeys: []ssh.PublicKey{f.ca.PublicKey()}, People: people}
}

func (f *grantsFixture) sign(by, namespace string, msg []byte) string {
	f.t.Helper()
	sig, err := SignStatement(f.signers[by], namespace, msg)
	require.NoError(f.t, err)
	return sig
}

// request makes a request by who for a fresh key, signed by who, asking
// for ttl; the policy grants ttl too.
func (f *grantsFixture) request(id, who, access, repo, ref, ttl, reason string, steps ...Step) RequestData {
	f.t.Helper()
	key := newTestSigner(f.t).PublicKey()
	st := RequestStatement{Kind: KindRequest, Requester: who, Repo: repo, Ref: ref, Access: access, TTL: ttl, Reason: reason,
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))}
	rule := "auto"
	if len(steps) > 0 {
		rule = "reviewed"
	}
	return RequestData{ID: id, Requester: who, Repo: repo, Ref: ref, Access: access,
		Grant: "git:" + access + ":" + repo + ":" + ref, TTL: ttl, Reason: reason, Rule: rule, Steps: steps,
		PublicKey: st.PublicKey, Statement: string(st.Message()), Signature: f.sign(who, NamespaceRequest, st.Message())}
}

// decide makes kind's decision on req by by, signed by by.
func (f *grantsFixture) decide(kind string, req RequestData, by, ttl, reason string) DecisionData {
	f.t.Helper()
	st := DecisionStatement{Kind: kind, Request: req.ID, RequestSHA256: StatementHash([]byte(req.Statement)), By: by, TTL: ttl, Reason: reason}
	ns := NamespaceApprove
	if kind == KindDeny {
		ns = NamespaceDeny
	}
	return DecisionData{Subject: Subject{ID: req.ID}, By: by, TTL: ttl, Reason: reason, Statement: string(st.Message()), Signature: f.sign(by, ns, st.Message())}
}

// issue certifies req's key for its grant with the fixture's CA, its clock
// at now.
func (f *grantsFixture) issue(req RequestData, serial uint64, ttl time.Duration, now time.Time, approvers ...string) IssueData {
	f.t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	require.NoError(f.t, err)
	return f.issueCert(f.ca, req, pub, []string{req.Grant}, serial, ttl, now, approvers...)
}

func (f *grantsFixture) issueCert(a *ca.Authority, req RequestData, pub ssh.PublicKey, grants []string, serial uint64, ttl time.Duration, now time.Time, approvers ...string) IssueData {
	f.t.Helper()
	gs := make([]principals.Grant, len(grants))
	for i, g := range grants {
		var err error
		gs[i], err = principals.Parse(g)
		require.NoError(f.t, err)
	}
	a.Now = func() time.Time { return now }
	cert, err := a.Sign(ca.CertRequest{PublicKey: pub, KeyID: req.Requester + "/" + req.ID, Grants: gs, TTL: ttl}, fixedSerial(serial))
	require.NoError(f.t, err)
	return IssueData{ID: req.ID, Serial: cert.Serial, KeyID: cert.KeyId, Requester: req.Requester, Principals: cert.ValidPrincipals,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Approvers: approvers, Rule: req.Rule, Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))}
}

// later defers signing a certificate to the moment its entry is appended,
// as the daemon signs just before it records the issue.
func later(issue func(now time.Time) IssueData) func() any {
	return func() any { return issue(time.Now()) }
}

type fixedSerial uint64

func (s fixedSerial) NextSerial() (uint64, error) { return uint64(s), nil }

// rec is one entry of a story before it is appended.
type rec struct {
	name  string
	kind  string
	actor string
	data  any
}

// story is a log in the making; its records become entries 1, 2, 3, ...
type story []rec

func (s story) index(name string) int {
	i := slices.IndexFunc(s, func(r rec) bool { return r.name == name })
	if i < 0 {
		panic("no record " + name)
	}
	return i
}

// seq is the seq the named record gets.
func (s story) seq(name string) uint64 { return uint64(s.index(name) + 1) }

func (s story) set(name string, data any) story {
	out := slices.Clone(s)
	out[s.index(name)].data = data
	return out
}

func (s story) remove(name string) story {
	return slices.Delete(slices.Clone(s), s.index(name), s.index(name)+1)
}

func (s story) insertBefore(name string, r rec) story {
	return slices.Insert(slices.Clone(s), s.index(name), r)
}

// write appends the story to a new log with Log.Append and returns its path.
func (s story) write(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})
	for _, r := range s {
		data := r.data
		if sign, ok := data.(func() any); ok {
			data = sign()
		}
		_, err := l.Append(r.kind, r.actor, data)
		require.NoError(t, err, r.name)
	}
	require.NoError(t, l.Close())
	return path
}

// goodStory is a log that passes: an approved write, a two-approver force
// push with a shorter TTL from one approver, an automatic read, a denial,
// a break-glass signing, Git use, a revocation and a release.
func goodStory(f *grantsFixture) (story, map[string]RequestData) {
	now := time.Now()
	reqs := map[string]RequestData{
		"r1": f.request("r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", Step{Group: "leads", Count: 1}),
		"r2": f.request("r2", "alice", "force", "demo/app", "refs/heads/main", "1h0m0s", "revert", Step{Group: "leads", Count: 2}),
		"r3": f.request("r3", "dave", "read", "demo/app", "*", "8h0m0s", "read the code"),
		"r4": f.request("r4", "dave", "write", "infra/tf", "refs/heads/main", "2h0m0s", "tweak"),
	}
	s := story{
		{"request r1", KindRequest, "alice", reqs["r1"]},
		{"approve r1", KindApprove, "bob", f.decide(KindApprove, reqs["r1"], "bob", "", "ok")},
		{"issue r1", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(reqs["r1"], 1, time.Hour, now, "bob") })},
		{"git 1", KindGit, "alice/r1", map[string]any{"serial": 1, "repo": "demo/app", "service": "git-receive-pack", "decision": "allow"}},
		{"request r2", KindRequest, "alice", reqs["r2"]},
		{"approve r2 bob", KindApprove, "bob", f.decide(KindApprove, reqs["r2"], "bob", "", "")},
		{"approve r2 carol", KindApprove, "carol", f.decide(KindApprove, reqs["r2"], "carol", "30m0s", "half an hour is enough")},
		{"issue r2", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(reqs["r2"], 2, 30*time.Minute, now, "bob", "carol") })},
		{"request r3", KindRequest, "dave", reqs["r3"]},
		{"issue r3", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(reqs["r3"], 3, 8*time.Hour, now) })},
		{"request r4", KindRequest, "dave", reqs["r4"]},
		{"deny r4", KindDeny, "bob", f.decide(KindDeny, reqs["r4"], "bob", "", "use the change process")},
		{"break-glass", KindCASign, "erin", CASignData{Serial: ca.BreakGlassBit | 1, KeyID: "erin/incident-1",
			Principals: []string{"git:force:infra/tf:*"}, ValidAfter: now.Add(-time.Minute).UTC(), ValidBefore: now.Add(time.Hour).UTC()}},
		{"revoke r2", KindRevoke, "carol", RevokeData{Subject: Subject{ID: "r2", Serial: 2}, By: "carol", Reason: "done"}},
		{"release r1", KindRelease, "alice", EndData{Subject: Subject{ID: "r1", Serial: 1}, By: "alice"}},
	}
	return s, reqs
}

func TestCheckGrants(t *testing.T) {
	f := newGrantsFixture(t)
	good, reqs := goodStory(f)
	r1, r2, r4 := reqs["r1"], reqs["r2"], reqs["r4"]
	r1Key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r1.PublicKey))
	require.NoError(t, err)
	strangerKey := newTestSigner(t).PublicKey()

	tests := []struct {
		name  string
		story story
		at    string // the record the failure must name
		want  error
	}{
		{name: "good story", story: good},
		{name: "issue without approval", story: good.remove("approve r1"), at: "issue r1", want: ErrUnapprovedIssue},
		{name: "approval forged with another person's key", at: "approve r1", want: ErrStatementSignature,
			story: good.set("approve r1", func() DecisionData {
				d := f.decide(KindApprove, r1, "mallory", "", "ok")
				d.By = "bob"
				st := DecisionStatement{Kind: KindApprove, Request: "r1", RequestSHA256: StatementHash([]byte(r1.Statement)), By: "bob", Reason: "ok"}
				d.Statement, d.Signature = string(st.Message()), f.sign("mallory", NamespaceApprove, st.Message())
				return d
			}())},
		{name: "approval signed in the deny namespace", at: "approve r1", want: ErrStatementSignature,
			story: good.set("approve r1", func() DecisionData {
				d := f.decide(KindApprove, r1, "bob", "", "ok")
				d.Signature = f.sign("bob", NamespaceDeny, []byte(d.Statement))
				return d
			}())},
		{name: "self-approval", story: good.set("approve r1", f.decide(KindApprove, r1, "alice", "", "")), at: "approve r1", want: ErrSelfApproval},
		{name: "requester listed as approver", at: "issue r1", want: ErrSelfApproval,
			story: good.set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, time.Hour, now, "alice") }))},
		{name: "approver outside the step's group", story: good.set("approve r1", f.decide(KindApprove, r1, "dave", "", "")), at: "issue r1", want: ErrUnapprovedIssue},
		{name: "approver listed without an approval", at: "issue r1", want: ErrUnapprovedIssue,
			story: good.set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, time.Hour, now, "bob", "carol") }))},
		{name: "two approvals needed, one given", story: good.remove("approve r2 carol"), at: "issue r2", want: ErrUnapprovedIssue},
		{name: "one approver counts once", at: "issue r2", want: ErrUnapprovedIssue,
			story: good.set("approve r2 carol", f.decide(KindApprove, r2, "bob", "30m0s", "again"))},
		{name: "principals wider than the grant", at: "issue r1", want: ErrScope,
			story: good.set("issue r1", later(func(now time.Time) IssueData {
				return f.issueCert(f.ca, r1, r1Key, []string{r1.Grant, "git:force:demo/app:*"}, 1, time.Hour, now, "bob")
			}))},
		{name: "principals other than the grant", at: "issue r1", want: ErrScope,
			story: good.set("issue r1", later(func(now time.Time) IssueData {
				return f.issueCert(f.ca, r1, r1Key, []string{"git:write:demo/app:refs/heads/main"}, 1, time.Hour, now, "bob")
			}))},
		{name: "certificate for another key", at: "issue r1", want: ErrScope,
			story: good.set("issue r1", later(func(now time.Time) IssueData {
				return f.issueCert(f.ca, r1, strangerKey, []string{r1.Grant}, 1, time.Hour, now, "bob")
			}))},
		{name: "validity longer than the TTL", at: "issue r1", want: ErrValidity,
			story: good.set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, 2*time.Hour, now, "bob") }))},
		{name: "validity longer than an approver's TTL", at: "issue r2", want: ErrValidity,
			story: good.set("issue r2", later(func(now time.Time) IssueData { return f.issue(r2, 2, time.Hour, now, "bob", "carol") }))},
		{name: "backdated beyond the skew", at: "issue r1", want: ErrValidity,
			story: good.set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, 30*time.Minute, now.Add(-20*time.Minute), "bob") }))},
		{name: "certificate from another CA", at: "issue r1", want: ErrCA,
			story: good.set("issue r1", later(func(now time.Time) IssueData {
				return f.issueCert(f.otherCA, r1, r1Key, []string{r1.Grant}, 1, time.Hour, now, "bob")
			}))},
		{name: "entry records another serial than its certificate", at: "issue r1", want: ErrCA,
			story: good.set("issue r1", later(func(now time.Time) IssueData { d := f.issue(r1, 1, time.Hour, now, "bob"); d.Serial = 7; return d }))},
		{name: "entry records a longer validity than its certificate", at: "issue r1", want: ErrValidity,
			story: good.set("issue r1", later(func(now time.Time) IssueData {
				d := f.issue(r1, 1, 30*time.Minute, now, "bob")
				d.ValidBefore = d.ValidBefore.Add(10 * time.Minute)
				return d
			}))},
		{name: "serial issued twice", at: "issue r3", want: ErrCA,
			story: good.set("issue r3", later(func(now time.Time) IssueData { return f.issue(reqs["r3"], 1, time.Hour, now) }))},
		{name: "request data disagrees with its signed statement", at: "request r1", want: ErrStatementMismatch,
			story: good.set("request r1", func() RequestData {
				d := r1
				d.Ref, d.Grant = "refs/heads/main", "git:write:demo/app:refs/heads/main"
				return d
			}())},
		{name: "grant wider than the request", at: "request r1", want: ErrScope,
			story: good.set("request r1", func() RequestData { d := r1; d.Grant = "git:force:demo/app:*"; return d }())},
		{name: "granted TTL longer than asked", at: "request r1", want: ErrStatementMismatch,
			story: good.set("request r1", func() RequestData { d := r1; d.TTL = "4h0m0s"; return d }())},
		{name: "request signed by someone else", at: "request r1", want: ErrStatementSignature,
			story: good.set("request r1", func() RequestData {
				d := r1
				d.Signature = f.sign("dave", NamespaceRequest, []byte(d.Statement))
				return d
			}())},
		{name: "approval of another request moved here", at: "approve r1", want: ErrStatementMismatch,
			story: good.set("approve r1", func() DecisionData {
				d := f.decide(KindApprove, r2, "bob", "", "ok")
				st := DecisionStatement{Kind: KindApprove, Request: "r1", RequestSHA256: StatementHash([]byte(r2.Statement)), By: "bob", Reason: "ok"}
				d.ID, d.Statement, d.Signature = "r1", string(st.Message()), f.sign("bob", NamespaceApprove, st.Message())
				return d
			}())},
		{name: "request by an unknown person", at: "request r1", want: ErrUnknownPerson,
			story: good.set("request r1", f.request("r1", "mallory", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "x"))},
		{name: "issued after a denial", at: "issue r4", want: ErrUnapprovedIssue,
			story: good.insertBefore("revoke r2", rec{"issue r4", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r4, 4, time.Hour, now) })})},
		{name: "issued twice for one request", at: "issue r1 again", want: ErrUnapprovedIssue,
			story: good.insertBefore("git 1", rec{"issue r1 again", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r1, 9, time.Hour, now, "bob") })})},
		{name: "issued for a request not on the record", story: good.remove("request r3"), at: "issue r3", want: ErrUnapprovedIssue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.story.write(t)
			sum, err := checkFile(t, path, f.opts())
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, uint64(len(tt.story)), sum.Entries)
				assert.Equal(t, CheckSummary{Summary: sum.Summary, Requests: 4, Approvals: 3, Denials: 1, Issued: 3, BreakGlass: 1, PeopleChecked: true}, sum)
				return
			}
			require.ErrorIs(t, err, tt.want)
			var ce *CheckError
			require.ErrorAs(t, err, &ce)
			seq := tt.story.seq(tt.at)
			assert.Equal(t, seq, ce.Seq, "failing entry: %v", err)
			assert.Equal(t, int(seq), ce.Line)
			assert.Equal(t, tt.story[seq-1].kind, ce.Kind)
			assert.Equal(t, seq-1, sum.Entries, "summary covers the entries before the failure")
			assert.Contains(t, err.Error(), "seq ")
		})
	}
}

// TestCheckGrantsChain checks that CheckGrants verifies the chain as it
// goes: a line edited, deleted or moved is found where it breaks.
func TestCheckGrantsChain(t *testing.T) {
	f := newGrantsFixture(t)
	good, _ := goodStory(f)
	path := good.write(t)
	lines := fileLines(t, path)

	edit := slices.Clone(lines)
	edit[4] = bytes.Replace(slices.Clone(edit[4]), []byte(`"alice"`), []byte(`"alicf"`), 1) // line 5
	swap := slices.Clone(lines)
	swap[6], swap[7] = swap[7], swap[6]
	for _, tt := range []struct {
		name  string
		lines [][]byte
		line  int
		want  error
	}{
		{"edit a byte", edit, 6, ErrChain},
		{"delete a line", slices.Delete(slices.Clone(lines), 2, 3), 3, ErrSeq},
		{"swap two lines", swap, 7, ErrSeq},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			require.NoError(t, os.WriteFile(p, append(bytes.Join(tt.lines, []byte("\n")), '\n'), 0o600))
			_, err := checkFile(t, p, f.opts())
			require.ErrorIs(t, err, tt.want)
			var ve *VerifyError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tt.line, ve.Line)
		})
	}
}

// TestCheckGrantsWithoutPeople: without the people's keys, signatures are
// not checked, but everything that needs no key still is.
func TestCheckGrantsWithoutPeople(t *testing.T) {
	f := newGrantsFixture(t)
	good, reqs := goodStory(f)
	opts := f.opts()
	opts.People = nil

	forged := good.set("approve r1", func() DecisionData {
		d := f.decide(KindApprove, reqs["r1"], "bob", "", "ok")
		d.Signature = f.sign("mallory", NamespaceApprove, []byte(d.Statement))
		return d
	}())
	sum, err := checkFile(t, forged.write(t), opts)
	require.NoError(t, err)
	assert.False(t, sum.PeopleChecked)

	short := good.remove("approve r2 carol")
	_, err = checkFile(t, short.write(t), opts)
	require.ErrorIs(t, err, ErrUnapprovedIssue, "two approvals are still counted")

	self := good.set("approve r1", f.decide(KindApprove, reqs["r1"], "alice", "", ""))
	_, err = checkFile(t, self.write(t), opts)
	require.ErrorIs(t, err, ErrSelfApproval)
}

// TestStoredDecisionSignatureInterop checks an approval as stored in the
// log with the real ssh-keygen -Y verify.
func TestStoredDecisionSignatureInterop(t *testing.T) {
	keygen := needBinary(t, "ssh-keygen")
	f := newGrantsFixture(t)
	good, _ := goodStory(f)
	path := good.write(t)
	file, err := os.Open(path)
	require.NoError(t, err)
	defer file.Close()
	ix, err := BuildIndex(file)
	require.NoError(t, err)
	approvals := ix.List(Filter{Kind: KindApprove})
	require.Len(t, approvals, 3)

	dir := t.TempDir()
	for _, e := range approvals {
		var d DecisionData
		require.NoError(t, decodeData(&e, &d))
		allowed := filepath.Join(dir, "allowed_signers")
		require.NoError(t, os.WriteFile(allowed, []byte(d.By+" "+string(ssh.MarshalAuthorizedKey(f.signers[d.By].PublicKey()))), 0o600))
		sig := filepath.Join(dir, "approve.sig")
		require.NoError(t, os.WriteFile(sig, []byte(d.Signature), 0o600))
		for _, tt := range []struct {
			msg string
			ok  bool
		}{{d.Statement, true}, {strings.Replace(d.Statement, `"by":"`, `"by":"x`, 1), false}} {
			cmd := exec.Command(keygen, "-Y", "verify", "-f", allowed, "-I", d.By, "-n", NamespaceApprove, "-s", sig)
			cmd.Stdin = strings.NewReader(tt.msg)
			out, err := cmd.CombinedOutput()
			assert.Equal(t, tt.ok, err == nil, "seq %d: ssh-keygen -Y verify: %v: %s", e.Seq, err, out)
		}
	}
}

func TestStepsMet(t *testing.T) {
	c := &checker{opts: CheckOptions{People: map[string]Person{
		"bob":   {Groups: []string{"leads"}},
		"carol": {Groups: []string{"leads", "security"}},
		"dave":  {Groups: []string{"dev"}},
	}}}
	leads, sec := Step{Group: "leads", Count: 1}, Step{Group: "security", Count: 1}
	for _, tt := range []struct {
		steps     []Step
		approvers []string
		ok        bool
	}{
		{nil, nil, true},
		{[]Step{leads}, []string{"bob"}, true},
		{[]Step{leads}, []string{"dave"}, false},
		{[]Step{leads, sec}, []string{"carol"}, false}, // one person fills one place
		{[]Step{leads, sec}, []string{"carol", "bob"}, true},
		{[]Step{leads, sec}, []string{"bob", "carol"}, true}, // bob must take leads, carol security
		{[]Step{{Group: "leads", Count: 2}}, []string{"bob", "carol"}, true},
		{[]Step{{Group: "leads", Count: 2}}, []string{"bob", "dave"}, false},
		{[]Step{{Group: "leads", Count: 1 << 40}}, []string{"bob"}, false},
		{[]Step{{Group: "leads", Count: math.MaxInt}, {Group: "security", Count: math.MaxInt}}, []string{"bob", "carol"}, false}, // the sum overflows
	} {
		groups := map[string][]string{}
		for _, a := range tt.approvers {
			groups[a] = c.opts.People[a].Groups
		}
		err := c.stepsMet(&pending{steps: tt.steps, approvers: tt.approvers, groups: groups})
		assert.Equal(t, tt.ok, err == nil, "stepsMet(%v, %v) = %v", tt.steps, tt.approvers, err)
	}
}

// checkFile runs CheckGrants on the file at path.
func checkFile(t *testing.T, path string, opts CheckOptions) (CheckSummary, error) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	return CheckGrants(f, opts)
}

func TestValidityWindow(t *testing.T) {
	c := &checker{opts: CheckOptions{Backdate: time.Minute}}
	approved := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	issued := approved.Add(5 * time.Second) // the issue entry may be written a while after signing
	for _, tt := range []struct {
		name          string
		after, before time.Time
		ok            bool
	}{
		{"signed at approval", approved.Add(-time.Minute), approved.Add(time.Hour), true},
		{"signed at issue", issued.Add(-time.Minute), issued.Add(time.Hour), true},
		{"whole seconds", approved.Add(-time.Minute - time.Second), issued.Add(time.Hour + time.Second), true},
		{"backdated beyond the skew", approved.Add(-2 * time.Minute), issued.Add(time.Hour), false},
		{"longer than the TTL", issued.Add(-time.Minute), issued.Add(time.Hour + 2*time.Second), false},
		{"ends before it starts", issued, issued, false},
	} {
		err := c.validity(approved, issued, tt.after, tt.before, time.Hour)
		assert.Equal(t, tt.ok, err == nil, "%s: %v", tt.name, err)
	}
}

// TestCheckGrantsSpelling: a statement holds what the person typed, the
// record the daemon's canonical form of it; the two agree when they mean
// the same.
func TestCheckGrantsSpelling(t *testing.T) {
	f := newGrantsFixture(t)
	good, reqs := goodStory(f)
	r1 := reqs["r1"]
	var st RequestStatement
	require.NoError(t, json.Unmarshal([]byte(r1.Statement), &st))
	st.Repo, st.PublicKey, st.TTL = "/demo/app.git", st.PublicKey+" fresh@laptop", "60m"
	r1.Statement, r1.Signature = string(st.Message()), f.sign("alice", NamespaceRequest, st.Message())
	approve := f.decide(KindApprove, r1, "bob", "45m0s", "ok")
	var dst DecisionStatement
	require.NoError(t, json.Unmarshal([]byte(approve.Statement), &dst))
	dst.TTL = "45m"
	approve.Statement, approve.Signature = string(dst.Message()), f.sign("bob", NamespaceApprove, dst.Message())
	s := good.set("request r1", r1).set("approve r1", approve).
		set("issue r1", later(func(now time.Time) IssueData { return f.issue(r1, 1, 45*time.Minute, now, "bob") }))
	_, err := checkFile(t, s.write(t), f.opts())
	require.NoError(t, err)

	st.Repo = "demo/other"
	r1.Statement, r1.Signature = string(st.Message()), f.sign("alice", NamespaceRequest, st.Message())
	_, err = checkFile(t, good.set("request r1", r1).write(t), f.opts())
	require.ErrorIs(t, err, ErrStatementMismatch)
}
