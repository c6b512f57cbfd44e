package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// failingLog is the daemon's audit log with a disk that fills up: the
// first writes that hold an entry of kind fail, then it works again.
type failingLog struct {
	*audit.Log
	mu       sync.Mutex
	kind     string
	failures int
}

var errDiskFull = errors.New("no space left on device")

func (f *failingLog) AppendLines(lines [][]byte) error {
	f.mu.Lock()
	if f.failures > 0 {
		for _, line := range lines {
			if strings.Contains(string(line), `"kind":"`+f.kind+`"`) {
				f.failures--
				f.mu.Unlock()
				return errDiskFull
			}
		}
	}
	f.mu.Unlock()
	return f.Log.AppendLines(lines)
}

// fakeNow is a clock the test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeNow) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestAuditVerifiesWhateverStepFails runs a whole story through the
// approval engine (an automatic grant, a request approved and issued, a
// release, a denial, an expiry and a revocation) once for each kind of
// entry, with the audit log failing on the first write of that kind, and
// verifies the log each time with `jitssh audit verify --people`: a failed
// write only delays its entry, never loses or repeats one, and never lets
// a certificate out ahead of its approval.
func TestAuditVerifiesWhateverStepFails(t *testing.T) {
	for _, kind := range []string{
		approvals.AuditRequest, approvals.AuditApprove, approvals.AuditIssue, approvals.AuditRelease,
		approvals.AuditDeny, approvals.AuditExpire, approvals.AuditRevoke,
	} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			story := newAuditStory(t, kind)
			story.run(t)
			r := runJitssh(t, nil, "audit", "verify", "--log", story.logPath, "--ca", story.caPub, "--people", story.config)
			require.Equal(t, 0, r.code, "a log the daemon wrote through a failing disk must verify:\n%s", r.stderr)
			assert.Contains(t, r.stdout, "checked: 5 requests, 1 approvals, 1 denials, 2 certificates issued")
			assert.Equal(t, 0, story.log.failures, "the %s write failed once", kind)
		})
	}
}

type auditStory struct {
	dir, config, caPub, logPath string
	signers                     map[string]ssh.Signer
	clock                       *fakeNow
	log                         *failingLog
	svc                         *approvals.Service
}

