package approvals

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// TestClusterPruneSameIndex prunes a cancelled request through a
// follower of three nodes on one fake clock: it leaves the state of every
// node, which all hold the same state after the same raft index and write
// the same state.pruned entry, while a request still pending stays.
func TestClusterPruneSameIndex(t *testing.T) {
	clock := newFakeClock()
	c := &testCluster{net: newMemNet(), authority: newCAKey(t), tls: testClusterTLS(t, 4), policy: devPolicy(t),
		timeout: clusterRaftTimeout, wait: clusterApplyWait,
		tweak: func(o *Options) {
			o.Now = clock.Now
			o.Retention = time.Hour
			o.pruneInterval = 1000 * time.Hour // only the test prunes
		}}
	c.authority.Now = clock.Now
	dir := t.TempDir()
	for i := range 3 {
		id := fmt.Sprintf("node%d", i+1)
		c.nodes = append(c.nodes, &testNode{id: id, addr: id + ":7000", dir: filepath.Join(dir, id)})
	}
	for i := range c.nodes {
		c.start(t, i)
	}
	c.awaitReady(t)
	leader := c.leader(t)
	f := c.followers(leader)

	gone, err := f[0].Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
	_, err = f[1].Cancel(ctx, "alice", gone.ID)
	require.NoError(t, err)
	clock.Advance(time.Hour + time.Minute)
	kept, err := leader.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
	c.converged(t)
	for _, nd := range c.nodes {
		require.True(t, inState(t, nd.Service, gone.ID), nd.id)
	}

	n, err := f[1].Prune()
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	assert.Equal(t, 1, bytes.Count(logs[0], []byte(`"kind":"state.pruned"`)))
	sum, err := audit.Verify(bytes.NewReader(logs[0]))
	require.NoError(t, err)
	assert.Positive(t, sum.Entries)

	var snaps []string
	for _, nd := range c.nodes {
		assert.False(t, inState(t, nd.Service, gone.ID), "%s still holds the pruned request", nd.id)
		assert.True(t, inState(t, nd.Service, kept.ID), nd.id)
		snap, err := nd.fsm.Snapshot()
		require.NoError(t, err)
		var buf bytes.Buffer
		require.NoError(t, snap.(*fsmSnapshot).write(&buf))
		snaps = append(snaps, buf.String())
	}
	for i := 1; i < len(snaps); i++ {
		assert.Equal(t, snaps[0], snaps[i], "state of node %d differs", i+1)
	}
	// The prune is the last change: every node made it at the same index,
	// which is the index the state records.
	var h snapshotHeader
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(snaps[0]))).Decode(&h))
	require.NotNil(t, h.Pruned)
	assert.Equal(t, 1, h.Pruned.Requests)
	for _, nd := range c.nodes {
		idx, err := nd.fsm.State().counter(metaIndex)
		require.NoError(t, err)
		assert.Equal(t, h.Index, idx, nd.id)
	}
}
