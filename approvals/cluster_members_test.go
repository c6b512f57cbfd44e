package approvals

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// memberIDs returns the IDs of members, and of the leader among them.
func memberIDs(ms []Member) (ids []string, leader string) {
	for _, m := range ms {
		ids = append(ids, m.ID)
		if m.Leader {
			leader = m.ID
		}
	}
	return ids, leader
}

// awaitMembers waits until s lists exactly want as healthy voters.
func awaitMembers(tb testing.TB, s *Service, want ...string) []Member {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms, err := s.Members(ctx)
		require.NoError(tb, err)
		ids, leader := memberIDs(ms)
		healthy := leader != ""
		for _, m := range ms {
			healthy = healthy && m.Healthy && m.Voter
		}
		if healthy && assert.ObjectsAreEqual(want, ids) {
			return ms
		}
		if time.Now().After(deadline) {
			tb.Fatalf("members %v (leader %q, all healthy %v), want %v: %+v", ids, leader, healthy, want, ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterMembership lists, removes and joins members: a removed node
// is out of the configuration, one added by Join from any member is in,
// catches up, and takes writes.
func TestClusterMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader(t)
	f := c.followers(leader)
	ms := awaitMembers(t, f[0].Service, "node1", "node2", "node3")
	assert.True(t, leader.Leads(), "the leader posts webhooks")
	assert.False(t, f[0].Leads(), "a follower does not")
	for _, m := range ms {
		require.NotNil(t, m.Status, m.ID)
		assert.Equal(t, m.Leader, m.Status.Role == "leader", m.ID)
		assert.True(t, m.Status.Ready, m.ID)
	}
	r, err := leader.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)

	// Remove a follower, asking the other follower.
	gone := f[1]
	require.NoError(t, f[0].Remove(ctx, gone.id))
	var rest []string
	for _, nd := range c.nodes {
		if nd != gone {
			rest = append(rest, nd.id)
		}
	}
	awaitMembers(t, leader.Service, rest...)
	require.ErrorIs(t, f[0].Remove(ctx, "node9"), ErrNotFound)

	// A new node that founds nothing waits; Join on a follower adds it.
	added := c.addNode(t, nil)
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, f[0].Join(jctx, added.addr))
	c.awaitReady(t)
	awaitMembers(t, added.Service, append(rest, added.id)...)
	got, err := added.Get(r.ID)
	require.NoError(t, err, "the new member holds what was there before it")
	assert.Equal(t, r.Serial, got.Serial)
	_, err = added.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err)
	require.NoError(t, f[0].Join(jctx, added.addr), "joining a member again changes nothing")
}

// TestGrowFromOneNode adds a cluster block to a daemon that ran on its
// own: it keeps its state as a cluster of one under its cluster name, and
// its data directory is then refused without the block.
func TestGrowFromOneNode(t *testing.T) {
	dir := t.TempDir()
	authority := newCAKey(t)
	log, err := audit.Open(filepath.Join(dir, "audit.log"), audit.Options{Journal: true})
	require.NoError(t, err)
	defer log.Close()
	opts := Options{
		DataDir: filepath.Join(dir, "data"), Policy: devPolicy(t), Authority: authority,
		Logger: slog.New(slog.DiscardHandler), Audit: log, RaftTimeout: clusterRaftTimeout,
	}
	alone, err := Open(opts)
	require.NoError(t, err)
	before, err := alone.Submit(ctx, actorOf(alone.Policy(), "alice"), readReq(t))
	require.NoError(t, err)
	require.NoError(t, alone.Close())

	id := testClusterTLS(t, 1)[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	clustered := opts
	clustered.Cluster = &ClusterOptions{NodeID: "node1", Advertise: ln.Addr().String(), BootstrapExpect: 1, Listener: ln, TLS: id}
	s, err := Open(clustered)
	require.NoError(t, err)
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not ready: %+v", s.Status())
	}
	got, err := s.getAny(before.ID)
	require.NoError(t, err, "the state is kept")
	assert.Equal(t, before.Serial, got.Serial)
	after, err := s.Submit(ctx, actorOf(s.Policy(), "alice"), readReq(t))
	require.NoError(t, err)
	assert.Equal(t, before.Serial+1, after.Serial)
	ms := awaitMembers(t, s, "node1")
	assert.Equal(t, ln.Addr().String(), ms[0].Address)
	require.NoError(t, s.Close())

	_, err = Open(opts)
	require.ErrorContains(t, err, "belongs to a cluster", "a cluster's data dir without its block")
	data, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	_, err = audit.Verify(bytes.NewReader(data))
	require.NoError(t, err)
}

// TestClusterRemoveLeaderAndRejoin removes the leader itself: the two
// others elect a leader and go on; the removed node keeps running and is
// joined back without a restart, catching up on what it missed.
func TestClusterRemoveLeaderAndRejoin(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader(t)
	f := c.followers(old)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, f[0].Remove(rctx, old.id))
	leader := c.leader(t, old)
	awaitMembers(t, leader.Service, f[0].id, f[1].id)
	missed, err := f[1].Submit(ctx, "alice", readReq(t))
	require.NoError(t, err, "the two others go on")

	require.NoError(t, f[1].Join(rctx, old.addr))
	ids := []string{f[0].id, f[1].id, old.id}
	awaitMembers(t, old.Service, ids...)
	c.converged(t)
	got, err := old.Get(missed.ID)
	require.NoError(t, err)
	assert.Equal(t, missed.Serial, got.Serial)
}
