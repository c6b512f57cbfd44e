package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpiry(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))
	later := env.submit(t, "alice", featureReq(t))
	env.clock.Advance(time.Hour - time.Second)
	env.expireDue(memdb.NewWatchSet())
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State, "not due yet")

	env.clock.Advance(time.Second)
	next := env.expireDue(memdb.NewWatchSet())
	assert.True(t, next.IsZero(), "nothing else pending")
	for _, id := range []string{r.ID, later.ID} {
		got, err := env.Get(id)
		require.NoError(t, err)
		assert.Equal(t, StateExpired, got.State)
		assert.Equal(t, SystemActor, got.Decision.By)
		assert.Equal(t, got.ExpiresAt, got.Decision.At)
		assert.Contains(t, got.Decision.Reason, "nobody decided within 1h0m0s")
	}
	assert.Len(t, env.audit.of(AuditExpire), 2)
	assert.Len(t, env.List(ListFilter{States: []State{StateExpired}}), 2, "expired requests stay")
}

func TestExpiryLoop(t *testing.T) {
	c := devPolicy(t).Config()
	c.RequestTimeout = Duration(200 * time.Millisecond)
	p, err := NewPolicy(c)
	require.NoError(t, err)
	env := newTestService(t, p)
	env.opts.Now = time.Now // the loop sleeps on the real clock
	env.opts.Authority.Now = time.Now
	env.opts.noBackground = false
	env.reopen(t)

	r := env.submit(t, "alice", featureReq(t))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := env.Wait(wctx, r.ID, r.Version)
	require.NoError(t, err)
	assert.Equal(t, StateExpired, got.State)
}

func TestSetPolicyOffboards(t *testing.T) {
	env := newTestService(t, nil)
	pending := env.submit(t, "alice", featureReq(t))
	live := env.issued(t, "alice")
	released := env.issued(t, "alice")
	_, err := env.Release(ctx, "alice", released.ID)
	require.NoError(t, err)
	bobs := env.issued(t, "bob")
	carols := env.submit(t, "carol", featureReq(t))

	// alice leaves; bob swaps his key for a new one; carol stays as she is.
	c := devPolicy(t).Config()
	c.People = c.People[1:]
	c.People[0].Keys = []string{keyLine(t, "bob-new")}
	c.Rules[1].Approvals = []Step{{Group: "approvers", Count: 2}}
	p, err := NewPolicy(c)
	require.NoError(t, err)
	env.clock.Advance(time.Minute)
	var logged bytes.Buffer
	env.Service.logger = slog.New(slog.NewJSONHandler(&logged, nil))
	require.NoError(t, env.SetPolicy(p))
	assert.Same(t, p, env.Policy())

	// The operator is told, person by person, what the change ended.
	said := map[string]map[string]any{}
	for _, line := range bytes.Split(bytes.TrimSpace(logged.Bytes()), []byte("\n")) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(line, &rec))
		if rec["event"] == "offboard" {
			said[rec["person"].(string)] = rec
		}
	}
	require.Len(t, said, 2, "alice and bob are offboarded, carol is not: %s", logged.String())
	assert.Equal(t, "removed from the policy", said["alice"]["reason"])
	assert.Equal(t, []any{pending.ID}, said["alice"]["cancelled"])
	assert.Equal(t, []any{fmt.Sprintf("%s (serial %d)", live.ID, live.Serial)}, said["alice"]["revoked"])
	assert.Contains(t, said["bob"]["reason"], "removed from the policy")
	assert.Equal(t, []any{fmt.Sprintf("%s (serial %d)", bobs.ID, bobs.Serial)}, said["bob"]["revoked"])

	got, err := env.Get(pending.ID)
	require.NoError(t, err)
	assert.Equal(t, StateCancelled, got.State)
	assert.Equal(t, "offboarded: removed from the policy", got.Decision.Reason)
	for _, id := range []string{live.ID, bobs.ID} {
		got, err = env.Get(id)
		require.NoError(t, err)
		assert.Equal(t, CertRevoked, got.CertState(env.clock.Now()), id)
		assert.Equal(t, SystemActor, got.Revoked.By)
	}
	assert.Contains(t, got.Revoked.Reason, "removed from the policy")
	got, err = env.Get(released.ID)
	require.NoError(t, err)
	assert.Equal(t, "alice", got.Revoked.By, "an ended grant keeps how it ended")

	got, err = env.Get(carols.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State)
	assert.Equal(t, []Step{{Group: "approvers", Count: 1}}, got.Steps, "a request keeps the steps it was made under")

	assert.ElementsMatch(t, []uint64{live.Serial, released.Serial, bobs.Serial}, env.RevokedSerials())
	assert.Len(t, env.audit.of(AuditOffboard), 3)
	reload := env.audit.of(AuditPolicyReload)
	require.Len(t, reload, 1)
	assert.Equal(t, 2, len(reload[0].Data.Offboarded))

	_, err = env.Submit(ctx, "alice", featureReq(t))
	require.ErrorIs(t, err, ErrForbidden, "a removed person can do nothing")
}

