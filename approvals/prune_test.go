package approvals

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca/krl"
)

// inState reports whether the request with that ID is still in the
// Service's state.
func inState(tb testing.TB, s *Service, id string) bool {
	tb.Helper()
	r, err := s.fsm.State().requestByID(nil, id)
	require.NoError(tb, err)
	return r != nil
}

// TestPruneDropsWhatEnded ends requests every way there is, moves the
// clock past the retention, and checks that exactly those that ended
// before the cutoff leave the state, the KRL still lists a revoked
// certificate until it expires, and serials, the KRL's version and the
// counts by state carry on as if nothing had left.
func TestPruneDropsWhatEnded(t *testing.T) {
	env := newTestService(t, nil)
	env.opts.Retention = time.Hour
	env.reopen(t)

	denied := env.submit(t, "alice", featureReq(t))
	_, err := env.Deny(ctx, "bob", denied.ID, DecisionInput{Reason: "no"})
	require.NoError(t, err)
	cancelled := env.submit(t, "alice", featureReq(t))
	_, err = env.Cancel(ctx, "alice", cancelled.ID)
	require.NoError(t, err)
	expired := env.submit(t, "alice", featureReq(t))
	issued := env.submit(t, "alice", readReq(t)) // valid for the rule's default hour
	long := readReq(t)
	long.TTL = 8 * time.Hour
	revoked := env.submit(t, "alice", long)
	_, err = env.Revoke(ctx, "bob", revoked.ID, 0, "key leaked")
	require.NoError(t, err)

	// Not yet: nothing ended more than the retention ago.
	n, err := env.Prune()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, env.audit.of(audit.KindPruned), "a prune that drops nothing records nothing")

	env.clock.Advance(time.Hour + time.Second)
	env.expireDue(memdb.NewWatchSet())
	got, err := env.Get(expired.ID)
	require.NoError(t, err)
	require.Equal(t, StateExpired, got.State)
	countsBefore, err := env.NewStateCounter().Counts()
	require.NoError(t, err)
	krlVersion := func() uint64 {
		data, err := env.KRL()
		require.NoError(t, err)
		k, err := krl.Parse(data)
		require.NoError(t, err)
		return k.Version
	}
	require.Equal(t, uint64(1), krlVersion())

	// Past the retention after the hour-long certificate expired: all
	// but the revoked certificate, still valid, which the KRL lists until
	// an hour after it expires.
	env.clock.Advance(time.Hour + time.Minute)
	pending := env.submit(t, "alice", featureReq(t))
	n, err = env.Prune()
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	for _, tc := range []struct {
		name string
		r    *Request
		in   bool
	}{
		{"denied", denied, false},
		{"cancelled", cancelled, false},
		{"expired", expired, false},
		{"issued and expired", issued, false},
		{"revoked, on the KRL", revoked, true},
		{"pending", pending, true},
	} {
		assert.Equal(t, tc.in, inState(t, env.Service, tc.r.ID), tc.name)
	}
	_, err = env.Get(denied.ID)
	require.ErrorIs(t, err, ErrNotFound, "without an archive, a pruned request is not found")
	data, err := env.KRL()
	require.NoError(t, err)
	k, err := krl.Parse(data)
	require.NoError(t, err)
	r, err := env.Get(revoked.ID)
	require.NoError(t, err)
	assert.True(t, r.Compacted, "revoked over an hour ago: kept compacted, and no archive to read its detail from")
	assert.Equal(t, revoked.Serial, r.Serial)
	assert.True(t, k.IsRevoked(parseCert(t, revoked)), "a revoked certificate inside its validity stays on the KRL")

	entries := env.audit.of(audit.KindPruned)
	require.Len(t, entries, 1)
	env.audit.mu.Lock()
	var d audit.PrunedData
	for _, line := range env.audit.lines {
		var e audit.Entry
		require.NoError(t, json.Unmarshal(line, &e))
		if e.Kind == audit.KindPruned {
			require.NoError(t, json.Unmarshal(e.Data, &d))
		}
	}
	env.audit.mu.Unlock()
	assert.Equal(t, 4, d.Requests)
	assert.Equal(t, map[string]int{"denied": 1, "cancelled": 1, "expired": 1, "approved": 1}, d.States)
	assert.Equal(t, 1, d.Certificates)
	assert.Equal(t, denied.ID, d.First)
	assert.Equal(t, issued.ID, d.Last)

	// Past the revoked certificate's expiry, the KRL's margin and the
	// retention, it leaves too; the KRL's version still counts it.
	env.clock.Advance(7*time.Hour + krlKeep)
	n, err = env.Prune()
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.False(t, inState(t, env.Service, revoked.ID))
	assert.Equal(t, uint64(1), krlVersion(), "the KRL's version only grows")

	// Serials continue from the counter, not from what is left.
	next := env.submit(t, "alice", readReq(t))
	assert.Equal(t, revoked.Serial+1, next.Serial)

	counts, err := env.NewStateCounter().Counts()
	require.NoError(t, err)
	for state, c := range countsBefore {
		want := c
		if state == StatePending {
			want++ // submitted since
		}
		if state == StateApproved {
			want++
		}
		assert.Equal(t, want, counts[state], "requests %s, pruned or not", state)
	}

	// A restart replays the same prunes.
	env.reopen(t)
	assert.False(t, inState(t, env.Service, denied.ID))
	assert.True(t, inState(t, env.Service, pending.ID))
	assert.Equal(t, uint64(1), krlVersion())
}

