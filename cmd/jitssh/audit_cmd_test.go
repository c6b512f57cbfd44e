package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

// auditFixture is a log written the way the daemon and the Git front-ends
// write it, with real certificates and signatures, and the files an
// auditor verifies it with.
type auditFixture struct {
	dir                       string
	log, caPub, otherCA       string // the log and two CA public key files
	people, headKey           string // people config, checkpoint public key
	ca                        *ca.Authority
	signers                   map[string]ssh.Signer
	reqs                      map[string]audit.RequestData
	seq                       map[string]uint64 // named entries
	headSigner                ssh.Signer
	activeSerial, breakSerial uint64
}

// auditRules are the rules of the fixture's config: reads are approved
// automatically, writes need a lead.
const auditRules = `listen: 127.0.0.1:2200
rules:
  - {name: auto, groups: [dev, ops], repos: ["*/*"], refs: ["*"], access: [read], auto_approve: true}
  - {name: reviewed, groups: [dev], repos: ["*/*"], refs: ["*"], access: [write, force], approvals: [{group: leads, count: 1}]}
`

var auditGroups = map[string][]string{"alice": {"dev"}, "bob": {"dev", "leads"}, "carol": {"leads"}, "dave": {"dev"}, "erin": {"ops"}}

func auditSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// newAuditFixture writes the story: an approved write that is released, a
// two-approver force push that is revoked, an automatic read still active,
// a denial, a break-glass signing, Git use under each, and a signed
// checkpoint at the end.
func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &auditFixture{dir: dir, log: filepath.Join(dir, "audit.log"), caPub: filepath.Join(dir, "ca.pub"), otherCA: filepath.Join(dir, "other-ca.pub"),
		people: filepath.Join(dir, "jitssh.yaml"), headKey: filepath.Join(dir, "checkpoint.pub"),
		signers: make(map[string]ssh.Signer), reqs: make(map[string]audit.RequestData), seq: make(map[string]uint64),
		activeSerial: 13, breakSerial: ca.BreakGlassBit | 1}
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	fx.ca, err = ca.New(caPriv)
	require.NoError(t, err)
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ca.New(otherPriv)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(fx.caPub, []byte(fx.ca.AuthorizedKey()+"\n"), 0o644))
	require.NoError(t, os.WriteFile(fx.otherCA, []byte(other.AuthorizedKey()+"\n"), 0o644))
	fx.headSigner = auditSigner(t)
	require.NoError(t, os.WriteFile(fx.headKey, ssh.MarshalAuthorizedKey(fx.headSigner.PublicKey()), 0o644))

	var people strings.Builder
	people.WriteString(auditRules + "people:\n")
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		fx.signers[name] = auditSigner(t)
		fmt.Fprintf(&people, "  - name: %s\n    keys: [%q]\n    groups: [%s]\n", name, authorizedLine(fx.signers[name].PublicKey()), strings.Join(auditGroups[name], ", "))
	}
	fx.signers["mallory"] = auditSigner(t)
	require.NoError(t, os.WriteFile(fx.people, []byte(people.String()), 0o644))

	l, err := audit.Open(fx.log, audit.Options{})
	require.NoError(t, err)
	defer l.Close()
	add := func(name, kind, actor string, data any) {
		e, err := l.Append(kind, actor, data)
		require.NoError(t, err, name)
		fx.seq[name] = e.Seq
	}
	leads := audit.Step{Group: "leads", Count: 1}
	r1 := fx.request(t, "r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads)
	add("request r1", audit.KindRequest, "alice", r1)
	add("approve r1", audit.KindApprove, "bob", fx.decide(t, audit.KindApprove, r1, "bob", "", "ok"))
	add("issue r1", audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r1, 11, time.Hour, "bob"))
	add("git r1", audit.KindGit, "alice/r1", sshd.Event{Time: time.Now().UTC(), Decision: sshd.Allow, Serial: 11, KeyID: "alice/r1",
		Service: "git-receive-pack", Repo: "demo/app", Updates: []sshd.RefUpdate{
			{Ref: "refs/heads/feature/login", Old: strings.Repeat("1", 40), New: strings.Repeat("2", 40), Result: "updated"},
			{Ref: "refs/heads/main", Old: strings.Repeat("1", 40), New: strings.Repeat("3", 40), Result: "refused", Reason: "not granted"}}})
	add("release r1", audit.KindRelease, "alice", audit.EndData{Subject: audit.Subject{ID: "r1", Serial: 11}, By: "alice", Reason: "done"})

	r2 := fx.request(t, "r2", "dave", "force", "demo/app", "refs/heads/main", "1h0m0s", "revert", audit.Step{Group: "leads", Count: 2})
	add("request r2", audit.KindRequest, "dave", r2)
	add("approve r2 bob", audit.KindApprove, "bob", fx.decide(t, audit.KindApprove, r2, "bob", "", ""))
	add("approve r2 carol", audit.KindApprove, "carol", fx.decide(t, audit.KindApprove, r2, "carol", "", "go"))
	add("issue r2", audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r2, 12, time.Hour, "bob", "carol"))
	add("git r2", audit.KindGit, "dave/r2", sshd.Event{Time: time.Now().UTC(), Decision: sshd.Allow, Serial: 12, KeyID: "dave/r2",
		Service: "git-receive-pack", Repo: "demo/app", Updates: []sshd.RefUpdate{
			{Ref: "refs/heads/main", Old: strings.Repeat("2", 40), New: strings.Repeat("4", 40), Result: "updated"}}})
	add("revoke r2", audit.KindRevoke, "carol", audit.RevokeData{Subject: audit.Subject{ID: "r2", Serial: 12}, By: "carol", Reason: "rolled back"})

	r3 := fx.request(t, "r3", "alice", "read", "docs/handbook", "*", "2h0m0s", "reading")
	add("request r3", audit.KindRequest, "alice", r3)
	add("issue r3", audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r3, fx.activeSerial, 2*time.Hour))
	add("git r3", audit.KindGit, "alice/r3", sshd.Event{Time: time.Now().UTC(), Decision: sshd.Allow, Serial: fx.activeSerial, KeyID: "alice/r3",
		Service: "git-upload-pack", Repo: "docs/handbook"})

	r4 := fx.request(t, "r4", "dave", "write", "infra/tf", "refs/heads/main", "1h0m0s", "bump", leads)
	add("request r4", audit.KindRequest, "dave", r4)
	add("deny r4", audit.KindDeny, "carol", fx.decide(t, audit.KindDeny, r4, "carol", "", "not now"))

	now := time.Now().UTC()
	add("break-glass", audit.KindCASign, "erin", audit.CASignData{Serial: fx.breakSerial, KeyID: "erin/incident-7",
		Principals: []string{"git:force:infra/tf:*"}, ValidAfter: now.Add(-time.Minute).Truncate(time.Second), ValidBefore: now.Add(time.Hour).Truncate(time.Second)})
	add("git break-glass", audit.KindGit, "erin/incident-7", sshd.Event{Time: now, Decision: sshd.Deny, Serial: fx.breakSerial, KeyID: "erin/incident-7",
		Service: "git-upload-pack", Repo: "infra/tf", Reason: "repository not found"})
	e, err := l.Checkpoint(fx.headSigner)
	require.NoError(t, err)
	fx.seq["checkpoint"] = e.Seq
	return fx
}

func (fx *auditFixture) sign(t *testing.T, by, ns string, msg []byte) string {
	t.Helper()
	sig, err := audit.SignStatement(fx.signers[by], ns, msg)
	require.NoError(t, err)
	return sig
}

func (fx *auditFixture) request(t *testing.T, id, who, access, repo, ref, ttl, reason string, steps ...audit.Step) audit.RequestData {
	t.Helper()
	pub := auditSigner(t).PublicKey()
	st := audit.RequestStatement{Kind: audit.KindRequest, Requester: who, Repo: repo, Ref: ref, Access: access, TTL: ttl, Reason: reason, PublicKey: authorizedLine(pub)}
	d := audit.RequestData{ID: id, Requester: who, Repo: repo, Ref: ref, Access: access, Grant: "git:" + access + ":" + repo + ":" + ref,
		TTL: ttl, Reason: reason, Rule: "auto", Steps: steps, PublicKey: st.PublicKey, Statement: string(st.Message()),
		Signature: fx.sign(t, who, audit.NamespaceRequest, st.Message()), At: time.Now().UTC()}
	if len(steps) > 0 {
		d.Rule = "reviewed"
	}
	fx.reqs[id] = d
	return d
}

func (fx *auditFixture) decide(t *testing.T, kind string, req audit.RequestData, by, ttl, reason string) audit.DecisionData {
	t.Helper()
	st := audit.DecisionStatement{Kind: kind, Request: req.ID, RequestSHA256: audit.StatementHash([]byte(req.Statement)), By: by, TTL: ttl, Reason: reason}
	ns := audit.NamespaceApprove
	if kind == audit.KindDeny {
		ns = audit.NamespaceDeny
	}
	return audit.DecisionData{Subject: audit.Subject{ID: req.ID}, By: by, TTL: ttl, Reason: reason, Statement: string(st.Message()), Signature: fx.sign(t, by, ns, st.Message())}
}

func (fx *auditFixture) issue(t *testing.T, a *ca.Authority, req audit.RequestData, serial uint64, ttl time.Duration, approvers ...string) audit.IssueData {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	require.NoError(t, err)
	g, err := principals.Parse(req.Grant)
	require.NoError(t, err)
	cert, err := a.Sign(ca.CertRequest{PublicKey: pub, KeyID: req.Requester + "/" + req.ID, Grants: []principals.Grant{g}, TTL: ttl}, auditSerial(serial))
	require.NoError(t, err)
	return audit.IssueData{ID: req.ID, Serial: serial, KeyID: cert.KeyId, Requester: req.Requester, Principals: cert.ValidPrincipals,
		ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Approvers: approvers, Rule: req.Rule, Certificate: authorizedLine(cert)}
}

type auditSerial uint64

func (s auditSerial) NextSerial() (uint64, error) { return uint64(s), nil }

