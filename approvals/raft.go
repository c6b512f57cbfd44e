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
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
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
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.InmemTransport
}

// openRaft starts raft on dir with f as its state machine, bootstrapping a
// new cluster of this one node when dir holds no raft state yet, and waits
// until this node leads and f has applied every committed entry.
//
// The log store fsyncs every append, and a command counts as committed
// only once it is on disk on a majority of nodes, so an applied command
// survives SIGKILL. Growing to a cluster means a network transport and
// joining peers here; nothing else depends on how many nodes there are.
func openRaft(ctx context.Context, dir string, f raft.FSM, timeout time.Duration, logger *slog.Logger) (*raftNode, error) {
	raftDir := filepath.Join(dir, raftDirName)
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	id, err := nodeID(dir)
	if err != nil {
		return nil, err
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
	n := &raftNode{store: store}
	fail := func(err error) (*raftNode, error) {
		n.close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStore(raftDir, snapshotsKept, logOut)
	if err != nil {
		return fail(fmt.Errorf("open raft snapshots in %s: %w", raftDir, err))
	}
	var addr raft.ServerAddress
	addr, n.trans = raft.NewInmemTransport(raft.ServerAddress(id))

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("open raft: %w", err))
	}
	if !existing {
		boot := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(conf, store, store, snaps, n.trans, boot); err != nil {
			return fail(fmt.Errorf("bootstrap raft: %w", err))
		}
	}
	n.raft, err = raft.NewRaft(conf, f, store, store, snaps, n.trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
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
	if err := writeFileSync(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("raft node ID: %w", err)
	}
	return id, nil
}

// writeFileSync writes a new file and syncs it and its directory, so the
// file exists after a crash exactly when raft state written after it does.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