// TestPruneSnapshotKeepsTotals checks that a snapshot taken after a prune
// restores the state without the dropped requests and with what the state
// keeps of them.
func TestPruneSnapshotKeepsTotals(t *testing.T) {
	env := newTestService(t, nil)
	env.opts.Retention = time.Hour
	env.reopen(t)
	long := readReq(t)
	long.TTL = 2 * time.Hour
	r := env.submit(t, "alice", long)
	_, err := env.Revoke(ctx, "bob", r.ID, 0, "done")
	require.NoError(t, err)
	kept := env.submit(t, "alice", featureReq(t))
	_, err = env.Cancel(ctx, "alice", kept.ID)
	require.NoError(t, err)
	env.clock.Advance(2*time.Hour + krlKeep + time.Hour + time.Minute)
	n, err := env.Prune()
	require.NoError(t, err)
	require.Equal(t, 2, n)

	snap, err := env.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.(*fsmSnapshot).write(&buf))
	st, err := readSnapshot(&buf)
	require.NoError(t, err)
	p, err := st.pruned()
	require.NoError(t, err)
	want, err := env.fsm.State().pruned()
	require.NoError(t, err)
	assert.Equal(t, want, p)
	assert.Equal(t, 1, p.Revoked)
	assert.Equal(t, map[State]int{StateApproved: 1, StateCancelled: 1}, p.States)
	assert.Equal(t, kept.ID, p.LastID)
	reqs, err := st.all(nil, indexID)
	require.NoError(t, err)
	assert.Empty(t, reqs)

	// IDs continue after the newest one ever made, even when it is gone.
	var g idSource
	require.NoError(t, g.seed(st))
	id, err := g.next(t0) // a clock that went back
	require.NoError(t, err)
	assert.Greater(t, id, kept.ID)
}