// copyLog copies the fixture's log so a test can change it.
func (fx *auditFixture) copyLog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fx.log)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "audit.log")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// appendTo appends entries to the log at path as a writer with access to
// the file would: the chain stays intact.
func appendTo(t *testing.T, path string, kind, actor string, data any) uint64 {
	t.Helper()
	l, err := audit.Open(path, audit.Options{})
	require.NoError(t, err)
	defer l.Close()
	e, err := l.Append(kind, actor, data)
	require.NoError(t, err)
	return e.Seq
}

func logLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "audit.log")
	text := strings.Join(lines, "")
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

// rechain rewrites a log's lines through edit and hashes the chain anew,
// as someone who can rewrite the whole file would, and returns its path.
func rechain(t *testing.T, lines []string, edit func(e *audit.Entry)) string {
	t.Helper()
	prev := audit.GenesisHash
	var out []string
	for _, line := range lines {
		var e audit.Entry
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		edit(&e)
		e.Prev = prev
		b, err := json.Marshal(e)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		prev = hex.EncodeToString(sum[:])
		out = append(out, string(b)+"\n")
	}
	return writeLines(t, out)
}

func lastLineHash(t *testing.T, path string) string {
	lines := logLines(t, path)
	sum := sha256.Sum256([]byte(strings.TrimSuffix(lines[len(lines)-1], "\n")))
	return hex.EncodeToString(sum[:])
}

func TestAuditVerify(t *testing.T) {
	fx := newAuditFixture(t)
	n := fx.seq["checkpoint"]

	r := runJitssh(t, nil, "audit", "verify", "--log", fx.log, "--ca", fx.caPub, "--people", fx.people, "--head-key", fx.headKey)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, fmt.Sprintf("ok: %d entries, head %s\n", n, lastLineHash(t, fx.log))), r.stdout)
	assert.Contains(t, r.stdout, "4 requests, 3 approvals, 1 denials, 3 certificates issued, 1 break-glass")
	assert.NotContains(t, r.stdout, "not checked")

	r = runJitssh(t, []string{"JITSSH_AUDIT_LOG=" + fx.log, "JITSSH_AUDIT_CA=" + fx.caPub}, "audit", "verify")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "not checked: signatures and approvers' groups (no --people)")

	r = runJitssh(t, nil, "audit", "verify", "--log", fx.log, "--ca", fx.caPub, "--people", fx.people, "--head", fx.log+audit.HeadSuffix, "--head-key", fx.headKey, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var res verifyResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.True(t, res.OK)
	assert.True(t, res.PeopleChecked)
	assert.Equal(t, n, res.Entries)
	require.NotNil(t, res.CheckpointSeq)
	assert.Equal(t, n-1, *res.CheckpointSeq)

	// Each tamper is a copy of the log changed the way an attacker with
	// write access to the file, or a compromised daemon, could.
	lines := logLines(t, fx.log)
	edited := append([]string(nil), lines...)
	edited[2] = strings.Replace(edited[2], `"jitssh"`, `"jitsh!"`, 1)
	torn := `{"seq":` + strconv.FormatUint(n+1, 10) + `,"time":"2025-`
	swapped := append([]string(nil), lines...)
	swapped[5], swapped[6] = swapped[6], swapped[5]
	tests := []struct {
		name string
		log  func(t *testing.T) string
		args []string
		want string
	}{
		{"edit a byte", func(*testing.T) string { return writeLines(t, edited) }, nil, " line 4 (seq 4): prev is not the hash of line 3: one of them was altered: hash chain broken"},
		{"delete a line", func(*testing.T) string {
			return writeLines(t, append(append([]string(nil), lines[:3]...), lines[4:]...))
		}, nil,
			" line 4 (seq 5): seq 5 follows seq 3: 1 entries missing: sequence broken"},
		{"swap two lines", func(*testing.T) string { return writeLines(t, swapped) }, nil, " line 6 (seq 7): seq 7 follows seq 5: 1 entries missing: sequence broken"},
		{"torn last line, as a crash mid-write leaves it", func(t *testing.T) string {
			p := fx.copyLog(t)
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			require.NoError(t, err)
			defer f.Close()
			_, err = f.WriteString(torn)
			require.NoError(t, err)
			return p
		}, nil, fmt.Sprintf(" line %d: last line has no trailing newline (%d bytes): torn tail", n+1, len(torn))},
		{"truncate below the signed head", func(*testing.T) string { return writeLines(t, lines[:len(lines)-3]) },
			[]string{"--head", fx.log + audit.HeadSuffix, "--head-key", fx.headKey}, "log truncated or rewritten"},
		{"forge an approval with another key", func(t *testing.T) string {
			p := fx.copyLog(t)
			r5 := fx.request(t, "r5", "alice", "write", "demo/app", "refs/heads/main", "1h0m0s", "sneak", audit.Step{Group: "leads", Count: 1})
			appendTo(t, p, audit.KindRequest, "alice", r5)
			d := fx.decide(t, audit.KindApprove, r5, "bob", "", "")
			d.Signature = fx.sign(t, "mallory", audit.NamespaceApprove, []byte(d.Statement))
			seq := appendTo(t, p, audit.KindApprove, "bob", d)
			require.Equal(t, n+2, seq)
			return p
		}, nil, fmt.Sprintf("(seq %d, approve): approve of r5 by bob: not signed by any key of bob: bad statement signature", n+2)},
		{"issue without approval", func(t *testing.T) string {
			p := fx.copyLog(t)
			r5 := fx.request(t, "r5", "alice", "write", "demo/app", "refs/heads/main", "1h0m0s", "sneak", audit.Step{Group: "leads", Count: 1})
			appendTo(t, p, audit.KindRequest, "alice", r5)
			appendTo(t, p, audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r5, 21, time.Hour, "bob"))
			return p
		}, nil, fmt.Sprintf("(seq %d, issue): serial 21 lists bob as approver of r5, but no valid approval by bob is recorded before it: certificate issued without approval", n+2)},
		{"self-approval", func(t *testing.T) string {
			p := fx.copyLog(t)
			r5 := fx.request(t, "r5", "alice", "write", "demo/app", "refs/heads/main", "1h0m0s", "sneak", audit.Step{Group: "dev", Count: 1})
			appendTo(t, p, audit.KindRequest, "alice", r5)
			appendTo(t, p, audit.KindApprove, "alice", fx.decide(t, audit.KindApprove, r5, "alice", "", ""))
			return p
		}, nil, fmt.Sprintf("(seq %d, approve): alice approved their own request r5: self-approval", n+2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"audit", "verify", "--log", tt.log(t), "--ca", fx.caPub, "--people", fx.people}, tt.args...)
			assertVerifyFailures(t, runJitssh(t, nil, args...), tt.want)
		})
	}

	t.Run("certificates from another CA", func(t *testing.T) {
		// Every certificate fails, each on its own line.
		var want []string
		for i, name := range []string{"issue r1", "issue r2", "issue r3"} {
			want = append(want, fmt.Sprintf("%s line %d (seq %d, issue): serial %d: signed by", fx.log, fx.seq[name], fx.seq[name], 11+i))
		}
		assertVerifyFailures(t, runJitssh(t, nil, "audit", "verify", "--log", fx.log, "--ca", fx.otherCA), want...)
	})
	t.Run("json failure", func(t *testing.T) {
		p := writeLines(t, edited)
		r := runJitssh(t, nil, "audit", "verify", "--log", p, "--ca", fx.caPub, "--json")
		assert.Equal(t, 1, r.code)
		var res verifyResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
		assert.False(t, res.OK)
		require.NotNil(t, res.Failure)
		assert.Equal(t, 4, res.Failure.Line)
		assert.Equal(t, "hash chain broken", res.Failure.Cause)
		assert.Equal(t, 1, res.FailureCount)
		assert.Len(t, res.Failures, 1)
		assert.Equal(t, n, res.Entries, "the whole log is read")
		e := assertJSONError(t, r)
		assert.Equal(t, "audit verify: 1 failure in "+p+fmt.Sprintf(" (%d entries read)", n), e.Error)
	})
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --ca", []string{"--log", fx.log}, 2, "missing --ca"},
		{"no --log", []string{"--ca", fx.caPub}, 2, "missing --log"},
		{"--head alone", []string{"--log", fx.log, "--ca", fx.caPub, "--head", fx.log + audit.HeadSuffix}, 2, "--head needs --head-key"},
		{"--head and --no-head", []string{"--log", fx.log, "--ca", fx.caPub, "--head", fx.log + audit.HeadSuffix, "--head-key", fx.headKey, "--no-head"}, 2, "--head and --no-head contradict"},
		{"missing log", []string{"--log", filepath.Join(fx.dir, "nope"), "--ca", fx.caPub}, 1, "no such file"},
		{"bad CA file", []string{"--log", fx.log, "--ca", fx.people}, 1, "load CA public keys"},
		{"bad people file", []string{"--log", fx.log, "--ca", fx.caPub, "--people", fx.caPub}, 1, "load people"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assertOneLineError(t, runJitssh(t, nil, append([]string{"audit", "verify"}, tt.args...)...), tt.code, tt.want)
		})
	}
}

