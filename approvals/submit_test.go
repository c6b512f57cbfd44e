package approvals

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

func TestSubmitAutoApprove(t *testing.T) {
	env := newTestService(t, nil)
	in := readReq(t)
	r := env.submit(t, "alice", in)

	assert.Equal(t, StateApproved, r.State)
	assert.Equal(t, "app-read", r.Rule)
	assert.Equal(t, "git:read:demo/app:refs/heads/main", r.Grant)
	assert.Equal(t, uint64(1), r.Serial)
	assert.Empty(t, r.Steps)
	assert.True(t, r.ExpiresAt.IsZero(), "an approved request has no pending timeout")

	cert := parseCert(t, r)
	assert.Equal(t, r.Serial, cert.Serial)
	assert.Equal(t, "alice/"+r.ID, cert.KeyId)
	assert.Equal(t, []string{r.Grant}, cert.ValidPrincipals)
	assert.Equal(t, in.PublicKey.Marshal(), cert.Key.Marshal())
	assert.Equal(t, t0, r.IssuedAt)
	assert.Equal(t, t0.Add(time.Hour), r.ValidBefore, "the rule's default TTL, from the moment of issue")
	assert.Equal(t, t0.Add(-ca.DefaultBackdate), r.ValidAfter)
	assert.Equal(t, CertActive, r.CertState(t0))
	assert.Equal(t, env.ca.PublicKey().Marshal(), cert.SignatureKey.Marshal())

	assert.Equal(t, []string{AuditRequest, AuditIssue}, env.audit.kinds())
	issue := env.audit.of(AuditIssue)[0]
	assert.Equal(t, SystemActor, issue.Actor)
	assert.Equal(t, r.Serial, issue.Data.Serial)
	assert.Equal(t, "demo/app", issue.Data.Repo)
	assert.Equal(t, []string{r.Grant}, issue.Data.Principals)
	assert.Equal(t, r.ValidBefore, issue.Data.ValidBefore)

	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, r, got)
}

func TestSubmitThenApprove(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))
	assert.Equal(t, StatePending, r.State)
	assert.Equal(t, "feature-write", r.Rule)
	assert.Equal(t, []Step{{Group: "approvers", Count: 1}}, r.Steps)
	assert.Equal(t, t0.Add(time.Hour), r.ExpiresAt, "the dev policy's request timeout")
	assert.Empty(t, r.Certificate)
	assert.Zero(t, r.Serial)

	r = env.approve(t, "bob", r.ID)
	assert.Equal(t, StateApproved, r.State)
	require.Len(t, r.Approvals, 1)
	assert.Equal(t, "bob", r.Approvals[0].By)
	assert.Equal(t, []string{"approvers"}, r.Approvals[0].Groups)
	assert.Equal(t, "git:write:demo/app:refs/heads/feature/login", parseCert(t, r).ValidPrincipals[0])
	assert.Equal(t, []string{AuditRequest, AuditApprove, AuditIssue}, env.audit.kinds())
	assert.Equal(t, []string{"bob"}, env.audit.of(AuditIssue)[0].Data.Approvers)
}