func TestReopenKeepsEverything(t *testing.T) {
	env := newTestService(t, nil)
	pending := env.submit(t, "alice", featureReq(t))
	issued := env.issued(t, "alice")
	denied := env.submit(t, "alice", mainReq(t))
	_, err := env.Deny(ctx, "bob", denied.ID, DecisionInput{Reason: "no"})
	require.NoError(t, err)
	revoked := env.issued(t, "alice")
	_, err = env.Revoke(ctx, "bob", revoked.ID, 0, "done")
	require.NoError(t, err)
	before := env.List(ListFilter{})

	// Once from the log alone, once from a snapshot plus the log after it.
	env.reopen(t)
	assert.Equal(t, before, env.List(ListFilter{}))
	require.NoError(t, env.node.raft.Snapshot().Error())
	after := env.submit(t, "alice", readReq(t))
	env.reopen(t)
	assert.Equal(t, append([]*Request{after}, before...), env.List(ListFilter{}))
	assert.Equal(t, []uint64{revoked.Serial}, env.RevokedSerials())
	assert.Equal(t, issued.Serial+2, after.Serial)

	next := env.submit(t, "alice", readReq(t))
	assert.Equal(t, after.Serial+1, next.Serial, "serials continue, never reused")
	env.approve(t, "bob", pending.ID)
}

// waitDurable waits until the Service's audit entries are all written, as
// the journal's own retry does once the log takes writes again.
func waitDurable(t *testing.T, env *testEnv) {
	t.Helper()
	for env.journal.behind() {
		_, ch := env.journal.durableAt(^uint64(0))
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("audit entries still held after 10s")
		}
	}
}

func TestIssueHeldUntilItsEntryIsDurable(t *testing.T) {
	env := newTestService(t, nil)
	env.audit.setFail(AuditIssue)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrIssue)
	require.ErrorIs(t, err, ErrAudit)

	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, StateApproved, got.State, "the approval stands")
	assert.Empty(t, got.Certificate, "no certificate leaves without its audit entry")
	assert.Zero(t, got.Serial)
	assert.True(t, got.Issuing())
	assert.Empty(t, env.audit.of(AuditIssue))

	// Once the log takes writes again, the held entry is written and the
	// certificate, signed once, leaves with the serial on record.
	env.audit.setFail("")
	waitDurable(t, env)
	got, err = env.Get(r.ID)
	require.NoError(t, err)
	require.NotEmpty(t, got.Certificate)
	assert.Equal(t, uint64(1), got.Serial)
	assert.Equal(t, uint64(1), parseCert(t, got).Serial)
	issues := env.audit.of(AuditIssue)
	require.Len(t, issues, 1)
	assert.Equal(t, uint64(1), issues[0].Data.Serial)
}