// TestAuditVerifyEveryFailure tampers with one log in six places and
// checks that audit verify names every one of them, in log order, the later
// ones as well as the first, and that --max-failures caps what is printed,
// not what is checked.
func TestAuditVerifyEveryFailure(t *testing.T) {
	fx := newAuditFixture(t)
	p := fx.copyLog(t)
	// A request whose signature is not its requester's, and a certificate
	// issued for a request nobody approved.
	r5 := fx.request(t, "r5", "alice", "write", "demo/app", "refs/heads/main", "1h0m0s", "sneak", audit.Step{Group: "leads", Count: 1})
	r5.Signature = fx.sign(t, "mallory", audit.NamespaceRequest, []byte(r5.Statement))
	seqR5 := appendTo(t, p, audit.KindRequest, "alice", r5)
	r6 := fx.request(t, "r6", "dave", "write", "infra/tf", "refs/heads/main", "1h0m0s", "quick fix", audit.Step{Group: "leads", Count: 1})
	appendTo(t, p, audit.KindRequest, "dave", r6)
	seqIssue6 := appendTo(t, p, audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r6, 31, time.Hour))
	seqGit := appendTo(t, p, audit.KindGit, "dave/r6", sshd.Event{Decision: sshd.Allow, Serial: 31, KeyID: "dave/r6", Service: "git-upload-pack", Repo: "infra/tf"})
	appendTo(t, p, audit.KindGit, "dave/r6", sshd.Event{Decision: sshd.Allow, Serial: 31, KeyID: "dave/r6", Service: "git-receive-pack", Repo: "infra/tf"})
	appendTo(t, p, audit.KindGit, "dave/r6", sshd.Event{Decision: sshd.Allow, Serial: 31, KeyID: "dave/r6", Service: "git-upload-pack", Repo: "infra/tf"})

	// Then the chain: line 2's reason edited, line 10 deleted, and the
	// last two Git operations swapped.
	lines := logLines(t, p)
	lines[1] = strings.Replace(lines[1], `"ok"`, `"OK"`, 1)
	last := len(lines) - 1
	lines[last] += "\n"
	lines[last-1], lines[last] = lines[last], lines[last-1]
	lines = slices.Delete(lines, 9, 10)
	tampered := writeLines(t, lines)

	at := func(line int, seq uint64, kind string) string {
		if kind == "" {
			return fmt.Sprintf("%s line %d (seq %d): ", tampered, line, seq)
		}
		return fmt.Sprintf("%s line %d (seq %d, %s): ", tampered, line, seq, kind)
	}
	want := []string{
		at(2, 2, "approve") + "approve of r1: reason is \"OK\", but bob signed \"ok\": record disagrees with its signed statement",
		at(3, 3, "") + "prev is not the hash of line 2: one of them was altered: hash chain broken",
		// The approval no longer verifies, so the certificate lacks it.
		at(3, 3, "issue") + "serial 11 lists bob as approver of r1, but no valid approval by bob is recorded before it: certificate issued without approval",
		at(10, 11, "") + "seq 11 follows seq 9: 1 entries missing: sequence broken",
		at(int(seqR5)-1, seqR5, "request") + "request r5 by alice: not signed by any key of alice: bad statement signature: public key does not match",
		at(int(seqIssue6)-1, seqIssue6, "issue") + "serial 31 for request r6: 1 approvals required (1 from leads), 0 recorded: certificate issued without approval",
		at(int(seqGit), seqGit+2, "") + fmt.Sprintf("seq %d follows seq %d: 1 entries missing: sequence broken", seqGit+2, seqGit),
		at(int(seqGit)+1, seqGit+1, "") + fmt.Sprintf("seq %d follows seq %d: out of order, seq %d came before: sequence broken", seqGit+1, seqGit+2, seqGit+2),
	}
	r := runJitssh(t, nil, "audit", "verify", "--log", tampered, "--ca", fx.caPub, "--people", fx.people)
	assertVerifyFailures(t, r, want...)
	assert.Equal(t, strings.Join(want, "\n")+"\n"+fmt.Sprintf("jitssh: audit verify: 8 failures in %s (%d entries read)\n", tampered, len(lines)), r.stderr)

	r = runJitssh(t, nil, "audit", "verify", "--log", tampered, "--ca", fx.caPub, "--people", fx.people, "--max-failures", "2")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, want[0]+"\n"+want[1]+"\n... and 6 more failures (--max-failures 0 prints them all)\n"+
		fmt.Sprintf("jitssh: audit verify: 8 failures in %s (%d entries read)\n", tampered, len(lines)), r.stderr)

	r = runJitssh(t, nil, "audit", "verify", "--log", tampered, "--ca", fx.caPub, "--people", fx.people, "--max-failures", "3", "--json")
	assert.Equal(t, 1, r.code)
	var res verifyResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r.stdout)
	assert.Equal(t, 8, res.FailureCount)
	require.Len(t, res.Failures, 3)
	assert.Equal(t, []int{2, 3, 3}, []int{res.Failures[0].Line, res.Failures[1].Line, res.Failures[2].Line})
	assert.Equal(t, "certificate issued without approval", res.Failures[2].Cause)
	assert.Equal(t, uint64(len(lines)), res.Entries)

	assertOneLineError(t, runJitssh(t, nil, "audit", "verify", "--log", tampered, "--ca", fx.caPub, "--max-failures", "-1"), 2, "--max-failures -1")
}

// TestAuditVerifySignedHead: with the key that signs checkpoints known,
// verify checks every checkpoint entry and, without being asked, the head
// file beside the log, so a cut tail or a chain rewritten with its hashes
// is caught by the plain invocation.
func TestAuditVerifySignedHead(t *testing.T) {
	fx := newAuditFixture(t)
	n := fx.seq["checkpoint"]
	lines := logLines(t, fx.log)
	headFile, err := os.ReadFile(fx.log + audit.HeadSuffix)
	require.NoError(t, err)
	// withHead puts lines in a new directory, with the fixture's head file
	// beside them unless head is nil.
	withHead := func(t *testing.T, lines []string, head []byte) string {
		p := writeLines(t, lines)
		if head != nil {
			require.NoError(t, os.WriteFile(p+audit.HeadSuffix, head, 0o600))
		}
		return p
	}
	env := []string{"JITSSH_AUDIT_CA=" + fx.caPub, "JITSSH_AUDIT_PEOPLE=" + fx.people, "JITSSH_AUDIT_HEAD_KEY=" + fx.headKey}
	verify := func(log string, args ...string) cliResult {
		return runJitssh(t, env, append([]string{"audit", "verify", "--log", log}, args...)...)
	}

	r := verify(fx.log)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "checkpoints: 1 signed with the head key, each matching the chain\n")
	assert.Contains(t, r.stdout, fmt.Sprintf("checkpoint: the log holds the signed head at seq %d (%s)\n", n-1, fx.log+audit.HeadSuffix))
	assert.NotContains(t, r.stdout, "not checked")

	// Someone with write access to the log, but not to the daemon's key.
	edit := func(e *audit.Entry) {
		if e.Kind == audit.KindRelease {
			e.Data = json.RawMessage(strings.Replace(string(e.Data), `"done"`, `"never used it"`, 1))
		}
	}
	cut := lines[:n-3]
	rewritten := logLines(t, rechain(t, lines, edit))
	t.Run("tail cut", func(t *testing.T) {
		assertVerifyFailures(t, verify(withHead(t, cut, headFile)),
			fmt.Sprintf(" line %d (seq %d): log ends at seq %d, but a head signed at ", n-2, n-2, n-3))
	})
	t.Run("tail cut, head not checked", func(t *testing.T) {
		r := verify(withHead(t, cut, headFile), "--no-head")
		require.Equal(t, 0, r.code, r.stderr)
		assert.NotContains(t, r.stdout, "checkpoint: the log holds")
	})
	t.Run("rewritten with its chain", func(t *testing.T) {
		assertVerifyFailures(t, verify(withHead(t, rewritten, headFile)),
			fmt.Sprintf(" line %d (seq %d): entry does not hash to the head signed at ", n-1, n-1),
			fmt.Sprintf(" line %d (seq %d, checkpoint): signs hash ", n, n))
	})
	t.Run("rewritten with its chain, head file gone", func(t *testing.T) {
		// The checkpoint entry in the log still catches it.
		assertVerifyFailures(t, verify(withHead(t, rewritten, nil)),
			fmt.Sprintf(" line %d (seq %d, checkpoint): signs hash ", n, n))
	})
	t.Run("rewritten and cut before the checkpoint", func(t *testing.T) {
		// The head file catches what leaves no checkpoint entry behind.
		assertVerifyFailures(t, verify(withHead(t, rewritten[:n-1], headFile)),
			fmt.Sprintf(" line %d (seq %d): entry does not hash to the head signed at ", n-1, n-1))
	})
	t.Run("head file signed by another key", func(t *testing.T) {
		other := auditSigner(t)
		var h audit.Head
		require.NoError(t, json.Unmarshal(headFile, &h))
		sig, err := sshsig.Sign(bytes.NewReader(h.Message()), other, sshsig.HashSHA512, audit.CheckpointNamespace)
		require.NoError(t, err)
		h.Signature = string(sshsig.Armor(sig))
		forged, err := json.Marshal(h)
		require.NoError(t, err)
		p := withHead(t, lines, forged)
		assertVerifyFailures(t, verify(p), p+audit.HeadSuffix+": head at seq "+strconv.FormatUint(n-1, 10)+" is not signed by the head key")
	})
	t.Run("no head key", func(t *testing.T) {
		p := withHead(t, cut, headFile)
		r := runJitssh(t, env[:2], "audit", "verify", "--log", p)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "not checked: the signed head "+p+audit.HeadSuffix+" (no --head-key)\n")
		r = runJitssh(t, env[:2], "audit", "verify", "--log", fx.log)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "not checked: 1 checkpoint entry (no --head-key)\n")
	})
	t.Run("no head file", func(t *testing.T) {
		p := withHead(t, lines, nil)
		r := verify(p)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "not checked: that "+p+" was not cut short (no signed head "+p+audit.HeadSuffix+")\n")
	})
	t.Run("head named", func(t *testing.T) {
		elsewhere := filepath.Join(t.TempDir(), "kept-safe.head")
		require.NoError(t, os.WriteFile(elsewhere, headFile, 0o600))
		assertVerifyFailures(t, verify(withHead(t, cut, nil), "--head", elsewhere), "log truncated or rewritten")
	})
}

// rebuild rewrites a log as someone who can rewrite the whole file would:
// edit changes each entry or drops it (returning false), and the rest are
// numbered and chained anew.
func rebuild(t *testing.T, lines []string, edit func(e *audit.Entry) bool) string {
	t.Helper()
	prev, seq := audit.GenesisHash, uint64(0)
	var out []string
	for _, line := range lines {
		var e audit.Entry
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		if !edit(&e) {
			continue
		}
		seq++
		e.Seq, e.Prev = seq, prev
		b, err := json.Marshal(e)
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		prev = hex.EncodeToString(sum[:])
		out = append(out, string(b)+"\n")
	}
	return writeLines(t, out)
}