func TestSubmitRefused(t *testing.T) {
	env := newTestService(t, policyFrom(t, `
max_pending_per_user: 5
people:
  - {name: alice, groups: [dev], keys: ["KEY(alice)"]}
  - {name: bob, groups: [dev, approvers], keys: ["KEY(bob)"]}
  - {name: carol, groups: [dev, approvers], keys: ["KEY(carol)"]}
rules:
  - name: app-read
    groups: [dev]
    repos: [demo/app]
    refs: ["*"]
    access: [read]
    auto_approve: true
    max_ttl: 8h
  - name: main-write
    groups: [dev]
    repos: [demo/app]
    refs: [refs/heads/main]
    access: [write]
    approvals: [{group: approvers, count: 2}]
    require_reason: true
`))
	aliceKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyLine(t, "alice")))
	require.NoError(t, err)
	cert := &ssh.Certificate{Key: freshKey(t), CertType: ssh.UserCert}

	tests := []struct {
		name   string
		person string
		edit   func(*SubmitInput)
		want   error
		msg    string
	}{
		{"unknown person", "mallory", nil, ErrForbidden, `"mallory" is not a person`},
		{"bad repo", "alice", func(in *SubmitInput) { in.Repo = "../etc" }, ErrBadRequest, "invalid repo"},
		{"bad ref", "alice", func(in *SubmitInput) { in.Ref = "refs/heads/ma*n" }, ErrBadRequest, "invalid ref"},
		{"bad access", "alice", func(in *SubmitInput) { in.Access = "admin" }, ErrBadRequest, "invalid access"},
		{"no rule", "alice", func(in *SubmitInput) { in.Repo = "demo/other" }, ErrNoRule,
			"no rule lets alice (group dev) request read on demo/other at refs/heads/main; you may request nothing on demo/other"},
		{"no rule for ref", "alice", func(in *SubmitInput) { in.Access, in.Ref = "write", "refs/heads/dev" }, ErrNoRule,
			"on demo/app you may request read on * (rule app-read); write on refs/heads/main (rule main-write)"},
		{"ttl above max", "alice", func(in *SubmitInput) { in.TTL = 9 * time.Hour }, ErrBadRequest, "ttl 9h0m0s is outside 1m0s to 8h0m0s"},
		{"ttl below min", "alice", func(in *SubmitInput) { in.TTL = time.Second }, ErrBadRequest, "ttl 1s is outside"},
		{"negative ttl", "alice", func(in *SubmitInput) { in.TTL = -time.Hour }, ErrBadRequest, "outside"},
		{"reason required", "alice", func(in *SubmitInput) { in.Access, in.Reason = "write", "  " }, ErrBadRequest,
			"rule main-write requires a reason"},
		{"nobody else to approve", "bob", func(in *SubmitInput) { in.Access, in.Reason = "write", "x" }, ErrNoRule,
			"not enough people besides bob"},
		{"no key", "alice", func(in *SubmitInput) { in.PublicKey = nil }, ErrBadRequest, "no public key"},
		{"certificate as key", "alice", func(in *SubmitInput) { in.PublicKey = cert }, ErrBadRequest, "is a certificate"},
		{"identity key", "alice", func(in *SubmitInput) { in.PublicKey = aliceKey }, ErrBadRequest, "alice's identity key"},
		{"CA key", "alice", func(in *SubmitInput) { in.PublicKey = env.ca.PublicKey() }, ErrBadRequest, "it is the CA key"},
		{"escape in reason", "alice", func(in *SubmitInput) { in.Reason = "ok\x1b[2J" }, ErrBadRequest, "control character"},
		{"newline in reason", "alice", func(in *SubmitInput) { in.Reason = "ok\nbob approved" }, ErrBadRequest, "control character"},
		{"bidi override in reason", "alice", func(in *SubmitInput) { in.Reason = "ok\u202e" }, ErrBadRequest, "control character"},
		{"long reason", "alice", func(in *SubmitInput) { in.Reason = strings.Repeat("x", MaxReasonLen+1) }, ErrBadRequest, "at most"},
		{"binary signature", "alice", func(in *SubmitInput) { in.Signature = "\x00" }, ErrBadRequest, "signature"},
	}
	for _, tt := range tests {
		for _, dry := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/dry=%v", tt.name, dry), func(t *testing.T) {
				in := SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "read", PublicKey: freshKey(t), DryRun: dry}
				if tt.edit != nil {
					tt.edit(&in)
				}
				r, err := env.Submit(ctx, tt.person, in)
				require.ErrorIs(t, err, tt.want)
				assert.Contains(t, err.Error(), tt.msg)
				assert.Nil(t, r)
			})
		}
	}
	assert.Empty(t, env.List(ListFilter{}), "a refused request leaves nothing behind")
	assert.Empty(t, env.audit.kinds())
}

func TestSubmitNormalizesRepo(t *testing.T) {
	env := newTestService(t, nil)
	in := readReq(t)
	in.Repo = "/demo/app.git"
	r := env.submit(t, "alice", in)
	assert.Equal(t, "demo/app", r.Repo)
	assert.Equal(t, "git:read:demo/app:refs/heads/main", r.Grant)
}