func TestHeldEntriesWrittenAfterRestart(t *testing.T) {
	env := newTestService(t, nil)
	env.audit.setFail(AuditIssue)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrAudit)

	// The daemon stops with the entry held; the raft log has the command,
	// so the next start writes it, once.
	require.NoError(t, env.Close())
	env.audit.setFail("")
	env.open(t)
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), parseCert(t, got).Serial)
	assert.Equal(t, []string{AuditRequest, AuditApprove, AuditIssue}, env.audit.kinds())
}

func TestApprovalNotOnTheLogIssuesNothing(t *testing.T) {
	env := newTestService(t, nil)
	env.audit.setFail(AuditApprove)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrAudit)

	// However often the issuer tries, it signs nothing while the approval
	// is not on the log.
	env.mu.Lock()
	env.retry[r.ID] = retryState{next: time.Now().Add(-time.Second), delay: retryFirst}
	env.mu.Unlock()
	env.issueUnissued(true)
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Certificate)
	last, err := env.fsm.State().counter(metaSerial)
	require.NoError(t, err)
	assert.Zero(t, last, "no serial taken")

	// A revocation before it is written stops the certificate for good.
	env.audit.setFail("")
	_, err = env.Revoke(ctx, "carol", r.ID, 0, "changed my mind")
	require.NoError(t, err)
	env.reopen(t)
	got, err = env.Get(r.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Certificate)
	assert.Empty(t, env.RevokedSerials(), "no certificate, nothing to list")
	assert.Equal(t, []string{AuditRequest, AuditApprove, AuditRevoke}, env.audit.kinds())
}

func TestOpenRefusesMissingOptions(t *testing.T) {
	p := devPolicy(t)
	a := newCAKey(t)
	for _, o := range []Options{
		{Policy: p, Authority: a},
		{DataDir: t.TempDir(), Authority: a},
		{DataDir: t.TempDir(), Policy: p},
	} {
		_, err := Open(o)
		require.Error(t, err)
	}
}

func TestOpenRefusesDataDirInUse(t *testing.T) {
	env := newTestService(t, nil)
	_, err := Open(env.opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use")
}

func TestIssueRetriedInBackground(t *testing.T) {
	env := newTestService(t, nil)
	env.audit.setFail(AuditApprove)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{})
	require.Error(t, err)

	env.mu.Lock()
	_, scheduled := env.retry[r.ID]
	env.mu.Unlock()
	require.True(t, scheduled, "a failed issue is retried")

	env.audit.setFail("")
	waitDurable(t, env)
	env.issueUnissued(false)
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Certificate, "not before the retry is due")

	env.mu.Lock()
	env.retry[r.ID] = retryState{next: time.Now().Add(-time.Second), delay: retryFirst}
	env.mu.Unlock()
	env.issueUnissued(false)
	got, err = env.Get(r.ID)
	require.NoError(t, err)
	assert.NotEmpty(t, got.Certificate)
	env.mu.Lock()
	assert.Empty(t, env.retry)
	env.mu.Unlock()
}

// TestRequestTTL: a requester may give a request less time to wait than
// the daemon's request_timeout, never more, and it expires at its own end.
func TestRequestTTL(t *testing.T) {
	env := newTestService(t, nil)
	in := featureReq(t)
	in.RequestTTL = 10 * time.Minute
	short := env.submit(t, "alice", in)
	assert.Equal(t, t0.Add(10*time.Minute), short.ExpiresAt)
	long := env.submit(t, "alice", featureReq(t))

	env.clock.Advance(10 * time.Minute)
	next := env.expireDue(memdb.NewWatchSet())
	assert.Equal(t, t0.Add(time.Hour), next, "the other request waits its full hour")
	got, err := env.Get(short.ID)
	require.NoError(t, err)
	assert.Equal(t, StateExpired, got.State)
	assert.Contains(t, got.Decision.Reason, "nobody decided within 10m0s")
	got, err = env.Get(long.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State)

	for _, bad := range []time.Duration{time.Hour + time.Second, -time.Second} {
		in := featureReq(t)
		in.RequestTTL = bad
		_, err := env.Service.Submit(ctx, env.as("alice"), in)
		require.ErrorIs(t, err, ErrBadRequest, "request ttl %v", bad)
	}
}
