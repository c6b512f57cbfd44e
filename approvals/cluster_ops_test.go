package approvals

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

// encodeFor encodes a command as the Service would, under its policy.
func encodeFor(tb testing.TB, env *testEnv, t msgType, cmd any) []byte {
	tb.Helper()
	data, err := encodeEnvelope(t|msgAudited, cmd, env.digestOf(env.Policy()), env.clock.Now())
	require.NoError(tb, err)
	return data
}

// TestSameCommandAppliedOnce applies the very same command bytes twice,
// as a node does when it cannot tell whether its first try was committed:
// the approval counts once, the certificate is stored once, and each has
// one audit entry.
func TestSameCommandAppliedOnce(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", mainReq(t))

	approve := encodeFor(t, env, msgApprove, approveCmd{ID: r.ID, Approval: Approval{
		By: "bob", At: env.clock.Now(), Reason: "ok", Groups: []string{"dev", "approvers"},
	}})
	first, err := env.applyBytes(approve)
	require.NoError(t, err)
	require.NoError(t, first.err)
	again, err := env.applyBytes(approve)
	require.NoError(t, err)
	require.NoError(t, again.err, "a repeat is not refused as a second approval by bob")
	assert.True(t, again.repeat)
	assert.Equal(t, first.index, again.index, "a repeat answers with the first application")
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Len(t, got.Approvals, 1, "bob counts once")
	assert.Equal(t, StatePending, got.State, "main needs a second approver")
	assert.Len(t, env.audit.of(AuditApprove), 1)

	// The second approval completes it; sign by hand and store twice.
	r = env.approve(t, "carol", r.ID)
	require.NotEmpty(t, r.Certificate)
	pending := env.submit(t, "alice", mainReq(t))
	env.approve(t, "bob", pending.ID)
	done, err := env.Approve(ctx, "carol", pending.ID, DecisionInput{})
	require.NoError(t, err)
	issues := len(env.audit.of(AuditIssue))

	// A request approved but not issued yet: store its certificate twice.
	third := env.submit(t, "alice", featureReq(t))
	_, err = env.applyBytes(encodeFor(t, env, msgApprove, approveCmd{ID: third.ID, Approval: Approval{
		By: "bob", At: env.clock.Now(), Groups: []string{"dev", "approvers"},
	}}))
	require.NoError(t, err)
	third, err = env.Get(third.ID)
	require.NoError(t, err)
	require.Equal(t, StateApproved, third.State)
	require.Empty(t, third.Certificate)
	last, err := env.fsm.State().counter(metaSerial)
	require.NoError(t, err)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(third.PublicKey))
	require.NoError(t, err)
	grant, err := principals.Parse(third.Grant)
	require.NoError(t, err)
	creq, err := certRequest(env.Policy(), third, key, grant)
	require.NoError(t, err)
	cert, err := env.ca.Sign(creq, nextSerial{last + 1})
	require.NoError(t, err)
	store := encodeFor(t, env, msgStoreCertificate, issuedCert{
		ID: third.ID, Serial: cert.Serial, Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		IssuedAt: env.clock.Now(), ValidAfter: time.Unix(int64(cert.ValidAfter), 0).UTC(), ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
	})
	for range 2 {
		res, err := env.applyBytes(store)
		require.NoError(t, err)
		require.NoError(t, res.err)
		assert.Equal(t, cert.Serial, res.request.Serial)
	}
	now, err := env.fsm.State().counter(metaSerial)
	require.NoError(t, err)
	assert.Equal(t, last+1, now, "one serial taken")
	assert.Len(t, env.audit.of(AuditIssue), issues+1, "one issue entry")
	assert.Greater(t, cert.Serial, done.Serial)
}

// TestAppliedKeysAge forgets a key an hour of command time after it was
// applied, the same way on every replica: a command sent again after that
// is applied as new.
func TestAppliedKeysAge(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", mainReq(t))
	approve := encodeFor(t, env, msgApprove, approveCmd{ID: r.ID, Approval: Approval{
		By: "bob", At: env.clock.Now(), Groups: []string{"dev", "approvers"},
	}})
	_, err := env.applyBytes(approve)
	require.NoError(t, err)

	env.clock.Advance(opsKeep - time.Minute)
	env.submit(t, "carol", readReq(t))
	res, err := env.applyBytes(approve)
	require.NoError(t, err)
	assert.True(t, res.repeat, "still remembered")

	env.clock.Advance(2 * time.Minute)
	env.submit(t, "carol", readReq(t))
	res, err = env.applyBytes(approve)
	require.NoError(t, err)
	assert.False(t, res.repeat, "forgotten")
	assert.ErrorIs(t, res.err, ErrAlreadyApproved, "applied as new, and refused on its merits")
}

// TestDecisionUnderAnotherPolicyRefused refuses a decision whose policy
// digest is not the one the state records, and nothing else.
func TestDecisionUnderAnotherPolicyRefused(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", mainReq(t))
	cmd := approveCmd{ID: r.ID, Approval: Approval{By: "bob", At: env.clock.Now(), Groups: []string{"dev", "approvers"}}}

	stale, err := encodeEnvelope(msgApprove|msgAudited, cmd, "sha256:0000", env.clock.Now())
	require.NoError(t, err)
	res, err := env.applyBytes(stale)
	require.NoError(t, err)
	require.ErrorIs(t, res.err, ErrPolicyChanged)
	assert.Contains(t, res.err.Error(), "reload it")
	got, err := env.Get(r.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Approvals)
	assert.Empty(t, env.audit.of(AuditApprove))

	res, err = env.applyBytes(encodeFor(t, env, msgApprove, cmd))
	require.NoError(t, err)
	require.NoError(t, res.err, "under the recorded policy")

	// Expiry decides nothing under the policy: its digest is not checked.
	env.clock.Advance(2 * time.Hour)
	exp, err := encodeEnvelope(msgExpire|msgAudited, expireCmd{ID: r.ID, At: env.clock.Now(), Reason: "late"}, "sha256:0000", env.clock.Now())
	require.NoError(t, err)
	res, err = env.applyBytes(exp)
	require.NoError(t, err)
	require.NoError(t, res.err)
	assert.Equal(t, StateExpired, res.request.State)
}

// TestSnapshotKeepsAppliedKeys takes a snapshot and restores it: the keys
// and the serial epoch survive, so a repeat after a restart is still one.
func TestSnapshotKeepsAppliedKeys(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", mainReq(t))
	approve := encodeFor(t, env, msgApprove, approveCmd{ID: r.ID, Approval: Approval{
		By: "bob", At: env.clock.Now(), Groups: []string{"dev", "approvers"},
	}})
	_, err := env.applyBytes(approve)
	require.NoError(t, err)

	var buf bytes.Buffer
	snap, err := env.fsm.Snapshot()
	require.NoError(t, err)
	require.NoError(t, snap.(*fsmSnapshot).write(&buf))
	st, applied, err := readSnapshotApplied(&buf)
	require.NoError(t, err)
	assert.Equal(t, env.fsm.appliedIndex(), applied)
	ops, err := allOps(st.db.Txn(false))
	require.NoError(t, err)
	live, err := allOps(env.fsm.State().db.Txn(false))
	require.NoError(t, err)
	assert.Equal(t, live, ops)

	require.NoError(t, env.node.raft.Snapshot().Error())
	env.reopen(t)
	res, err := env.applyBytes(approve)
	require.NoError(t, err)
	assert.True(t, res.repeat, "remembered across a snapshot and restart")
}
