package approvals

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"go.etcd.io/bbolt"
)

// Files and directories under Options.DataDir.
const (
	raftDirName   = "raft"
	raftDBName    = "raft.db" // raft log and stable store (bbolt)
	nodeIDName    = "node-id"
	snapshotsKept = 2
)

// DefaultRaftTimeout is the raft heartbeat and election timeout when
// Options leave it unset. A node waits up to twice this before standing
// for election, so it bounds how long Open takes to become ready.
const DefaultRaftTimeout = 500 * time.Millisecond

// raftNode is raft with the stores it owns, closed together.
type raftNode struct {
	raft     *raft.Raft
	store    *raftboltdb.BoltStore
	trans    raft.WithClose
	existing bool   // dir held raft state when it was opened
	id, addr string // this node's raft ID and address

	// Leadership changes, for those who wait on them (see watchLeader).
	obs     *raft.Observer
	obsStop chan struct{}
	obsDone chan struct{}
	watchMu sync.Mutex
	watchCh chan struct{}
}

// raftPeer is how a node of a cluster takes part in raft: nil for a node
// on its own.
type raftPeer struct {
	id        string
	advertise string
	trans     raft.Transport // must also be a raft.WithClose
	// bootstrapAlone founds a cluster of this node alone when dir has no
	// raft state (bootstrap_expect 1 and nobody to join).
	bootstrapAlone bool
	tune           func(*raft.Config) // tests: shorter snapshot intervals
}

// openRaft starts raft on dir with f as its state machine.
//
// On its own (peer nil), the node bootstraps a cluster of itself when dir
// holds no raft state yet, and openRaft waits until it leads and f has
// applied every committed entry. In a cluster, raft starts with whatever
// configuration dir holds (or none, until the node is bootstrapped or
// joined; see formCluster) and openRaft does not wait for a leader.
//
// The log store fsyncs every append, and a command counts as committed
// only once it is on disk on a majority of nodes, so an applied command
// survives SIGKILL.
func openRaft(ctx context.Context, dir string, f raft.FSM, timeout time.Duration, logger *slog.Logger, peer *raftPeer) (*raftNode, error) {
	raftDir := filepath.Join(dir, raftDirName)
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	var id string
	var err error
	if peer == nil {
		if id, err = nodeID(dir); err != nil {
			return nil, err
		}
	} else {
		id = peer.id
	}
	logOut := &raftLog{logger: logger}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	conf.LogOutput = logOut
	conf.LogLevel = "WARN"
	conf.HeartbeatTimeout = timeout
	conf.ElectionTimeout = timeout
	conf.LeaderLeaseTimeout = timeout / 2
	conf.CommitTimeout = min(conf.CommitTimeout, timeout/4)
	if peer != nil {
		// Followers learn that an entry is committed from the leader's
		// next append, at the latest after this: it is the extra wait of
		// a write made on a follower.
		conf.CommitTimeout = min(conf.CommitTimeout, 10*time.Millisecond)
		// A removed node keeps running, out of the cluster, so that it can
		// be joined again without a restart.
		conf.ShutdownOnRemove = false
		if peer.tune != nil {
			peer.tune(conf)
		}
	}

	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(raftDir, raftDBName),
		// Fail rather than wait forever when another process has the
		// data dir open.
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("open raft log in %s: in use by another process", raftDir)
		}
		return nil, fmt.Errorf("open raft log in %s: %w", raftDir, err)
	}
	n := &raftNode{store: store, id: id}
	fail := func(err error) (*raftNode, error) {
		n.close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStore(raftDir, snapshotsKept, logOut)
	if err != nil {
		return fail(fmt.Errorf("open raft snapshots in %s: %w", raftDir, err))
	}
	var addr raft.ServerAddress
	var trans raft.Transport
	if peer == nil {
		var inmem *raft.InmemTransport
		addr, inmem = raft.NewInmemTransport(raft.ServerAddress(id))
		trans, n.trans = inmem, inmem
	} else {
		addr, trans = raft.ServerAddress(peer.advertise), peer.trans
		n.trans = peer.trans.(raft.WithClose)
	}

	n.addr = string(addr)
	n.existing, err = raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("open raft: %w", err))
	}
	self := raft.Server{Suffrage: raft.Voter, ID: conf.LocalID, Address: addr}
	switch {
	case !n.existing && (peer == nil || peer.bootstrapAlone):
		boot := raft.Configuration{Servers: []raft.Server{self}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, boot); err != nil {
			return fail(fmt.Errorf("bootstrap raft: %w", err))
		}
	case n.existing:
		if err := checkMembership(conf, store, snaps, trans, self, peer != nil, dir, logger); err != nil {
			return fail(err)
		}
	}
	n.raft, err = raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	n.observe()
	if peer != nil {
		return n, nil
	}
	if err := n.awaitLeader(ctx); err != nil {
		return fail(err)
	}
	// A barrier is applied after every entry before it, so once it returns
	// the state machine holds everything the log did.
	if err := n.raft.Barrier(0).Error(); err != nil {
		return fail(fmt.Errorf("raft barrier: %w", err))
	}
	return n, nil
}

func (n *raftNode) awaitLeader(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		return nil
	}
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			if isLeader {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("raft: no leader elected: %w", ctx.Err())
		}
	}
}

func (n *raftNode) close() error {
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
	}
	if n.obs != nil {
		n.raft.DeregisterObserver(n.obs)
		close(n.obsStop)
		<-n.obsDone
	}
	if n.trans != nil {
		n.trans.Close()
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft log: %w", err))
	}
	return errors.Join(errs...)
}

// nodeID returns this node's raft ID, made up and stored on first start:
// raft knows a node by its ID, so it must not change across restarts.
func nodeID(dir string) (string, error) {
	path := filepath.Join(dir, nodeIDName)
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if id == "" {
			return "", fmt.Errorf("raft node ID: %s is empty", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("raft node ID: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("raft node ID: %w", err)
	}
	id := "jitssh-" + hex.EncodeToString(b[:])
	if err := atomicfile.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("raft node ID: %w", err)
	}
	return id, nil
}

// raftLog passes raft's log lines to slog. hclog writes each line as
// "<time> [<LEVEL>]  raft: <message>"; slog has its own time and level.
type raftLog struct{ logger *slog.Logger }

func (w *raftLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if open := strings.IndexByte(line, '['); open >= 0 {
		if end := strings.IndexByte(line[open:], ']'); end > 0 {
			switch line[open+1 : open+end] {
			case "ERROR":
				level = slog.LevelError
			case "INFO":
				level = slog.LevelInfo
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			}
			line = strings.TrimSpace(line[open+end+1:])
		}
	}
	w.logger.Log(context.Background(), level, line, "component", "raft")
	return len(p), nil
}
