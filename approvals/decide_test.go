package approvals

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
)

func TestApproveRefused(t *testing.T) {
	env := newTestService(t, nil)
	feature := env.submit(t, "alice", featureReq(t))
	bobs := env.submit(t, "bob", featureReq(t))
	main := env.submit(t, "alice", mainReq(t))
	env.approve(t, "bob", main.ID)

	tests := []struct {
		name   string
		person string
		id     string
		in     DecisionInput
		want   error
		msg    string
	}{
		{"unknown id", "bob", "req-01ARZ3NDEKTSV4RRFFQ69G5FAV", DecisionInput{}, ErrNotFound, "no request"},
		{"malformed id", "bob", "req-../../x", DecisionInput{}, ErrNotFound, "no request"},
		{"unknown person", "mallory", feature.ID, DecisionInput{}, ErrForbidden, "not a person"},
		{"own request", "alice", feature.ID, DecisionInput{}, ErrSelfApproval, "someone else must approve it"},
		{"own request as an approver", "bob", bobs.ID, DecisionInput{}, ErrSelfApproval, "bob requested"},
		{"not an approver", "auditor", feature.ID, DecisionInput{}, ErrNotApprover,
			"needs approval by 1 of approvers, and auditor is in none of these groups"},
		{"same approver twice", "bob", main.ID, DecisionInput{}, ErrAlreadyApproved, "one approver counts once"},
		{"longer ttl", "bob", feature.ID, DecisionInput{TTL: 2 * time.Hour}, ErrBadRequest, "may only shorten"},
		{"ttl below the rule's minimum", "bob", feature.ID, DecisionInput{TTL: time.Second}, ErrBadRequest, "below 5s"},
		{"control character", "bob", feature.ID, DecisionInput{Reason: "\x07"}, ErrBadRequest, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := env.Approve(ctx, tt.person, tt.id, tt.in)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.msg)
			assert.Nil(t, r)
		})
	}
	for _, id := range []string{feature.ID, bobs.ID} {
		r, err := env.Get(id)
		require.NoError(t, err)
		assert.Equal(t, StatePending, r.State)
		assert.Empty(t, r.Approvals)
	}
	r, err := env.Get(main.ID)
	require.NoError(t, err)
	assert.Len(t, r.Approvals, 1)
}

func TestApproveAfterEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, env *testEnv, id string)
		msg  string
	}{
		{"approved", func(t *testing.T, env *testEnv, id string) { env.approve(t, "carol", id) }, "was approved already"},
		{"denied", func(t *testing.T, env *testEnv, id string) {
			_, err := env.Deny(ctx, "carol", id, DecisionInput{Reason: "no"})
			require.NoError(t, err)
		}, "was denied by carol"},
		{"cancelled", func(t *testing.T, env *testEnv, id string) {
			_, err := env.Cancel(ctx, "alice", id)
			require.NoError(t, err)
		}, "was cancelled by alice"},
		{"expired", func(t *testing.T, env *testEnv, id string) {
			env.clock.Advance(time.Hour)
			env.expireDue(memdb.NewWatchSet())
		}, "expired at"},
		{"timed out, not yet marked expired", func(t *testing.T, env *testEnv, id string) {
			env.clock.Advance(time.Hour)
		}, "expired at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestService(t, nil)
			r := env.submit(t, "alice", featureReq(t))
			tt.end(t, env, r.ID)
			for _, person := range []string{"bob", "carol"} {
				_, err := env.Approve(ctx, person, r.ID, DecisionInput{})
				require.ErrorIs(t, err, ErrNotPending)
				assert.Contains(t, err.Error(), tt.msg)
				_, err = env.Deny(ctx, person, r.ID, DecisionInput{Reason: "late"})
				require.ErrorIs(t, err, ErrNotPending)
			}
			_, err := env.Cancel(ctx, "alice", r.ID)
			require.ErrorIs(t, err, ErrNotPending)
			got, err := env.Get(r.ID)
			require.NoError(t, err)
			assert.LessOrEqual(t, len(got.Approvals), 1)
		})
	}
}

func TestDeny(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))

	_, err := env.Deny(ctx, "bob", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrBadRequest, "a denial needs a reason")
	_, err = env.Deny(ctx, "alice", r.ID, DecisionInput{Reason: "never mind"})
	require.ErrorIs(t, err, ErrSelfApproval)
	assert.Contains(t, err.Error(), "cancel it instead")
	_, err = env.Deny(ctx, "auditor", r.ID, DecisionInput{Reason: "no"})
	require.ErrorIs(t, err, ErrNotApprover)

	d, err := env.Deny(ctx, "bob", r.ID, DecisionInput{Reason: "not now"})
	require.NoError(t, err)
	assert.Equal(t, StateDenied, d.State)
	assert.Equal(t, &Decision{By: "bob", At: t0, Reason: "not now"}, d.Decision)
	assert.Empty(t, d.Certificate)
	assert.Equal(t, []string{AuditRequest, AuditDeny}, env.audit.kinds())
}

