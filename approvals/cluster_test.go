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
	b, err := json.Marshal(s.listAny(ListFilter{}))
	require.NoError(tb, err)
	return string(b)
}

// assertSameState checks that two nodes hold the same requests, without
// printing them all when they do not.
func assertSameState(tb testing.TB, want, got *Service, name string) {
	tb.Helper()
	w, g := stateOf(tb, want), stateOf(tb, got)
	if w != g {
		tb.Errorf("%s: state differs: %d requests (%d bytes), want %d (%d bytes)", name,
			len(got.listAny(ListFilter{})), len(g), len(want.listAny(ListFilter{})), len(w))
	}
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
	assert.NotEmpty(t, approved.Certificate, "the approving follower answers with the certificate the leader signed")
	assert.Equal(t, uint64(1), approved.Serial)

	auto, err := leader.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), auto.Serial)

	_, err = f[0].Approve(ctx, "carol", r.ID, DecisionInput{})
	require.ErrorIs(t, err, ErrNotPending, "a refusal on the leader is the same error on a follower")

	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	for _, nd := range f {
		assertSameState(t, leader.Service, nd.Service, nd.id)
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
	// It would wait for a leader as long as any node; it never gets one.
	old.applyWait = 4 * clusterRaftTimeout

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
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	for _, nd := range c.nodes {
		assertSameState(t, leader.Service, nd.Service, nd.id)
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

// TestClusterPolicyReload changes the policy on one node: the cluster
// records it, and nodes still on the old file have their decisions refused
// until their file matches; one reloading a third file makes that the
// cluster's.
func TestClusterPolicyReload(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	withLimit := func(n int) *Policy {
		cfg := devPolicy(t).Config()
		cfg.MaxPendingPerUser = n
		p, err := NewPolicy(cfg)
		require.NoError(t, err)
		return p
	}
	p2, p3 := withLimit(7), withLimit(9)

	require.NoError(t, a.SetPolicy(p2))
	_, err := a.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err, "the node that reloaded decides under the new policy")
	c.converged(t)
	_, err = b.Submit(ctx, "alice", featureReq(t))
	require.ErrorIs(t, err, ErrPolicyChanged, "a node on the old file is refused")
	assert.Contains(t, b.Status().Problems, ErrPolicyChanged.Error())
	assert.False(t, b.Status().Healthy)

	reloads := func() int {
		return bytes.Count(c.converged(t)[0], []byte(`"kind":"policy.reload"`))
	}
	before := reloads()
	require.NoError(t, b.SetPolicy(withLimit(7)), "the file now matches")
	_, err = b.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
	assert.True(t, b.Status().Healthy, "%v", b.Status().Problems)
	assert.Equal(t, before, reloads(), "catching up with the cluster's policy records nothing")

	require.NoError(t, cc.SetPolicy(p3), "a reload anywhere makes its file the cluster's")
	c.converged(t)
	assert.Equal(t, before+1, reloads())
	for _, nd := range []*testNode{a, b} {
		_, err = nd.Submit(ctx, "alice", featureReq(t))
		require.ErrorIs(t, err, ErrPolicyChanged, nd.id)
	}
	_, err = cc.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
}
