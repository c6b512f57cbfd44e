package approvals

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// chainLines makes n audit lines after from.
func chainLines(tb testing.TB, from audit.Chain, n int) ([][]byte, audit.Chain) {
	tb.Helper()
	var lines [][]byte
	pos := from
	for i := range n {
		next, line, err := pos.Next("request", "alice", t0.Add(time.Duration(i)*time.Second), audit.EndData{Subject: audit.Subject{ID: "x"}})
		require.NoError(tb, err)
		lines = append(lines, line)
		pos = next
	}
	return lines, pos
}

// TestJournalCatchesUp restores the journal's state past the end of its
// file: it fetches the missing lines, refuses any that do not chain to
// exactly the position the state records (and acknowledges nothing
// meanwhile), and appends them once a fetch checks.
func TestJournalCatchesUp(t *testing.T) {
	log, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{Journal: true})
	require.NoError(t, err)
	defer log.Close()
	j, err := newJournal(log, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	defer j.close()
	lines, target := chainLines(t, audit.GenesisChain, 3)

	tampered := [][]byte{lines[0], bytes.Replace(lines[1], []byte("alice"), []byte("mallory"), 1), lines[2]}
	short := lines[:2]
	var mu sync.Mutex
	answers := [][][]byte{tampered, short, nil, lines}
	calls := 0
	j.setFetch(func(ctx context.Context, from, to audit.Chain) ([][]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, audit.GenesisChain, from)
		assert.Equal(t, target, to)
		a := answers[min(calls, len(answers)-1)]
		calls++
		if a == nil {
			return nil, errors.New("peer unreachable")
		}
		return a, nil
	})

	j.restored(target, 10)
	// While no fetch checks, nothing at or after the restore is durable.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := j.await(actx, 10)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, ErrAudit)
		require.NoError(t, actx.Err(), "never caught up")
		head, herr := log.Head()
		require.NoError(t, herr)
		assert.Equal(t, audit.GenesisChain, head, "no line written before the whole range checks")
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	assert.Equal(t, 4, calls, "three bad answers, then a good one")
	mu.Unlock()
	head, err := log.Head()
	require.NoError(t, err)
	assert.Equal(t, target, head)
	assert.NoError(t, j.health())
}

// TestJournalWithoutPeersFailsClosed: a node on its own restored beyond
// its file cannot catch up, and says so.
func TestJournalWithoutPeersFailsClosed(t *testing.T) {
	log, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{Journal: true})
	require.NoError(t, err)
	defer log.Close()
	j, err := newJournal(log, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	defer j.close()
	_, target := chainLines(t, audit.GenesisChain, 2)
	j.restored(target, 5)
	err = j.await(ctx, 5)
	require.ErrorIs(t, err, ErrAudit)
	assert.ErrorContains(t, err, "entries 1 to 2 are missing")
}

// TestClusterNodeCatchesUpAfterSnapshot stops a node while the others go
// on long enough to compact their raft logs: on restart it is sent a
// snapshot, fetches the audit lines it missed from a peer, and ends with
// the same state and the same audit log as the others.
func TestClusterNodeCatchesUpAfterSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(conf *raft.Config) {
		conf.SnapshotThreshold = 8
		conf.TrailingLogs = 4
		conf.SnapshotInterval = 20 * time.Millisecond
	})
	leader := c.leader(t)
	away := c.followers(leader)[1]
	awayIdx := 2
	for i, nd := range c.nodes {
		if nd == away {
			awayIdx = i
		}
	}
	c.converged(t)
	lastSeen := away.node.raft.LastIndex()
	c.stop(awayIdx)

	other := c.followers(leader)[0]
	for i := range 12 {
		nd := leader
		if i%2 == 1 {
			nd = other
		}
		_, err := nd.Submit(ctx, "alice", readReq(t))
		require.NoError(t, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		first, err := leader.node.store.FirstIndex()
		require.NoError(t, err)
		if first > lastSeen+1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the leader never compacted its log")
		_, err = leader.Submit(ctx, "alice", readReq(t))
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond)
	}

	c.start(t, awayIdx)
	c.awaitReady(t)
	logs := c.converged(t)
	for i := 1; i < len(logs); i++ {
		assert.True(t, bytes.Equal(logs[0], logs[i]), "audit log of node %d differs", i+1)
	}
	sum, err := audit.Verify(bytes.NewReader(logs[0]))
	require.NoError(t, err)
	chain, err := away.fsm.State().auditChain()
	require.NoError(t, err)
	assert.Equal(t, chain.Seq, sum.Entries)
	assertSameState(t, leader.Service, away.Service, away.id)
	r, err := away.Submit(ctx, "alice", readReq(t))
	require.NoError(t, err, "and takes writes again")
	assert.NotEmpty(t, r.Certificate)
}
