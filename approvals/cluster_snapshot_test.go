package approvals

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// TestClusterSnapshotRestore saves a snapshot of one cluster, lets it issue
// more, and restores the snapshot into a fresh cluster: the fresh cluster
// holds the snapshot's requests, issues serials above every one the first
// cluster issued, even after the snapshot, and its audit logs go on from
// where they were, the same on every node, recording the restore.
func TestClusterSnapshotRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a := newTestCluster(t, 3, nil)
	aLeader := a.leader(t)
	var kept []*Request
	for range 3 {
		r, err := aLeader.Submit(ctx, "alice", readReq(t))
		require.NoError(t, err)
		kept = append(kept, r)
	}
	pending, err := aLeader.Submit(ctx, "alice", featureReq(t))
	require.NoError(t, err)
	a.converged(t)
	var snap bytes.Buffer
	saved, err := a.followers(aLeader)[0].SnapshotSave(ctx, &snap)
	require.NoError(t, err)
	assert.Equal(t, 4, saved.Requests)
	assert.Equal(t, kept[2].Serial, saved.LastSerial)

	// The first cluster goes on after the snapshot.
	var maxSerial uint64
	for range 2 {
		r, err := aLeader.Submit(ctx, "alice", readReq(t))
		require.NoError(t, err)
		maxSerial = max(maxSerial, r.Serial)
	}

	b := newTestCluster(t, 3, nil)
	bLeader := b.leader(t)
	own, err := bLeader.Submit(ctx, "bob", readReq(t))
	require.NoError(t, err)
	before := b.converged(t)[0]

	_, err = b.followers(bLeader)[0].SnapshotRestore(ctx, bytes.NewReader(snap.Bytes()[:snap.Len()/2]))
	require.ErrorIs(t, err, ErrBadRequest, "a cut snapshot is refused")
	info, err := b.followers(bLeader)[1].SnapshotRestore(ctx, bytes.NewReader(snap.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.Epoch)
	assert.Equal(t, uint64(1)<<serialEpochShift, info.LastSerial)

	logs := b.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	assert.True(t, bytes.HasPrefix(logs[0], before), "the audit log goes on; it is never rewound")
	assert.Contains(t, string(logs[0][len(before):]), `"kind":"restore"`)
	_, err = audit.Verify(bytes.NewReader(logs[0]))
	require.NoError(t, err)

	for _, nd := range b.nodes {
		for _, r := range kept {
			got, err := nd.Get(r.ID)
			require.NoError(t, err, nd.id)
			assert.Equal(t, r.Serial, got.Serial)
		}
		_, err = nd.Get(own.ID)
		require.ErrorIs(t, err, ErrNotFound, "%s: the state is the snapshot's", nd.id)
	}
	for _, nd := range b.nodes {
		r, err := nd.Submit(ctx, "alice", readReq(t))
		require.NoError(t, err, nd.id)
		assert.Greater(t, r.Serial, maxSerial, "%s: above every serial the first cluster issued", nd.id)
	}
	approved, err := bLeader.Approve(ctx, "bob", pending.ID, DecisionInput{Reason: "after the restore"})
	require.NoError(t, err)
	assert.Greater(t, approved.Serial, uint64(1)<<serialEpochShift)
	b.converged(t)
	for _, nd := range b.followers(bLeader) {
		assertSameState(t, bLeader.Service, nd.Service, nd.id)
	}
}