// editData rewrites an entry's data through a map.
func editData(t *testing.T, e *audit.Entry, edit func(m map[string]any)) {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(e.Data, &m))
	edit(m)
	b, err := json.Marshal(m)
	require.NoError(t, err)
	e.Data = b
}

// TestAuditVerifyPolicyVersions: each request is judged by the policy
// version that decided it, given as one --people file among several.
func TestAuditVerifyPolicyVersions(t *testing.T) {
	fx := newAuditFixture(t)
	v1Data, err := os.ReadFile(fx.people)
	require.NoError(t, err)
	// v2: bob is offboarded.
	v2Data := regexp.MustCompile(`(?m)^  - name: bob\n(    .*\n)*?(    groups: .*\n)`).ReplaceAll(v1Data, nil)
	require.NotEqual(t, v1Data, v2Data)
	require.NotContains(t, string(v2Data), "name: bob")
	v1, v2 := filepath.Join(fx.dir, "v1.yaml"), filepath.Join(fx.dir, "v2.yaml")
	require.NoError(t, os.WriteFile(v1, v1Data, 0o600))
	require.NoError(t, os.WriteFile(v2, v2Data, 0o600))
	digest := func(data []byte) string {
		p, err := approvals.ParsePolicy("x", data)
		require.NoError(t, err)
		return p.Digest()
	}
	d1, d2 := digest(v1Data), digest(v2Data)

	// alice's write, approved by bob under v1; bob offboarded; dave's
	// write, approved by carol under v2.
	log := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(log, audit.Options{})
	require.NoError(t, err)
	add := func(kind, actor string, data any) {
		_, err := l.Append(kind, actor, data)
		require.NoError(t, err)
	}
	leads := audit.Step{Group: "leads", Count: 1}
	r1 := fx.request(t, "r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads)
	r1.PolicySHA256 = d1
	add(audit.KindRequest, "alice", r1)
	add(audit.KindApprove, "bob", fx.decide(t, audit.KindApprove, r1, "bob", "", "ok"))
	add(audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r1, 11, time.Hour, "bob"))
	add(audit.KindPolicyReload, "jitssh", audit.PolicyReloadData{PolicySHA256: d2, People: 4, Rules: 2, Offboarded: map[string]string{"bob": "removed from the policy"}})
	r2 := fx.request(t, "r2", "dave", "write", "demo/app", "refs/heads/main", "1h0m0s", "fix", leads)
	r2.PolicySHA256 = d2
	add(audit.KindRequest, "dave", r2)
	add(audit.KindApprove, "carol", fx.decide(t, audit.KindApprove, r2, "carol", "", "ok"))
	add(audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r2, 12, time.Hour, "carol"))
	require.NoError(t, l.Close())

	verify := func(log string, args ...string) cliResult {
		return runJitssh(t, nil, append([]string{"audit", "verify", "--log", log, "--ca", fx.caPub}, args...)...)
	}
	t.Run("every version given", func(t *testing.T) {
		r := verify(log, "--people", v1, "--people", v2)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, fmt.Sprintf("policy version %s (%s): 1 request judged by it\n", d1, v1))
		assert.Contains(t, r.stdout, fmt.Sprintf("policy version %s (%s): 1 request judged by it\n", d2, v2))
		assert.NotContains(t, r.stdout, "not checked")
	})
	t.Run("the offboarded approver's version missing", func(t *testing.T) {
		assertVerifyFailures(t, verify(log, "--people", v2), fmt.Sprintf(" line 1 (seq 1, request): request r1: policy version %s not supplied: policy version not supplied", d1))
		r := verify(log, "--people", v2, "--allow-unknown-policy", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var res verifyResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		assert.Equal(t, []policyVersionView{{Digest: d2, Source: v2, Requests: 1}, {Digest: d1, Requests: 1}}, res.PolicyVersions)
		assert.Equal(t, 1, res.UnknownPolicy)
		assert.Equal(t, 1, res.NotChecked, "bob's approval: bob is in no version given")
		r = verify(log, "--people", v2, "--allow-unknown-policy")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "not checked: 1 request decided by policy versions not given (--allow-unknown-policy)\n")
		assert.Contains(t, r.stdout, "not checked: 1 signature by people in no policy version given\n")
	})
	t.Run("steps stripped and the approval removed", func(t *testing.T) {
		strip := func(keepVersion bool) string {
			return rebuild(t, logLines(t, log), func(e *audit.Entry) bool {
				switch {
				case e.Kind == audit.KindApprove && e.Actor == "bob":
					return false
				case e.Kind == audit.KindRequest && e.Actor == "alice":
					editData(t, e, func(m map[string]any) {
						m["steps"] = []any{}
						if !keepVersion {
							delete(m, "policy_sha256")
						}
					})
				case e.Kind == audit.KindIssue && strings.Contains(string(e.Data), `"id":"r1"`):
					editData(t, e, func(m map[string]any) { m["approvers"] = []any{} })
				}
				return true
			})
		}
		// Without versions the entries agree with each other, and nothing
		// says the rule wanted a lead.
		r := verify(strip(false), "--people", v1, "--people", v2)
		require.Equal(t, 0, r.code, r.stderr)
		assertVerifyFailures(t, verify(strip(true), "--people", v1, "--people", v2),
			" line 1 (seq 1, request): request r1 records approval steps none (approved automatically), but rule reviewed of policy version ",
			" line 2 (seq 2, issue): serial 11 for request r1: 1 approvals required (1 from leads), 0 recorded: certificate issued without approval")
	})
}

// twoLogs writes a daemon's log and a Git server's log side by side, as
// the two processes would: a write certificate issued and released in the
// daemon's log, and its Git operations, one before and one after the
// release, in the Git server's. It returns the two paths and, in the order
// written, which log (0 or 1) and seq each entry went to.
func twoLogs(t *testing.T, fx *auditFixture) (daemon, git string, order [][2]uint64) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs, two") // a comma in a name is a name, not a list
	require.NoError(t, os.Mkdir(dir, 0o700))
	daemon, git = filepath.Join(dir, "audit.log"), filepath.Join(dir, "git.log")
	dl, err := audit.Open(daemon, audit.Options{})
	require.NoError(t, err)
	defer dl.Close()
	gl, err := audit.Open(git, audit.Options{})
	require.NoError(t, err)
	defer gl.Close()
	add := func(which uint64, kind, actor string, data any) {
		l := dl
		if which == 1 {
			l = gl
		}
		e, err := l.Append(kind, actor, data)
		require.NoError(t, err)
		order = append(order, [2]uint64{which, e.Seq})
	}
	leads := audit.Step{Group: "leads", Count: 1}
	r1 := fx.request(t, "r1", "alice", "write", "demo/app", "refs/heads/feature/*", "1h0m0s", "login form", leads)
	add(0, audit.KindRequest, "alice", r1)
	add(1, audit.KindGit, "alice/old", sshd.Event{Decision: sshd.Deny, Serial: 5, KeyID: "alice/old", Service: "git-receive-pack", Repo: "demo/app", Reason: "certificate expired"})
	add(0, audit.KindApprove, "bob", fx.decide(t, audit.KindApprove, r1, "bob", "", "ok"))
	add(0, audit.KindIssue, "jitssh", fx.issue(t, fx.ca, r1, 11, time.Hour, "bob"))
	add(1, audit.KindGit, "alice/r1", sshd.Event{Decision: sshd.Allow, Serial: 11, KeyID: "alice/r1", Service: "git-receive-pack", Repo: "demo/app",
		Updates: []sshd.RefUpdate{{Ref: "refs/heads/feature/login", Old: strings.Repeat("1", 40), New: strings.Repeat("2", 40), Result: "updated"}}})
	add(0, audit.KindRelease, "alice", audit.EndData{Subject: audit.Subject{ID: "r1", Serial: 11}, By: "alice", Reason: "done"})
	add(1, audit.KindGit, "alice/r1", sshd.Event{Decision: sshd.Deny, Serial: 11, KeyID: "alice/r1", Service: "git-upload-pack", Repo: "demo/app", Reason: "certificate revoked"})
	return daemon, git, order
}