func TestDryRunStoresNothing(t *testing.T) {
	env := newTestService(t, nil)
	for _, tt := range []struct {
		in    SubmitInput
		state State
		rule  string
	}{
		{readReq(t), StateApproved, "app-read"},
		{featureReq(t), StatePending, "feature-write"},
		{mainReq(t), StatePending, "main-write"},
	} {
		tt.in.DryRun = true
		r, err := env.Submit(ctx, "alice", tt.in)
		require.NoError(t, err)
		assert.Equal(t, tt.state, r.State)
		assert.Equal(t, tt.rule, r.Rule)
		assert.Empty(t, r.ID)
		assert.Empty(t, r.Certificate)
		assert.Zero(t, r.Serial)
	}
	assert.Empty(t, env.List(ListFilter{}))
	assert.Empty(t, env.audit.kinds())
	serial, err := env.fsm.State().counter(metaSerial)
	require.NoError(t, err)
	assert.Zero(t, serial, "a dry run takes no serial")
}

func TestMaxPendingPerUser(t *testing.T) {
	p := devPolicy(t).Config()
	p.MaxPendingPerUser = 2
	policy, err := NewPolicy(p)
	require.NoError(t, err)
	env := newTestService(t, policy)

	first := env.submit(t, "alice", featureReq(t))
	env.submit(t, "alice", mainReq(t))
	env.submit(t, "alice", readReq(t)) // approved at once: not pending
	env.submit(t, "bob", featureReq(t))

	for _, dry := range []bool{true, false} {
		in := featureReq(t)
		in.DryRun = dry
		_, err := env.Submit(ctx, "alice", in)
		require.ErrorIs(t, err, ErrTooManyPending)
		assert.Contains(t, err.Error(), "alice has 2 pending requests")
	}

	_, err = env.Cancel(ctx, "alice", first.ID)
	require.NoError(t, err)
	env.submit(t, "alice", featureReq(t))
}

// TestSubmitRefusesWhatTheVerifierRejects: a record the auditor's verifier
// would reject is refused up front, not written to the log where it would
// stop every later check.
func TestSubmitRefusesWhatTheVerifierRejects(t *testing.T) {
	key := freshKey(t)
	keyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	signed := audit.RequestStatement{Kind: "request", Requester: "alice", Repo: "demo/app", Ref: "refs/heads/feature/login",
		Access: "write", Reason: "fix login", PublicKey: keyLine}
	for name, tc := range map[string]struct {
		statement func(st audit.RequestStatement) audit.RequestStatement
		ttl       time.Duration
	}{
		"zero ttl signed, default applied": {func(st audit.RequestStatement) audit.RequestStatement { st.TTL = "0s"; return st }, 0},
		"longer ttl than signed":           {func(st audit.RequestStatement) audit.RequestStatement { st.TTL = "10m"; return st }, time.Hour},
		"other reason signed":              {func(st audit.RequestStatement) audit.RequestStatement { st.Reason = "other"; return st }, 0},
		"other repo signed":                {func(st audit.RequestStatement) audit.RequestStatement { st.Repo = "demo/other"; return st }, 0},
		"signed by someone else":           {func(st audit.RequestStatement) audit.RequestStatement { st.Requester = "bob"; return st }, 0},
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestService(t, nil)
			in := SubmitInput{Repo: "demo/app", Ref: "refs/heads/feature/login", Access: "write", Reason: "fix login",
				PublicKey: key, TTL: tc.ttl, Statement: string(tc.statement(signed).Message())}
			_, err := env.Submit(ctx, "alice", in)
			require.ErrorIs(t, err, ErrBadRequest)
			assert.Empty(t, env.audit.kinds(), "nothing recorded")
			assert.Empty(t, env.List(ListFilter{}))
		})
	}
	// The statement as signed goes through.
	env := newTestService(t, nil)
	_, err := env.Submit(ctx, "alice", SubmitInput{Repo: "demo/app", Ref: "refs/heads/feature/login", Access: "write",
		Reason: "fix login", PublicKey: key, Statement: string(signed.Message())})
	require.NoError(t, err)
}
