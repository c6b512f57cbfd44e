package approvals

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/jitssh/jitssh/audit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stateOf returns a node's requests as JSON, to compare replicas.
func stateOf(tb testing.TB, s *Service) string {
	tb.Helper()
	b, err := json.Marshal(s.List(ListFilter{}))
	require.NoError(tb, err)
	return string(b)
}

// TestClusterWritesOnEveryNode makes changes on every node of a cluster of
// three: each one reads its own write at once, and all end up with the
// same state and byte-identical audit logs.
func TestClusterWritesOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader(t)
	f := c.followers(leader)

	r, err := f[0].Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
	got, err := f[0].Get(r.ID)
	require.NoError(t, err, "a follower reads its own write")
	assert.Equal(t, StatePending, got.State)

	approved, err := f[1].Approve(ctx, "bob", r.ID, DecisionInput{Reason: "ok"})
	require.NoError(t, err)
	assert.NotEmpty(t, approved.Certificate, "the approving follower signs")
	assert.Equal(t, uint64(1), approved.Serial)

	auto, err := leader.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), auto.Serial)

	_, err = f[0].Approve(ctx, "carol", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrNotPending, "a refusal on the leader is the same error on a follower")

	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.Equal(t, string(logs[0]), string(logs[i]))
	}
	want := stateOf(t, leader.Service)
	for _, nd := range f {
		assert.Equal(t, want, stateOf(t, nd.Service), nd.id)
	}
}

// TestClusterPartition cuts the leader off from both followers: it can no
// longer commit, the two others elect a leader among themselves and go on,
// and once the links are back all three hold the same state and the same
// audit log, without what the cut-off leader could not commit.
func TestClusterPartition(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader(t)
	before, err := old.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)

	var rest []string
	for _, nd := range c.followers(old) {
		rest = append(rest, nd.addr)
	}
	c.net.partition([]string{old.addr}, rest)

	// The cut-off leader takes no write: not an approval, not a request.
	_, err = old.Approve(ctx, "bob", before.ID, DecisionInput{Reason: "from the minority"})
	require.Error(t, err)
	assert.True(t, errNoLeaderOr(err), "%v", err)
	_, err = old.Submit(ctx, "alice", readReq(t))
	require.Error(t, err)
	assert.True(t, errNoLeaderOr(err), "%v", err)

	// The majority elects a new leader and goes on, on either node.
	leader := c.leader(t, old)
	other := c.followers(leader)[0]
	if other == old {
		other = c.followers(leader)[1]
	}
	approved, err := other.Approve(ctx, "carol", before.ID, DecisionInput{Reason: "from the majority"})
	require.NoError(t, err)
	require.NotEmpty(t, approved.Certificate)
	after, err := leader.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)
	assert.Greater(t, after.Serial, approved.Serial)

	got, err := old.Get(before.ID)
	require.NoError(t, err)
	assert.Equal(t, StatePending, got.State, "the cut-off node reads its own, older state")

	c.net.heal()
	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.Equal(t, string(logs[0]), string(logs[i]), "audit log of node %d", i+1)
	}
	want := stateOf(t, leader.Service)
	for _, nd := range c.nodes {
		assert.Equal(t, want, stateOf(t, nd.Service), nd.id)
	}
	got, err = old.Get(before.ID)
	require.NoError(t, err)
	require.Len(t, got.Approvals, 1)
	assert.Equal(t, "carol", got.Approvals[0].By, "bob's approval on the minority never happened")
	assert.Len(t, old.List(ListFilter{}), 2, "the request submitted on the minority never happened")
	sum, err := audit.Verify(bytes.NewReader(logs[0]))
	require.NoError(t, err)
	assert.Positive(t, sum.Entries)
}