// TestAuditSeveralLogs: every audit command reads the daemon's log and a
// Git server's together, each verified on its own chain, their entries
// merged by time.
func TestAuditSeveralLogs(t *testing.T) {
	fx := newAuditFixture(t)
	daemon, git, order := twoLogs(t, fx)
	paths := []string{daemon, git}
	both := []string{"--log", daemon, "--log", git}
	run := func(args ...string) cliResult {
		r := runJitssh(t, nil, append(args[:2:2], append(both, args[2:]...)...)...)
		require.Equal(t, 0, r.code, "%q: %s", args, r.stderr)
		return r
	}

	t.Run("list", func(t *testing.T) {
		var got []logEntry
		require.NoError(t, json.Unmarshal([]byte(run("audit", "list", "--json").stdout), &got))
		var gotOrder [][2]uint64
		for _, e := range got {
			which := uint64(slices.Index(paths, e.Log))
			gotOrder = append(gotOrder, [2]uint64{which, e.Seq})
		}
		assert.Equal(t, order, gotOrder, "merged by time, each entry naming its log")

		rows := strings.Split(strings.TrimSpace(run("audit", "list", "--serial", "11").stdout), "\n")
		require.Len(t, rows, 5)
		assert.Regexp(t, `^LOG +SEQ +TIME \(UTC\) +KIND +ACTOR +SERIAL +REPO +WHAT$`, rows[0])
		assert.Regexp(t, `^audit\.log +3 +.* issue `, rows[1])
		assert.Regexp(t, `^git\.log +2 +.* git +alice/r1 +11 +demo/app +allow git-receive-pack`, rows[2])
		assert.Regexp(t, `^audit\.log +4 +.* release `, rows[3])
		assert.Regexp(t, `^git\.log +3 +.* deny git-upload-pack`, rows[4])

		var one []map[string]any
		r := runJitssh(t, nil, "audit", "list", "--log", daemon, "--json")
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &one))
		assert.NotContains(t, one[0], "log", "one log: its entries as they are")

		r = runJitssh(t, []string{"JITSSH_AUDIT_LOG=" + daemon + string(os.PathListSeparator) + git}, "audit", "list", "--user", "alice", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
		assert.Len(t, got, 5, "alice's request and release, and her certificate's Git operations from the other log")
	})
	t.Run("show", func(t *testing.T) {
		out := run("audit", "show", "11").stdout
		assert.Contains(t, out, "git          0 fetches, 1 pushes (1 refs updated, 0 refused), 1 refused")
		assert.Contains(t, out, "refs/heads/feature/login "+strings.Repeat("1", 40)+" → "+strings.Repeat("2", 40)+" updated")
		var kinds []string
		for _, line := range strings.Split(out[strings.Index(out, "LOG "):], "\n")[1:] {
			if f := strings.Fields(line); len(f) > 4 && strings.HasSuffix(f[0], ".log") {
				kinds = append(kinds, f[0]+" "+f[4])
			}
		}
		assert.Equal(t, []string{"audit.log request", "audit.log approve", "audit.log issue", "git.log git", "audit.log release", "git.log git"}, kinds)

		var js struct {
			Certificate certView   `json:"certificate"`
			Entries     []logEntry `json:"entries"`
		}
		require.NoError(t, json.Unmarshal([]byte(run("audit", "show", "--json", "11").stdout), &js))
		require.Len(t, js.Entries, 6)
		assert.Equal(t, git, js.Entries[3].Log)
		assert.Equal(t, &gitCounts{Fetches: 0, Pushes: 1, Refused: 1, RefUpdates: 1}, js.Certificate.Git)
	})
	t.Run("certs", func(t *testing.T) {
		var certs []certView
		require.NoError(t, json.Unmarshal([]byte(run("audit", "certs", "--json").stdout), &certs))
		require.Len(t, certs, 1)
		assert.Equal(t, "released", certs[0].State)
	})
	t.Run("export", func(t *testing.T) {
		daemonLines, gitLines := logLines(t, daemon), logLines(t, git)
		var want []string
		for _, o := range order {
			name, lines := daemon, daemonLines
			if o[0] == 1 {
				name, lines = git, gitLines
			}
			quoted, err := json.Marshal(name)
			require.NoError(t, err)
			want = append(want, `{"log":`+string(quoted)+`,"entry":`+strings.TrimSuffix(lines[o[1]-1], "\n")+"}")
		}
		assert.Equal(t, strings.Join(want, "\n")+"\n", run("audit", "export").stdout, "each line as stored, inside an object naming its log")

		records, err := csv.NewReader(strings.NewReader(run("audit", "export", "--format", "csv").stdout)).ReadAll()
		require.NoError(t, err)
		require.Len(t, records, len(order)+1)
		assert.Equal(t, []string{"log", "seq", "time", "kind", "actor", "serial", "repo", "summary"}, records[0])
		assert.Equal(t, []string{git, "1"}, records[2][:2])
	})
	t.Run("report", func(t *testing.T) {
		out := run("audit", "report").stdout
		assert.Regexp(t, `Hash chains verified, each on its own: audit\.log, 4 entries, head [0-9a-f]{64}; git\.log, 3 entries, head [0-9a-f]{64}\.`, out)
		assert.Contains(t, out, "| Git operations | 3, of which 2 refused;")
	})
	t.Run("verify", func(t *testing.T) {
		r := run("audit", "verify", "--ca", fx.caPub, "--people", fx.people)
		assert.Contains(t, r.stdout, "ok: "+daemon+": 4 entries, head ")
		assert.Contains(t, r.stdout, "ok: "+git+": 3 entries, head ")

		// A tampered Git server log fails on its own chain; the daemon's
		// is checked all the same.
		lines := logLines(t, git)
		lines[0] = strings.Replace(lines[0], "certificate expired", "certificate fine", 1)
		bad := writeLines(t, lines)
		r = runJitssh(t, nil, "audit", "verify", "--log", bad, "--log", daemon, "--ca", fx.caPub, "--people", fx.people, "--json")
		assert.Equal(t, 1, r.code)
		var res verifyResult
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		require.Len(t, res.Failures, 1)
		assert.Equal(t, bad, res.Failures[0].Log)
		assert.Equal(t, 2, res.Failures[0].Line)
		require.Len(t, res.Logs, 2)
		assert.Equal(t, uint64(4), res.Logs[1].Entries)
		assert.Equal(t, 1, res.Issued)
		assert.Equal(t, "audit verify: 1 failure in 2 logs (7 entries read)", assertJSONError(t, r).Error)

		assertOneLineError(t, runJitssh(t, nil, "audit", "list", "--log", daemon, "--log", bad), 1, "audit log "+bad+": audit log line 2 (seq 2)")
		assertOneLineError(t, runJitssh(t, nil, "audit", "verify", "--log", daemon, "--log", git, "--ca", fx.caPub, "--head-key", fx.headKey, "--head", daemon+".head"),
			2, "--head is the head of one log")
	})
}

// TestAuditFlagsOnce: a flag that takes one value, given twice, is an
// error rather than a silent choice of one of them.
func TestAuditFlagsOnce(t *testing.T) {
	fx := newAuditFixture(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--log", fx.log, "--ca", fx.caPub, "--ca", fx.otherCA}, `flag -ca: given more than once`},
		{[]string{"verify", "--log", fx.log, "--ca", fx.caPub, "--head-key", fx.headKey, "--head-key", fx.caPub}, `flag -head-key: given more than once`},
		{[]string{"verify", "--log", fx.log, "--ca", fx.caPub, "--max-failures", "1", "--max-failures", "2"}, `flag -max-failures: given more than once`},
		{[]string{"list", "--log", fx.log, "--kind", "issue", "--kind", "git"}, `flag -kind: given more than once`},
		{[]string{"list", "--log", fx.log, "--limit", "1", "--limit", "2"}, `flag -limit: given more than once`},
		{[]string{"list", "--log", fx.log, "--since", "1h", "--since", "2h"}, `flag -since: given more than once`},
		{[]string{"export", "--log", fx.log, "--format", "csv", "--format", "json"}, `flag -format: given more than once`},
		{[]string{"report", "--log", fx.log, "--out", "a", "--out", "b"}, `flag -out: given more than once`},
		{[]string{"list", "--log", fx.log, "--log", fx.log}, `--log ` + fx.log + ` given twice`},
		{[]string{"list", "--log", fx.log, "--log", fx.dir + "/./audit.log"}, `given twice`},
	} {
		assertOneLineError(t, runJitssh(t, nil, append([]string{"audit"}, tt.args...)...), 2, tt.want)
	}
	// The environment is a default, which the command line replaces.
	r := runJitssh(t, []string{"JITSSH_AUDIT_CA=" + fx.otherCA}, "audit", "verify", "--log", fx.log, "--ca", fx.caPub)
	assert.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, []string{"JITSSH_AUDIT_LOG=" + filepath.Join(fx.dir, "nope")}, "audit", "list", "--log", fx.log)
	assert.Equal(t, 0, r.code, r.stderr)
}

// TestAuditTrustedKeysParse: the auditor reads every key it trusts with
// the parser of the program that trusts it: people's keys and the head key
// as the daemon reads a person's key, CA keys as the Git servers read
// them. A key file one accepts and the other refuses would make the
// auditor vouch for something the servers never trusted, or the reverse.
func TestAuditTrustedKeysParse(t *testing.T) {
	fx := newAuditFixture(t)
	plain := authorizedLine(fx.headSigner.PublicKey())
	cert := fx.issue(t, fx.ca, fx.request(t, "rk", "alice", "read", "demo/app", "*", "1h0m0s", "x"), 99, time.Hour).Certificate
	lines := []struct {
		name, line string
	}{
		{"plain key", plain},
		{"plain key with comment", plain + " daemon@host"},
		{"options", `from="10.0.0.1" ` + plain},
		{"cert-authority option", "cert-authority " + plain},
		{"certificate", cert},
		{"garbage", "ssh-ed25519 AAAAnope"},
		{"two keys on one line", plain + "\n" + plain},
	}
	dir := t.TempDir()
	for _, tt := range lines {
		t.Run(tt.name, func(t *testing.T) {
			// The head key, as the daemon reads a key.
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".pub")
			require.NoError(t, os.WriteFile(p, []byte(tt.line+"\n"), 0o600))
			_, daemonErr := approvals.ParseIdentityKey(tt.line)
			_, err := readHeadKey(p)
			if daemonErr == nil {
				assert.NoError(t, err)
			} else if assert.Error(t, err) && !strings.Contains(tt.line, "\n") {
				assert.Contains(t, err.Error(), daemonErr.Error(), "the daemon's own words")
			}

			// CA keys, as the Git servers read them.
			_, serverErr := ca.LoadPublicKeys(p)
			r := runJitssh(t, nil, "audit", "verify", "--log", fx.log, "--ca", p)
			if serverErr == nil {
				assert.NotContains(t, r.stderr, "load CA public keys", "accepted by the Git servers")
			} else {
				assertOneLineError(t, r, 1, serverErr.Error())
			}

			// A person's key in a --people file, as the daemon reads its
			// config.
			people := strings.Replace(string(mustRead(t, fx.people)), authorizedLine(fx.signers["erin"].PublicKey()), strings.ReplaceAll(tt.line, "\n", "\\n"), 1)
			pp := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yaml")
			require.NoError(t, os.WriteFile(pp, []byte(people), 0o600))
			_, policyErr := approvals.ParsePolicy(pp, []byte(people))
			r = runJitssh(t, nil, "audit", "verify", "--log", fx.log, "--ca", fx.caPub, "--people", pp)
			if policyErr == nil {
				assert.NotContains(t, r.stderr, "load people", "accepted by the daemon")
			} else {
				assertOneLineError(t, r, 1, "load people: "+oneLine(policyErr.Error()))
			}
		})
	}
	// Both parsers accept the plain key, and refuse at least options and
	// certificates: the cases above are not all one way.
	_, err := approvals.ParseIdentityKey(plain)
	require.NoError(t, err)
	_, err = approvals.ParseIdentityKey("cert-authority " + plain)
	require.Error(t, err)
	_, err = approvals.ParseIdentityKey(cert)
	require.Error(t, err)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// assertVerifyFailures checks that audit verify failed and printed each of
