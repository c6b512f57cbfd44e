package approvals

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// checkMembership looks at the raft configuration dir holds before raft
// starts on it.
//
// A node on its own must be the whole of it: a data directory that was
// part of a cluster is refused without its cluster block, where it would
// wait forever for peers it no longer knows how to reach.
//
// A node with a cluster block whose directory holds a cluster of one under
// another name or address (the daemon ran on its own before, under the ID
// in its node-id file, on an in-memory transport) becomes that one member
// under its cluster name and address: that is how a single daemon grows
// into a cluster, keeping its state.
func checkMembership(conf *raft.Config, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport,
	self raft.Server, clustered bool, dir string, logger *slog.Logger) error {
	scratch, err := newFSM(nil, nil)
	if err != nil {
		return err
	}
	// GetConfiguration marks the config it is given as not to start; raft
	// starts with conf later.
	peek := *conf
	cfg, err := raft.GetConfiguration(&peek, scratch, store, store, snaps, trans)
	if err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := cfg.Servers
	if !clustered {
		if len(servers) == 1 && servers[0].ID == self.ID {
			return nil
		}
		return fmt.Errorf("raft state in %s belongs to a cluster of %d (%s): run this node with its cluster block", dir, len(servers), serverIDs(servers))
	}
	if len(servers) != 1 || servers[0] == self {
		return nil
	}
	only := servers[0]
	legacy, err := os.ReadFile(filepath.Join(dir, nodeIDName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raft node ID: %w", err)
	}
	if only.ID != self.ID && string(only.ID) != strings.TrimSpace(string(legacy)) {
		return fmt.Errorf("raft state in %s is node %s's, not %s's: keep node_id %s, or start from an empty data_dir", dir, only.ID, self.ID, only.ID)
	}
	logger.Warn("taking over a one-node raft configuration under this node's cluster name and address",
		"old_id", string(only.ID), "old_address", string(only.Address), "id", string(self.ID), "address", string(self.Address))
	scratch, err = newFSM(nil, nil)
	if err != nil {
		return err
	}
	recover := *conf
	if err := raft.RecoverCluster(&recover, scratch, store, store, snaps, trans, raft.Configuration{Servers: []raft.Server{self}}); err != nil {
		return fmt.Errorf("take over raft configuration: %w", err)
	}
	return nil
}

func serverIDs(servers []raft.Server) string {
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	return strings.Join(ids, ", ")
}

// observe starts following raft's leadership changes, for watchLeader.
func (n *raftNode) observe() {
	ch := make(chan raft.Observation, 16)
	n.obsStop, n.obsDone = make(chan struct{}), make(chan struct{})
	n.watchCh = make(chan struct{})
	n.obs = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.obs)
	go func() {
		defer close(n.obsDone)
		for {
			select {
			case <-ch:
				n.watchMu.Lock()
				close(n.watchCh)
				n.watchCh = make(chan struct{})
				n.watchMu.Unlock()
			case <-n.obsStop:
				return
			}
		}
	}()
}

// watchLeader returns a channel closed at the next change of leader or of
// this node's raft state.
func (n *raftNode) watchLeader() <-chan struct{} {
	n.watchMu.Lock()
	defer n.watchMu.Unlock()
	return n.watchCh
}

// isLeader reports whether this node leads.
func (n *raftNode) isLeader() bool { return n.raft.State() == raft.Leader }