func TestCancel(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Cancel(ctx, "bob", r.ID)
	require.ErrorIs(t, err, ErrForbidden)
	assert.Contains(t, err.Error(), "only alice")

	c, err := env.Cancel(ctx, "alice", r.ID)
	require.NoError(t, err)
	assert.Equal(t, StateCancelled, c.State)
	assert.Equal(t, "alice", c.Decision.By)

	auto := env.submit(t, "alice", readReq(t))
	_, err = env.Cancel(ctx, "alice", auto.ID)
	require.ErrorIs(t, err, ErrNotPending, "an approved request is released, not cancelled")
}

func TestTwoApproversNeeded(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", mainReq(t))
	assert.Equal(t, []Step{{Group: "approvers", Count: 2}}, r.Steps)
	r = env.approve(t, "bob", r.ID)
	assert.Equal(t, StatePending, r.State)
	assert.Empty(t, r.Certificate)
	r = env.approve(t, "carol", r.ID)
	assert.Equal(t, StateApproved, r.State)
	assert.NotEmpty(t, r.Certificate)
}

func TestApproverShortensTTL(t *testing.T) {
	env := newTestService(t, nil)
	in := mainReq(t)
	in.TTL = 2 * time.Hour
	r := env.submit(t, "alice", in)
	_, err := env.Approve(ctx, "bob", r.ID, DecisionInput{TTL: 3 * time.Hour})
	require.ErrorIs(t, err, ErrBadRequest)

	_, err = env.Approve(ctx, "bob", r.ID, DecisionInput{TTL: 30 * time.Minute})
	require.NoError(t, err)
	r, err = env.Approve(ctx, "carol", r.ID, DecisionInput{TTL: 90 * time.Minute})
	require.NoError(t, err)
	assert.Equal(t, Duration(2*time.Hour), r.TTL, "the request keeps what was asked for")
	assert.Equal(t, Duration(30*time.Minute), r.GrantedTTL(), "the shortest approval wins")
	assert.Equal(t, r.IssuedAt.Add(30*time.Minute), r.ValidBefore)
}

func TestValidityStartsAtIssue(t *testing.T) {
	env := newTestService(t, nil)
	in := featureReq(t)
	in.TTL = 10 * time.Minute
	r := env.submit(t, "alice", in)
	env.clock.Advance(45 * time.Minute)
	r = env.approve(t, "bob", r.ID)

	issued := t0.Add(45 * time.Minute)
	assert.Equal(t, issued, r.IssuedAt)
	assert.Equal(t, issued.Add(10*time.Minute), r.ValidBefore)
	assert.Equal(t, issued.Add(-ca.DefaultBackdate), r.ValidAfter)
	cert := parseCert(t, r)
	assert.Equal(t, uint64(issued.Add(10*time.Minute).Unix()), cert.ValidBefore)
	assert.Equal(t, CertActive, r.CertState(issued.Add(10*time.Minute-time.Second)))
	assert.Equal(t, CertExpired, r.CertState(issued.Add(10*time.Minute)))
}

func TestRevoke(t *testing.T) {
	env := newTestService(t, nil)
	byID := env.issued(t, "alice")
	bySerial := env.issued(t, "alice")
	live := env.issued(t, "alice")

	_, err := env.Revoke(ctx, "auditor", byID.ID, 0, "leak")
	require.ErrorIs(t, err, ErrForbidden)
	_, err = env.Revoke(ctx, "carol", byID.ID, 0, "")
	require.ErrorIs(t, err, ErrBadRequest, "a revocation needs a reason")
	_, err = env.Revoke(ctx, "carol", "", 999, "leak")
	require.ErrorIs(t, err, ErrNotFound)

	r, err := env.Revoke(ctx, "carol", byID.ID, 0, "leaked key")
	require.NoError(t, err)
	assert.Equal(t, &Decision{By: "carol", At: t0, Reason: "leaked key"}, r.Revoked)
	assert.Equal(t, CertRevoked, r.CertState(t0))
	assert.Equal(t, StateApproved, r.State, "revoking ends the certificate, not the request's history")

	r, err = env.Revoke(ctx, "bob", "", bySerial.Serial, "done early")
	require.NoError(t, err)
	assert.Equal(t, bySerial.ID, r.ID)

	_, err = env.Revoke(ctx, "bob", byID.ID, 0, "again")
	require.ErrorIs(t, err, ErrNotActive)
	assert.Contains(t, err.Error(), "revoked already, by carol")

	assert.Equal(t, []uint64{byID.Serial, bySerial.Serial}, env.RevokedSerials())
	data, err := env.KRL()
	require.NoError(t, err)
	list, err := krl.Parse(data)
	require.NoError(t, err)
	assert.True(t, list.IsRevoked(parseCert(t, byID)))
	assert.True(t, list.IsRevoked(parseCert(t, bySerial)))
	assert.False(t, list.IsRevoked(parseCert(t, live)))
	assert.Equal(t, uint64(2), list.Version)

	assert.Len(t, env.audit.of(AuditRevoke), 2)
	assert.Equal(t, byID.Serial, env.audit.of(AuditRevoke)[0].Data.Serial)

	// A certificate that has expired is past revoking.
	env.clock.Advance(2 * time.Hour)
	_, err = env.Revoke(ctx, "carol", live.ID, 0, "late")
	require.ErrorIs(t, err, ErrNotActive)
	assert.Contains(t, err.Error(), "expired")

	// Long-expired certificates leave the published KRL, which sshd parses
	// on every login; the revoked-serial record keeps them, and the KRL's
	// version keeps counting them.
	env.clock.Advance(krlKeep + time.Hour)
	data, err = env.KRL()
	require.NoError(t, err)
	list, err = krl.Parse(data)
	require.NoError(t, err)
	assert.False(t, list.IsRevoked(parseCert(t, byID)))
	assert.Equal(t, uint64(2), list.Version)
	assert.Equal(t, []uint64{byID.Serial, bySerial.Serial}, env.RevokedSerials())
}