// want, in order, on a line of its own, then the count of failures.
func assertVerifyFailures(t *testing.T, r cliResult, want ...string) {
	t.Helper()
	assert.Equal(t, 1, r.code, "exit code; stderr: %s", r.stderr)
	assert.Empty(t, r.stdout, "stdout on failure")
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	require.NotEmpty(t, lines)
	assert.Regexp(t, `^jitssh: audit verify: \d+ failures? in `, lines[len(lines)-1])
	lines = lines[:len(lines)-1]
	for _, w := range want {
		i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, w) })
		if !assert.GreaterOrEqual(t, i, 0, "want a line with %q in:\n%s", w, r.stderr) {
			return
		}
		lines = lines[i+1:]
	}
}

// listSeqs runs audit list --json with args and returns the seqs printed.
func listSeqs(t *testing.T, fx *auditFixture, args ...string) []uint64 {
	t.Helper()
	r := runJitssh(t, nil, append([]string{"audit", "list", "--log", fx.log, "--json"}, args...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var entries []audit.Entry
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &entries), r.stdout)
	seqs := []uint64{}
	for _, e := range entries {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func TestAuditList(t *testing.T) {
	fx := newAuditFixture(t)
	s := func(names ...string) []uint64 {
		out := []uint64{}
		for _, n := range names {
			out = append(out, fx.seq[n])
		}
		return out
	}
	all := make([]uint64, fx.seq["checkpoint"])
	for i := range all {
		all[i] = uint64(i + 1)
	}
	tests := []struct {
		args []string
		want []uint64
	}{
		{nil, all},
		{[]string{"--kind", "approve"}, s("approve r1", "approve r2 bob", "approve r2 carol")},
		{[]string{"--serial", "12"}, s("issue r2", "git r2", "revoke r2")},
		{[]string{"--serial", "0x8000000000000001"}, s("break-glass", "git break-glass")},
		{[]string{"--repo", "docs/handbook"}, s("request r3", "git r3")},
		{[]string{"--user", "alice"}, s("request r1", "issue r1", "git r1", "release r1", "request r3", "issue r3", "git r3")},
		{[]string{"--user", "erin"}, s("break-glass", "git break-glass")},
		{[]string{"--user", "alice", "--kind", "git"}, s("git r1", "git r3")},
		{[]string{"--user", "alice", "--limit", "2"}, s("request r1", "issue r1")},
		{[]string{"--kind", "git", "--repo", "demo/app"}, s("git r1", "git r2")},
		{[]string{"--limit", "3"}, all[:3]},
		{[]string{"--since", "1h"}, all},
		{[]string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, []uint64{}},
		{[]string{"--until", "2000-01-01"}, []uint64{}},
		{[]string{"--until", "2d", "--kind", "issue"}, []uint64{}},
		{[]string{"--kind", "no-such-kind"}, []uint64{}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, listSeqs(t, fx, tt.args...), "audit list %q", tt.args)
	}

	r := runJitssh(t, []string{"JITSSH_AUDIT_LOG=" + fx.log}, "audit", "list", "--serial", "11")
	require.Equal(t, 0, r.code, r.stderr)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, rows, 4)
	assert.Regexp(t, `^SEQ +TIME \(UTC\) +KIND +ACTOR +SERIAL +REPO +WHAT$`, rows[0])
	assert.Regexp(t, `^3 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +issue +jitssh +11 +serial 11 alice/r1 git:write:demo/app:refs/heads/feature/\* until .* \(r1, approved by bob\)$`, rows[1])
	assert.Regexp(t, `^4 .* git +alice/r1 +11 +demo/app +allow git-receive-pack demo/app serial 11; refs/heads/feature/login 1111111..2222222 updated; refs/heads/main 1111111..3333333 refused$`, rows[2])
	assert.Equal(t, strings.Index(rows[0], "WHAT"), strings.Index(rows[1], "serial 11"), "columns align")

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time`},
		{[]string{"--serial", "x"}, `--serial "x"`},
		{[]string{"--limit", "-1"}, "--limit -1"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
	} {
		assertOneLineError(t, runJitssh(t, nil, append([]string{"audit", "list", "--log", fx.log}, tt.args...)...), 2, tt.want)
	}
	assertOneLineError(t, runJitssh(t, nil, "audit", "list", "--log", writeLines(t, logLines(t, fx.log)[1:])), 1, "seq 2 follows seq 0")
}

// TestAuditListTerminalSafe: text from the log cannot drive the auditor's
// terminal.
func TestAuditListTerminalSafe(t *testing.T) {
	fx := newAuditFixture(t)
	p := fx.copyLog(t)
	appendTo(t, p, audit.KindGit, "\x1b[2J\u202eevil", sshd.Event{Decision: sshd.Deny, Serial: 5, KeyID: "x\ty", Reason: "\x1b]0;pwned\x07"})
	r := runJitssh(t, nil, "audit", "list", "--log", p, "--serial", "5")
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "\x1b")
	assert.NotContains(t, r.stdout, "\u202e")
	assert.Contains(t, r.stdout, `\u001b[2J\u202eevil`)
	assert.Contains(t, r.stdout, `"\x1b]0;pwned\a"`)
}

func TestAuditCerts(t *testing.T) {
	fx := newAuditFixture(t)
	r := runJitssh(t, nil, "audit", "certs", "--log", fx.log, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var certs []certView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &certs), r.stdout)
	type row struct {
		Serial     uint64
		KeyID      string
		Requester  string
		Approvers  []string
		State      string
		BreakGlass bool
	}
	var got []row
	for _, c := range certs {
		got = append(got, row{c.Serial, c.KeyID, c.Requester, c.Approvers, c.State, c.BreakGlass})
	}
	assert.Equal(t, []row{
		{11, "alice/r1", "alice", []string{"bob"}, "released", false},
		{12, "dave/r2", "dave", []string{"bob", "carol"}, "revoked", false},
		{13, "alice/r3", "alice", []string{}, "active", false},
		{fx.breakSerial, "erin/incident-7", "erin", []string{}, "active", true},
	}, got)
	assert.Equal(t, []string{"git:force:demo/app:refs/heads/main"}, certs[1].Principals)
	assert.Equal(t, "rolled back", certs[1].EndReason)
	assert.WithinDuration(t, certs[2].Issued.Add(2*time.Hour), certs[2].ValidBefore, 2*time.Second)

	r = runJitssh(t, nil, "audit", "certs", "--log", fx.log)
	require.Equal(t, 0, r.code, r.stderr)
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, rows, 5)
	assert.Regexp(t, `^SERIAL +KEY ID +PRINCIPALS +VALID FROM \(UTC\) +VALID UNTIL \(UTC\) +REQUESTER +APPROVERS +STATE$`, rows[0])
	assert.Regexp(t, `^12 +dave/r2 +git:force:demo/app:refs/heads/main +\S+ \S+ +\S+ \S+ +dave +bob,carol +revoked$`, rows[2])
	assert.Regexp(t, `^0x8000000000000001 +erin/incident-7 +git:force:infra/tf:\* .* erin +\(break-glass\) +active$`, rows[4])
}

func TestAuditShow(t *testing.T) {
	fx := newAuditFixture(t)
	r := runJitssh(t, nil, "audit", "show", "--log", fx.log, "12")
	require.Equal(t, 0, r.code, r.stderr)
	out := r.stdout
	for _, want := range []string{
		"certificate  12  dave/r2",
		"principals   git:force:demo/app:refs/heads/main",
		`state        revoked at `,
		`by carol: "rolled back"`,
		`request      r2 by dave under rule reviewed: "revert"`,
		"approvers    bob,carol",
		"refs/heads/main " + strings.Repeat("2", 40) + " → " + strings.Repeat("4", 40) + " updated",
	} {
		assert.Contains(t, out, want)
	}
	// The story in order: request, approvals, issue, push, revocation.
	var kinds []string
	sc := bufio.NewScanner(strings.NewReader(out[strings.Index(out, "SEQ "):]))
	sc.Scan()
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 3 && f[0] != "" && f[0][0] >= '0' && f[0][0] <= '9' {
			kinds = append(kinds, f[3])
		}
	}
	assert.Equal(t, []string{"request", "approve", "approve", "issue", "git", "revoke"}, kinds)

	r = runJitssh(t, nil, "audit", "show", "--log", fx.log, "--json", "11")
	require.Equal(t, 0, r.code, r.stderr)
	var story struct {
		Certificate certView
		Entries     []audit.Entry
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &story))
	assert.Equal(t, "released", story.Certificate.State)
	require.NotNil(t, story.Certificate.Git)
	assert.Equal(t, gitCounts{Pushes: 1, RefUpdates: 1, RefsRefused: 1}, *story.Certificate.Git)
	var seqs []uint64
	for _, e := range story.Entries {
		seqs = append(seqs, e.Seq)
	}
	assert.Equal(t, []uint64{fx.seq["request r1"], fx.seq["approve r1"], fx.seq["issue r1"], fx.seq["git r1"], fx.seq["release r1"]}, seqs)

	r = runJitssh(t, nil, "audit", "show", "--log", fx.log, "0x8000000000000001")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "break-glass  signed with jitssh ca sign by erin")
	assert.Contains(t, r.stdout, `deny git-upload-pack infra/tf: "repository not found"`)

	// Git use of a serial never issued is shown for what it is.
	p := fx.copyLog(t)
	appendTo(t, p, audit.KindGit, "mallory/x", sshd.Event{Decision: sshd.Deny, Serial: 77, KeyID: "mallory/x", Service: "git-upload-pack", Repo: "demo/app", Reason: "bad CA"})
	r = runJitssh(t, nil, "audit", "show", "--log", p, "77")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "serial 77: not issued on this record"), r.stdout)

	assertOneLineError(t, runJitssh(t, nil, "audit", "show", "--log", fx.log, "99"), 1, "serial 99 is not on the record")
	assertOneLineError(t, runJitssh(t, nil, "audit", "show", "--log", fx.log, "zz"), 2, `serial "zz"`)
	assertOneLineError(t, runJitssh(t, nil, "audit", "show", "--log", fx.log), 2, "want exactly one SERIAL")
}

func TestAuditExport(t *testing.T) {
	fx := newAuditFixture(t)
	whole, err := os.ReadFile(fx.log)
	require.NoError(t, err)

	r := runJitssh(t, nil, "audit", "export", "--log", fx.log)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, string(whole), r.stdout, "a whole JSON export is the log itself")
	exported := filepath.Join(t.TempDir(), "export.jsonl")
	require.NoError(t, os.WriteFile(exported, []byte(r.stdout), 0o600))
	r = runJitssh(t, nil, "audit", "verify", "--log", exported, "--ca", fx.caPub, "--people", fx.people)
	assert.Equal(t, 0, r.code, "the export verifies: %s", r.stderr)

	r = runJitssh(t, nil, "audit", "export", "--log", fx.log, "--format", "json", "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)

	p := fx.copyLog(t)
	evil := appendTo(t, p, audit.KindGit, "=HYPERLINK(\"http://x\")", sshd.Event{Decision: sshd.Deny, Serial: 12, Repo: "demo/app", Reason: "a,b\n\"c\""})
	r = runJitssh(t, nil, "audit", "export", "--log", p, "--format", "csv")
	require.Equal(t, 0, r.code, r.stderr)
	records, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	require.NoError(t, err)
	require.Len(t, records, int(evil)+1)
	assert.Equal(t, []string{"seq", "time", "kind", "actor", "serial", "repo", "summary"}, records[0])
	issue := records[fx.seq["issue r2"]]
	assert.Equal(t, []string{strconv.FormatUint(fx.seq["issue r2"], 10), "issue", "jitssh", "12", ""}, []string{issue[0], issue[2], issue[3], issue[4], issue[5]})
	_, err = time.Parse(time.RFC3339Nano, issue[1])
	assert.NoError(t, err)
	assert.Equal(t, "0x8000000000000001", records[fx.seq["break-glass"]][4])
	last := records[evil]
	assert.Equal(t, `'=HYPERLINK("http://x")`, last[3], "a formula is defused")
	assert.Equal(t, `deny  demo/app serial 12: "a,b\n\"c\""`, last[6])

	assertOneLineError(t, runJitssh(t, nil, "audit", "export", "--log", fx.log, "--format", "xml"), 2, `--format "xml": want json or csv`)
	lines := logLines(t, fx.log)
	lines[1] = strings.Replace(lines[1], `"ok"`, `"OK"`, 1)
	r = runJitssh(t, nil, "audit", "export", "--log", writeLines(t, lines))
	assertOneLineError(t, r, 1, "hash chain broken")
}

func TestAuditReport(t *testing.T) {
	fx := newAuditFixture(t)
	r := runJitssh(t, nil, "audit", "report", "--log", fx.log)
	require.Equal(t, 0, r.code, r.stderr)
	md := r.stdout
	for _, want := range []string{
		"# jitssh access report",
		fmt.Sprintf("Hash chain verified: %d entries, head %s.", fx.seq["checkpoint"], lastLineHash(t, fx.log)),
		"| Certificates issued | 3, and 1 break-glass |",
		"| Requests | 4, of which 1 denied |",
		"| demo/app | 2 | 0 | 1 | 1 | 0 | alice, dave |",
		"| 12 | dave/r2 | git:force:demo/app:refs/heads/main | dave | bob, carol |",
		"| r4 | dave | git:write:infra/tf:refs/heads/main | carol | not now |",
		"| 0x8000000000000001 | erin/incident-7 | git:force:infra/tf:\\* |",
		"| refs/heads/main | not granted |",
	} {
		assert.Contains(t, md, want)
	}

	out := filepath.Join(t.TempDir(), "report.html")
	r = runJitssh(t, nil, "audit", "report", "--log", fx.log, "--format", "html", "--out", out, "--since", "1h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	html, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(html, []byte("<!DOCTYPE html>")))
	assert.Contains(t, string(html), "<svg")
	assert.Contains(t, string(html), "dave/r2")
	assert.NotContains(t, string(html), "<script")
	assert.NotContains(t, string(html), "src=")

	r = runJitssh(t, nil, "audit", "report", "--log", fx.log, "--since", time.Now().Add(time.Hour).Format(time.RFC3339))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "No certificates were issued.")

	assertOneLineError(t, runJitssh(t, nil, "audit", "report", "--log", fx.log, "--format", "pdf"), 2, `--format "pdf": want md or html`)
	assertOneLineError(t, runJitssh(t, nil, "audit", "report", "--log", fx.log, "--out", filepath.Join(fx.dir, "no", "such", "dir", "r.md")), 1, "no such file")
}

func TestAuditHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"list":   {"--user", "--repo", "--serial", "--kind", "--since", "--until", "--limit", "--json"},
		"certs":  {"--json"},
		"show":   {"SERIAL", "--json"},
		"verify": {"--ca", "--people", "--allow-unknown-policy", "--head", "--head-key", "--no-head", "--max-failures", "--json", "JITSSH_AUDIT_CA", "JITSSH_AUDIT_PEOPLE", "JITSSH_AUDIT_HEAD_KEY"},
		"export": {"--format", "--since", "--until"},
		"report": {"--since", "--format", "--out"},
	} {
		r := runJitssh(t, nil, "audit", cmd, "--help")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Empty(t, r.stderr)
		for _, f := range append(flags, "--log", "JITSSH_AUDIT_LOG") {
			assert.Contains(t, r.stdout, f, "audit %s --help", cmd)
		}
	}
	r := runJitssh(t, nil, "audit")
	require.Equal(t, 0, r.code, r.stderr)
	for _, sub := range []string{"list", "certs", "show", "verify", "export", "report"} {
		assert.Contains(t, r.stdout, sub)
	}
	assertOneLineError(t, runJitssh(t, nil, "audit", "frobnicate"), 2, `audit: unknown command "frobnicate"`)
}