func newAuditStory(t *testing.T, failKind string) *auditStory {
	t.Helper()
	s := &auditStory{dir: t.TempDir(), clock: &fakeNow{t: time.Now().UTC().Truncate(time.Second)}}
	s.signers = map[string]ssh.Signer{"alice": auditSigner(t), "bob": auditSigner(t), "carol": auditSigner(t)}
	var people strings.Builder
	for _, name := range []string{"alice", "bob", "carol"} {
		groups := "[dev, approvers]"
		if name == "alice" {
			groups = "[dev]"
		}
		fmt.Fprintf(&people, "  - name: %s\n    groups: %s\n    keys: [%q]\n", name, groups, authorizedLine(s.signers[name].PublicKey())+" "+name+"@laptop")
	}
	s.config = filepath.Join(s.dir, "jitssh.yaml")
	require.NoError(t, os.WriteFile(s.config, []byte(`listen: 127.0.0.1:2200
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
request_timeout: 1h
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
	cfg, err := approvals.LoadConfig(s.config)
	require.NoError(t, err)
	policy, err := approvals.NewPolicy(cfg)
	require.NoError(t, err)
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	authority, err := ca.New(caPriv)
	require.NoError(t, err)
	authority.Now = s.clock.Now
	s.caPub = filepath.Join(s.dir, "ca.pub")
	require.NoError(t, os.WriteFile(s.caPub, []byte(authority.AuthorizedKey()+"\n"), 0o644))
	s.logPath = cfg.AuditLog
	log, err := audit.Open(cfg.AuditLog, audit.Options{Journal: true})
	require.NoError(t, err)
	s.log = &failingLog{Log: log, kind: failKind, failures: 1}
	s.svc, err = approvals.Open(approvals.Options{DataDir: cfg.DataDir, Policy: policy, Authority: authority, Audit: s.log,
		Now: s.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() {
		s.svc.Close()
		log.Close()
	})
	return s
}

// settle returns what a call returned, or, when its audit entry could not
// be written, the request as it is once the entry is: the caller of a
// daemon that answered "audit log unavailable" would look it up again.
func (s *auditStory) settle(t *testing.T, r *approvals.Request, err error, id string) *approvals.Request {
	t.Helper()
	if err == nil {
		return r
	}
	require.ErrorIs(t, err, approvals.ErrAudit)
	if id == "" { // the submit itself failed: the newest request is it
		page, err := s.svc.List(s.as(t, "bob"), approvals.ListFilter{Limit: 1})
		require.NoError(t, err)
		require.Len(t, page.Requests, 1)
		id = page.Requests[0].ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := s.svc.Get(s.as(t, "bob"), id)
	require.NoError(t, err)
	// Wait returns a change once its certificate, if any, may leave.
	got, err = s.svc.Wait(ctx, s.as(t, "bob"), id, got.Version-1)
	require.NoError(t, err)
	return got
}

// as is the person name speaking with their own key.
func (s *auditStory) as(t *testing.T, person string) approvals.Actor {
	t.Helper()
	who, err := s.svc.Authenticate(s.signers[person].PublicKey())
	require.NoError(t, err)
	return who
}

func (s *auditStory) submit(t *testing.T, req apiRequest) *approvals.Request {
	t.Helper()
	ctx := context.Background()
	key := auditSigner(t).PublicKey()
	req.PublicKey = authorizedLine(key) + " fresh-key"
	st := requestStatement("alice", req)
	sig, err := audit.SignStatement(s.signers["alice"], audit.NamespaceRequest, st.Message())
	require.NoError(t, err)
	ttl, _ := time.ParseDuration(req.TTL)
	r, err := s.svc.Submit(ctx, s.as(t, "alice"), approvals.SubmitInput{Repo: req.Repo, Ref: req.Ref, Access: req.Access, TTL: ttl, Reason: req.Reason,
		PublicKey: key, Signature: sig, Statement: string(st.Message())})
	return s.settle(t, r, err, "")
}

func (s *auditStory) decide(t *testing.T, method, person string, r *approvals.Request, req apiRequest) *approvals.Request {
	t.Helper()
	st := decisionStatement(method, person, r, req)
	ns := audit.NamespaceApprove
	if method == methodDeny {
		ns = audit.NamespaceDeny
	}
	sig, err := audit.SignStatement(s.signers[person], ns, st.Message())
	require.NoError(t, err)
	in := approvals.DecisionInput{Reason: req.Reason, Signature: sig, Statement: string(st.Message())}
	var out *approvals.Request
	if method == methodDeny {
		out, err = s.svc.Deny(context.Background(), s.as(t, person), r.ID, in)
	} else {
		out, err = s.svc.Approve(context.Background(), s.as(t, person), r.ID, in)
	}
	if err != nil && errors.Is(err, approvals.ErrIssue) && !errors.Is(err, approvals.ErrAudit) {
		require.NoError(t, err)
	}
	return s.settle(t, out, err, r.ID)
}

func (s *auditStory) run(t *testing.T) {
	ctx := context.Background()
	read := s.submit(t, apiRequest{Repo: "demo/app", Ref: "*", Access: "read", TTL: "4h", Reason: "look around"})
	require.NotEmpty(t, read.Certificate, "issued at once")

	feature := s.submit(t, apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/*", Access: "write", TTL: "90m", Reason: "login form"})
	feature = s.decide(t, methodApprove, "bob", feature, apiRequest{Reason: "ok"})
	require.NotEmpty(t, feature.Certificate)
	released, err := s.svc.Release(ctx, s.as(t, "alice"), feature.ID)
	released = s.settle(t, released, err, feature.ID)
	require.NotNil(t, released.Revoked)

	denied := s.submit(t, apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/x", Access: "write", Reason: "again"})
	denied = s.decide(t, methodDeny, "carol", denied, apiRequest{Reason: "not today"})
	require.Equal(t, approvals.StateDenied, denied.State)

	revoked, err := s.svc.Revoke(ctx, s.as(t, "bob"), read.ID, 0, "done reading")
	revoked = s.settle(t, revoked, err, read.ID)
	require.NotNil(t, revoked.Revoked)

	// Nobody decides; an hour later the request expires. The engine's
	// expiry loop wakes when the set of pending requests changes: the
	// next request.
	stale := s.submit(t, apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/y", Access: "write", Reason: "later"})
	s.clock.add(time.Hour + time.Second)
	s.submit(t, apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/z", Access: "write", Reason: "next"})

	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got *approvals.Request
	for got == nil || got.State == approvals.StatePending {
		if got, err = s.svc.Wait(waitCtx, s.as(t, "bob"), stale.ID, stale.Version); err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded, "expiry")
			require.FailNow(t, "the request never expired")
		}
		stale = got
	}
	require.Equal(t, approvals.StateExpired, got.State)
	require.NoError(t, s.svc.Close())
}