// TestPruneCommandIsDeterministic applies one prune command to two state
// machines that hold the same state and checks they drop the same
// requests, write the same audit line and forget the same used tokens and
// keys, whatever their clocks say; and that a cutoff later than the
// command's own time is refused.
func TestPruneCommandIsDeterministic(t *testing.T) {
	build := func() *fsm {
		f, err := newFSM(nil, nil)
		require.NoError(t, err)
		return f
	}
	a, b := build(), build()
	var index uint64
	apply := func(mt msgType, cmd any, at time.Time) []*applyResult {
		index++
		data, err := encodeEnvelope(mt|msgAudited, cmd, "", at)
		require.NoError(t, err)
		var out []*applyResult
		for _, f := range []*fsm{a, b} {
			out = append(out, f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*applyResult))
		}
		return out
	}
	apply(msgAuditAnchor, auditAnchorCmd{Chain: audit.GenesisChain}, t0)
	var made []string
	ids := newIDSource()
	for i := range 5 {
		req := mockRequest("")
		id, err := ids.next(t0.Add(time.Duration(i) * time.Second))
		require.NoError(t, err)
		req.ID = id
		req.CreatedAt = t0.Add(time.Duration(i) * time.Second)
		req.UpdatedAt = req.CreatedAt
		req.State = StatePending
		req.ExpiresAt = req.CreatedAt.Add(time.Hour)
		if i%2 == 0 {
			req.Workload = &WorkloadIdentity{TokenID: "tok" + req.ID, UsableUntil: req.CreatedAt.Add(5 * time.Minute)}
		}
		for _, res := range apply(msgSubmit, submitCmd{Request: req}, req.CreatedAt) {
			require.NoError(t, res.err)
		}
		for _, res := range apply(msgCancel, cancelCmd{ID: req.ID, Decision: Decision{By: req.Requester, At: req.CreatedAt}}, req.CreatedAt) {
			require.NoError(t, res.err)
		}
		made = append(made, req.ID)
	}

	bad := apply(msgPrune, pruneCmd{Cutoff: t0.Add(time.Hour), At: t0}, t0)
	require.ErrorIs(t, bad[0].err, ErrBadRequest)

	// Cut between the third and fourth request; tokens and keys by At.
	at := t0.Add(3 * time.Hour)
	res := apply(msgPrune, pruneCmd{Cutoff: t0.Add(2*time.Second + time.Millisecond), At: at, Limit: 10}, at)
	for _, r := range res {
		require.NoError(t, r.err)
		assert.Equal(t, 3, r.pruned)
	}
	for _, f := range []*fsm{a, b} {
		for i, id := range made {
			r, err := f.State().requestByID(nil, id)
			require.NoError(t, err)
			assert.Equal(t, i >= 3, r != nil, "request %d", i)
		}
		tokens, err := allUsedTokens(f.State().db.Txn(false))
		require.NoError(t, err)
		assert.Empty(t, tokens, "tokens unusable for more than the margin are forgotten")
		ops, err := allOps(f.State().db.Txn(false))
		require.NoError(t, err)
		assert.Len(t, ops, 1, "only the prune's own key is left")
	}
	var sa, sb bytes.Buffer
	for f, w := range map[*fsm]*bytes.Buffer{a: &sa, b: &sb} {
		snap, err := f.Snapshot()
		require.NoError(t, err)
		require.NoError(t, snap.(*fsmSnapshot).write(w))
	}
	assert.Equal(t, sa.String(), sb.String(), "both replicas hold the same state")
	chainA, err := a.State().auditChain()
	require.NoError(t, err)
	chainB, err := b.State().auditChain()
	require.NoError(t, err)
	assert.Equal(t, chainA, chainB, "both wrote the same audit entries")
}

// TestPruneLooksPastLiveRequests checks that requests still live at the
// front of the state (the oldest, still pending here) do not hide the
// ended ones behind them from the leader's look for work nor from the
// prune itself.
func TestPruneLooksPastLiveRequests(t *testing.T) {
	st := testStateStore(t)
	ids := newIDSource()
	index := uint64(0)
	for i := range 6 {
		id, err := ids.next(t0)
		require.NoError(t, err)
		index++
		_, err = st.submitRequest(index, mockRequest(id), 0)
		require.NoError(t, err)
		if i == 5 {
			index++
			_, err = st.cancelRequest(index, id, Decision{By: "alice", At: t0})
			require.NoError(t, err)
		}
	}
	work, err := pruneWork(st, t0.Add(time.Minute), t0.Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, work, "the cancelled request behind five pending ones is found")
	got, err := prunable(st.db.Txn(false), t0.Add(time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, StateCancelled, got[0].State)
}