func TestParseTimeArg(t *testing.T) {
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2025-03-01T08:30:00Z", time.Date(2025, 3, 1, 8, 30, 0, 0, time.UTC), true},
		{"2025-03-01T08:30:00+02:00", time.Date(2025, 3, 1, 6, 30, 0, 0, time.UTC), true},
		{"2025-03-01", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"0d", time.Time{}, false},
		{"-1h", time.Time{}, false},
		{"d", time.Time{}, false},
		{"1.5d", time.Time{}, false},
		{"last week", time.Time{}, false},
	} {
		got, err := parseTimeArg(tt.in, now)
		if !tt.ok {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.True(t, tt.want.Equal(got), "parseTimeArg(%q) = %v, want %v", tt.in, got, tt.want)
	}
}

// BenchmarkAuditShowMillion measures `jitssh audit show` on a log of a
// million entries: building the index (which verifies the chain), finding
// one certificate's story in it, and the whole command as a user runs it.
func BenchmarkAuditShowMillion(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "audit.log")
	start := time.Now()
	stories := writeMillionAuditLog(b, path, n)
	fi, err := os.Stat(path)
	require.NoError(b, err)
	b.Logf("wrote %d entries (%d certificates), %d MB, in %v", n, stories, fi.Size()>>20, time.Since(start).Round(time.Millisecond))

	ixPath := filepath.Join(b.TempDir(), "audit.log.index")
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			os.Remove(ixPath)
			ix, err := audit.OpenIndexFile(ixPath, path)
			require.NoError(b, err)
			ix.Close()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("lookup", func(b *testing.B) {
		ix, err := audit.OpenIndexFile(ixPath, path)
		require.NoError(b, err)
		defer ix.Close()
		rng := mrand.New(mrand.NewPCG(1, 2))
		b.ReportAllocs()
		for b.Loop() {
			serial := 1 + rng.Uint64N(uint64(stories))
			story, err := certStory(ix, serial)
			require.NoError(b, err)
			if certs := audit.CollectCerts(story); len(certs) != 1 || len(story) != millionStoryLen {
				b.Fatalf("serial %d: %d entries, %d certificates", serial, len(story), len(certs))
			}
		}
	})
	b.Run("command", func(b *testing.B) {
		serial := strconv.Itoa(stories / 2)
		var peak int64
		for b.Loop() {
			r, rss := runJitsshB(b, "audit", "show", "--log", path, serial)
			if r.code != 0 || !strings.Contains(r.stdout, "certificate  "+serial) {
				b.Fatalf("audit show: exit %d: %s", r.code, r.stderr)
			}
			peak = max(peak, rss)
		}
		b.ReportMetric(float64(peak>>20), "peak-RSS-MB")
	})
}

// millionStoryLen is the number of entries of one certificate's story in
// the million-entry log: request, approval, issue, four Git operations and
// the end.
const millionStoryLen = 8