func TestRevokeNotIssued(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))
	_, err := env.Revoke(ctx, "bob", r.ID, 0, "no")
	require.ErrorIs(t, err, ErrNotActive)
	assert.Contains(t, err.Error(), "never approved")
}

func TestRevokeAutoApproved(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", readReq(t))
	// Nobody approved it, so anyone who approves under some rule may.
	_, err := env.Revoke(ctx, "auditor", r.ID, 0, "no")
	require.ErrorIs(t, err, ErrForbidden)
	_, err = env.Revoke(ctx, "bob", r.ID, 0, "suspicious")
	require.NoError(t, err)
}

func TestRelease(t *testing.T) {
	env := newTestService(t, nil)
	r := env.issued(t, "alice")
	_, err := env.Release(ctx, "bob", r.ID)
	require.ErrorIs(t, err, ErrForbidden)

	got, err := env.Release(ctx, "alice", r.ID)
	require.NoError(t, err)
	assert.Equal(t, "alice", got.Revoked.By)
	assert.Equal(t, CertReleased, got.CertState(t0), "a release reads as one, not as a revocation by someone else")
	assert.Equal(t, []uint64{r.Serial}, env.RevokedSerials())
	require.Len(t, env.audit.of(AuditRelease), 1)
	assert.Equal(t, r.Serial, env.audit.of(AuditRelease)[0].Data.Serial)

	_, err = env.Release(ctx, "alice", r.ID)
	require.ErrorIs(t, err, ErrNotActive)

	// Revoke by the requester is a release too.
	r2 := env.issued(t, "alice")
	_, err = env.Revoke(ctx, "alice", "", r2.Serial, "")
	require.NoError(t, err)
	assert.Len(t, env.audit.of(AuditRelease), 2)
	assert.Empty(t, env.audit.of(AuditRevoke))
	got, err = env.Get(r2.ID)
	require.NoError(t, err)
	assert.Equal(t, CertReleased, got.CertState(t0))
}

func TestConcurrentApprovalsIssueOneCertificate(t *testing.T) {
	const approvers = 8
	yml := "people:\n  - {name: dev, groups: [dev], keys: [\"KEY(dev)\"]}\n"
	for i := range approvers {
		yml += fmt.Sprintf("  - {name: a%d, groups: [approvers], keys: [\"KEY(a%d)\"]}\n", i, i)
	}
	yml += `rules:
  - {name: any, groups: [dev], repos: ["*"], refs: ["*"], access: [write], approvals: [{group: approvers, count: 1}]}
`
	env := newTestService(t, policyFrom(t, yml))

	for round := range 5 {
		r := env.submit(t, "dev", SubmitInput{Repo: "x", Ref: "*", Access: "write", PublicKey: freshKey(t)})
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			certs   []string
			refused int
		)
		start := make(chan struct{})
		for i := range approvers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got, err := env.Approve(ctx, fmt.Sprintf("a%d", i), r.ID, DecisionInput{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					assert.ErrorIs(t, err, ErrNotPending)
					refused++
					return
				}
				certs = append(certs, got.Certificate)
			}()
		}
		close(start)
		wg.Wait()
		require.Len(t, certs, 1, "round %d", round)
		assert.NotEmpty(t, certs[0])
		assert.Equal(t, approvers-1, refused)

		got, err := env.Get(r.ID)
		require.NoError(t, err)
		assert.Equal(t, certs[0], got.Certificate)
		assert.Len(t, got.Approvals, 1)
		assert.Equal(t, uint64(round+1), got.Serial, "one serial per request")
	}
	assert.Len(t, env.audit.of(AuditIssue), 5)
}