// writeMillionAuditLog writes n entries quickly, in stories of
// millionStoryLen entries shaped like the daemon's (with statements,
// signatures and certificates of realistic size, not real ones), and
// returns the number of certificates.
func writeMillionAuditLog(b *testing.B, path string, n int) int {
	f, err := os.Create(path)
	require.NoError(b, err)
	w := bufio.NewWriterSize(f, 1<<20)
	prev := audit.GenesisHash
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sig := "-----BEGIN SSH SIGNATURE-----\n" + strings.Repeat("U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg", 6) + "\n-----END SSH SIGNATURE-----\n"
	cert := "ssh-ed25519-cert-v01@openssh.com " + strings.Repeat("AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t", 9)
	seq := uint64(0)
	put := func(kind, actor string, data any) {
		seq++
		raw, err := json.Marshal(data)
		require.NoError(b, err)
		line, err := json.Marshal(audit.Entry{Seq: seq, Time: base.Add(time.Duration(seq) * 5 * time.Second), Kind: kind, Actor: actor, Data: raw, Prev: prev})
		require.NoError(b, err)
		w.Write(line)
		w.WriteByte('\n')
		sum := sha256.Sum256(line)
		prev = hex.EncodeToString(sum[:])
	}
	stories := 0
	for int(seq)+millionStoryLen <= n {
		stories++
		serial := uint64(stories)
		user := "user" + strconv.Itoa(stories%1000)
		approver := "lead" + strconv.Itoa(stories%50)
		id := "req-" + strconv.Itoa(stories)
		repo := "org" + strconv.Itoa(stories%10) + "/repo" + strconv.Itoa(stories%100)
		grant := "git:write:" + repo + ":refs/heads/feature/*"
		st := `{"kind":"request","requester":"` + user + `","repo":"` + repo + `","ref":"refs/heads/feature/*","access":"write","ttl":"1h0m0s","reason":"work","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq"}` + "\n"
		put(audit.KindRequest, user, audit.RequestData{ID: id, Requester: user, Repo: repo, Ref: "refs/heads/feature/*", Access: "write", Grant: grant,
			TTL: "1h0m0s", Reason: "work", Rule: "feature", Steps: []audit.Step{{Group: "leads", Count: 1}}, PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq",
			Statement: st, Signature: sig})
		put(audit.KindApprove, approver, audit.DecisionData{Subject: audit.Subject{ID: id}, By: approver, Statement: `{"kind":"approve","request":"` + id + `"}` + "\n", Signature: sig})
		t0 := base.Add(time.Duration(seq) * 5 * time.Second)
		put(audit.KindIssue, "jitssh", audit.IssueData{ID: id, Serial: serial, KeyID: user + "/" + id, Requester: user, Principals: []string{grant},
			ValidAfter: t0.Add(-time.Minute), ValidBefore: t0.Add(time.Hour), Approvers: []string{approver}, Rule: "feature", Certificate: cert})
		for i := range 4 {
			ev := sshd.Event{Time: t0, Decision: sshd.Allow, Serial: serial, KeyID: user + "/" + id, Principals: []string{grant}, Service: "git-upload-pack",
				Repo: repo, Remote: "192.0.2.1:40000", BytesIn: 300, BytesOut: 90000, Duration: time.Second}
			if i == 3 {
				ev.Service = "git-receive-pack"
				ev.Updates = []sshd.RefUpdate{{Ref: "refs/heads/feature/x", Old: strings.Repeat("a", 40), New: strings.Repeat("b", 40), Result: "updated"}}
			}
			put(audit.KindGit, user+"/"+id, ev)
		}
		put(audit.KindRelease, user, audit.EndData{Subject: audit.Subject{ID: id, Serial: serial}, By: user})
	}
	for int(seq) < n {
		put(audit.KindPolicyReload, "jitssh", map[string]any{"rules": 3})
	}
	require.NoError(b, w.Flush())
	require.NoError(b, f.Close())
	return stories
}

// runJitsshB runs the binary for a benchmark and returns what it printed
// and its peak resident memory in bytes.
func runJitsshB(b *testing.B, args ...string) (cliResult, int64) {
	b.Helper()
	cmd := exec.Command(jitsshBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		b.Fatalf("run jitssh %q: %v", args, err)
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10 // Linux reports KiB
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}, rss
}

// TestAuditReportGolden checks that the command, which loads only the
// entries a report needs, writes exactly the report package audit makes
// from the whole of its fixture log.
func TestAuditReportGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "audit", "testdata", "report")
	for _, tt := range []struct{ golden, format, since string }{
		{"report.md", "md", ""},
		{"report.html", "html", ""},
		{"report-since.md", "md", "2025-03-03T10:30:00Z"},
		{"report-since.html", "html", "2025-03-03T10:30:00Z"},
	} {
		want, err := os.ReadFile(filepath.Join(dir, tt.golden))
		require.NoError(t, err)
		args := []string{"audit", "report", "--log", filepath.Join(dir, "audit.jsonl"), "--format", tt.format}
		if tt.since != "" {
			args = append(args, "--since", tt.since)
		}
		r := runJitssh(t, nil, args...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, string(want), r.stdout, tt.golden)
	}
}

// TestAuditVerifyDaemonLog runs the approval engine itself, with its config
// file and a real audit log, through requests, approvals (one with a
// shorter TTL spelled as a person types it), a denial, an automatic grant
// and a release, then verifies the log with that same config as --people.
func TestAuditVerifyDaemonLog(t *testing.T) {
	dir := t.TempDir()
	signers := map[string]ssh.Signer{"alice": auditSigner(t), "bob": auditSigner(t), "carol": auditSigner(t)}
	var people strings.Builder
	for _, name := range []string{"alice", "bob", "carol"} {
		groups := "[dev, approvers]"
		if name == "alice" {
			groups = "[dev]"
		}
		fmt.Fprintf(&people, "  - name: %s\n    groups: %s\n    keys: [%q]\n", name, groups, authorizedLine(signers[name].PublicKey())+" "+name+"@laptop")
	}
	config := filepath.Join(dir, "jitssh.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`listen: 127.0.0.1:2200
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
people:
`+people.String()+`rules:
  - {name: read, groups: [dev], repos: [demo/app], refs: ["*"], access: [read], auto_approve: true}
  - name: feature
    groups: [dev]
    repos: [demo/app]
    refs: [refs/heads/feature/*]
    access: [write]
    approvals: [{group: approvers, count: 1}]
`), 0o600))
	cfg, err := approvals.LoadConfig(config)
	require.NoError(t, err)
	policy, err := approvals.NewPolicy(cfg)
	require.NoError(t, err)
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	authority, err := ca.New(caPriv)
	require.NoError(t, err)
	caPub := filepath.Join(dir, "ca.pub")
	require.NoError(t, os.WriteFile(caPub, []byte(authority.AuthorizedKey()+"\n"), 0o644))
	log, err := audit.Open(cfg.AuditLog, audit.Options{Journal: true})
	require.NoError(t, err)
	svc, err := approvals.Open(approvals.Options{DataDir: cfg.DataDir, Policy: policy, Authority: authority, Audit: log,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	ctx := context.Background()
	as := func(person string) approvals.Actor {
		t.Helper()
		who, err := svc.Authenticate(signers[person].PublicKey())
		require.NoError(t, err)
		return who
	}
	submit := func(req apiRequest) *approvals.Request {
		t.Helper()
		key := auditSigner(t).PublicKey()
		req.PublicKey = authorizedLine(key) + " fresh-key"
		st := requestStatement("alice", req)
		sig, err := audit.SignStatement(signers["alice"], audit.NamespaceRequest, st.Message())
		require.NoError(t, err)
		ttl, _ := time.ParseDuration(req.TTL)
		r, err := svc.Submit(ctx, as("alice"), approvals.SubmitInput{Repo: req.Repo, Ref: req.Ref, Access: req.Access, TTL: ttl, Reason: req.Reason,
			PublicKey: key, Signature: sig, Statement: string(st.Message())})
		require.NoError(t, err)
		return r
	}
	decide := func(method, person string, r *approvals.Request, req apiRequest) *approvals.Request {
		t.Helper()
		st := decisionStatement(method, person, r, req)
		ns := audit.NamespaceApprove
		if method == methodDeny {
			ns = audit.NamespaceDeny
		}
		sig, err := audit.SignStatement(signers[person], ns, st.Message())
		require.NoError(t, err)
		ttl, _ := time.ParseDuration(req.TTL)
		in := approvals.DecisionInput{Reason: req.Reason, TTL: ttl, Signature: sig, Statement: string(st.Message())}
		if method == methodDeny {
			r, err = svc.Deny(ctx, as(person), r.ID, in)
		} else {
			r, err = svc.Approve(ctx, as(person), r.ID, in)
		}
		require.NoError(t, err)
		return r
	}

	read := submit(apiRequest{Repo: "demo/app.git", Ref: "*", Access: "read", Reason: "look around"})
	require.NotZero(t, read.Serial, "issued at once")
	feature := submit(apiRequest{Repo: "/demo/app", Ref: "refs/heads/feature/*", Access: "write", TTL: "90m", Reason: "login form"})
	feature = decide(methodApprove, "bob", feature, apiRequest{TTL: "30m", Reason: "half an hour"})
	require.NotZero(t, feature.Serial)
	_, err = svc.Release(ctx, as("alice"), feature.ID)
	require.NoError(t, err)
	denied := submit(apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/x", Access: "write", Reason: "again"})
	decide(methodDeny, "carol", denied, apiRequest{Reason: "not today"})
	require.NoError(t, svc.Close())
	require.NoError(t, log.Close())

	r := runJitssh(t, nil, "audit", "verify", "--log", cfg.AuditLog, "--ca", caPub, "--people", config)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "checked: 3 requests, 1 approvals, 1 denials, 2 certificates issued")

	r = runJitssh(t, nil, "audit", "certs", "--log", cfg.AuditLog, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var certs []certView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &certs))
	require.Len(t, certs, 2)
	assert.Equal(t, []string{"active", "released"}, []string{certs[0].State, certs[1].State})
	assert.Equal(t, []string{"bob"}, certs[1].Approvers)
	assert.WithinDuration(t, certs[1].Issued.Add(30*time.Minute), certs[1].ValidBefore, 2*time.Second, "the approver's shorter TTL")

	// The same log, with one approval's recorded reason changed and the
	// chain rebuilt after it, fails at that approval.
	p := rechain(t, logLines(t, cfg.AuditLog), func(e *audit.Entry) {
		if e.Kind == audit.KindApprove {
			e.Data = json.RawMessage(strings.Replace(string(e.Data), "half an hour", "a whole day", 1))
		}
	})
	assertVerifyFailures(t, runJitssh(t, nil, "audit", "verify", "--log", p, "--ca", caPub, "--people", config),
		`approve of `+feature.ID+`: reason is "a whole day", but bob signed "half an hour": record disagrees with its signed statement`)
}
