package approvals

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"

	"github.com/jitssh/jitssh/audit"
)

// An operator's snapshot is the state machine's snapshot (see
// fsmSnapshot.write): a header line and every request, applied key and
// used CI/CD token, as JSON. Restoring one replaces the cluster's state with it, except for two
// things the running cluster keeps:
//
//   - its audit chain position, so each node's audit log goes on from
//     where it is and is never rewound; a "restore" entry names the
//     position the snapshot came from;
//   - its policy record: the policy is the nodes' files, not data.
//
// And it moves the serials into a new epoch (see serialEpochShift): the
// cluster the snapshot was taken from may have issued certificates after
// taking it, and their serials must never be issued again.

// SnapshotInfo describes a snapshot saved or restored.
type SnapshotInfo struct {
	Index      uint64      `json:"index"` // the raft index the state was at
	Requests   int         `json:"requests"`
	LastSerial uint64      `json:"last_serial"`
	Epoch      uint64      `json:"epoch"`
	Audit      audit.Chain `json:"audit"` // the audit chain position the state was at
}

func (h snapshotHeader) info() SnapshotInfo {
	i := SnapshotInfo{Index: h.Index, Requests: h.Requests, LastSerial: h.LastSerial, Epoch: h.Epoch}
	if h.Audit != nil {
		i.Audit = *h.Audit
	}
	return i
}

// SnapshotSave writes a snapshot of the state to w. On a follower it first
// catches up with what the leader has committed, so the snapshot is as new
// as the cluster's state when SnapshotSave was called.
func (s *Service) SnapshotSave(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	if s.cluster != nil {
		if err := s.syncWithLeader(ctx); err != nil {
			return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
		}
	} else if err := s.node.raft.Barrier(applyTimeout).Error(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: raft barrier: %w", err)
	}
	var buf bytes.Buffer
	snap := &fsmSnapshot{db: s.fsm.State().db.Snapshot()}
	if err := snap.write(&buf); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	h, err := readSnapshotHeader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: write: %w", err)
	}
	return h.info(), nil
}

func readSnapshotHeader(r io.Reader) (snapshotHeader, error) {
	var h snapshotHeader
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		return h, fmt.Errorf("snapshot header: %w", err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("snapshot header: %w", err)
	}
	return h, nil
}

// SnapshotRestore replaces the cluster's state with the snapshot read from
// r; see the comment above SnapshotInfo for what the cluster keeps. The
// leader does it, wherever it is called. A snapshot that does not read
// back whole is refused before anything changes.
func (s *Service) SnapshotRestore(ctx context.Context, r io.Reader) (SnapshotInfo, error) {
	f, err := os.CreateTemp(s.dataDir, "restore-*.snap")
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: read snapshot: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	restored, err := readSnapshot(f)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: restore: not a whole snapshot: %w", ErrBadRequest, err)
	}
	var info SnapshotInfo
	err = s.retryOnLeader(ctx, func(ctx context.Context) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if s.cluster == nil || s.node.isLeader() {
			var err error
			info, err = s.restoreHere(ctx, f, size, restored)
			return err
		}
		addr, err := s.leaderAddr()
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		return s.cluster.rpc.stream(ctx, addr, rpcRestoreOnLeader, nil, f, nil, &info)
	})
	return info, err
}

// restoreHere restores the snapshot in f on this node, the leader.
func (s *Service) restoreHere(ctx context.Context, f *os.File, size int64, restored *stateStore) (SnapshotInfo, error) {
	br := bufio.NewReader(f)
	headerLine, err := br.ReadBytes('\n')
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	var h snapshotHeader
	if err := json.Unmarshal(headerLine, &h); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	// Hold every other command off: the position read below must be the
	// state's when it is replaced.
	s.applyGate.Lock()
	defer s.applyGate.Unlock()
	if !s.node.isLeader() {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", s.notLeader())
	}
	if err := s.node.raft.Barrier(applyTimeout).Error(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: raft barrier: %w", err)
	}
	if err := s.journal.await(ctx, s.fsm.appliedIndex()); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: %w", err)
	}
	cur := s.fsm.State().db.Txn(false)
	chain, err := auditChainTxn(cur)
	if err != nil {
		return SnapshotInfo{}, err
	}
	policy, err := textTxn(cur, metaPolicy)
	if err != nil {
		return SnapshotInfo{}, err
	}
	from := h.info()
	if !chain.IsZero() {
		h.Audit = &chain
	}
	h.Policy = policy
	// The format stays the snapshot's: the lines after the header are
	// passed on as they are.
	newHeader, err := json.Marshal(h)
	if err != nil {
		return SnapshotInfo{}, err
	}
	newHeader = append(newHeader, '\n')
	rest := size - int64(len(headerLine))
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: h.Index, Size: int64(len(newHeader)) + rest}
	body := io.MultiReader(bytes.NewReader(newHeader), io.LimitReader(br, rest))
	if err := s.node.raft.Restore(meta, body, applyTimeout); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: raft: %w", err)
	}
	s.logger.Warn("state restored from a snapshot", "index", from.Index, "requests", from.Requests, "audit_seq", from.Audit.Seq)

	now := s.clock()
	gone, err := goneFrom(restored, s.Policy(), now)
	if err != nil {
		return SnapshotInfo{}, err
	}
	cmd := restoreCmd{From: from.Audit, Index: from.Index, Requests: from.Requests, At: now}
	if len(gone) > 0 {
		cmd.Offboard = gone
	}
	data, err := encodeEnvelope(msgRestore, cmd, "", now)
	if err != nil {
		return SnapshotInfo{}, err
	}
	res, err := s.raftApply(ctx, data)
	if err == nil {
		err = res.err
	}
	if err == nil {
		err = s.journal.await(ctx, res.index)
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore: record the restore: %w", err)
	}
	if err := s.ids.seed(s.fsm.State()); err != nil {
		return SnapshotInfo{}, err
	}
	st := s.fsm.State()
	info := from
	info.LastSerial, _ = st.counter(metaSerial)
	info.Epoch, _ = st.counter(metaEpoch)
	info.Audit, _ = st.auditChain()
	return info, nil
}

// serveSnapshotSave streams a snapshot to an operator: a response frame,
// the snapshot as chunks, and a trailer frame with its SnapshotInfo.
func (s *Service) serveSnapshotSave(_ *bufio.Reader, bw *bufio.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	var buf bytes.Buffer
	info, err := s.SnapshotSave(ctx, &buf)
	if err := writeFrame(bw, rpcResponse{Err: encodeError(err)}); err != nil || bw.Flush() != nil {
		return
	}
	if err != nil {
		return
	}
	cw := chunkWriter{bw}
	if _, err := buf.WriteTo(cw); err != nil {
		return
	}
	if cw.end() != nil {
		return
	}
	body, _ := json.Marshal(info)
	if writeFrame(bw, rpcResponse{Body: body}) == nil {
		_ = bw.Flush()
	}
}

// serveSnapshotRestore takes a snapshot from an operator, or from a
// follower when onLeader (then only the leader restores it), and restores
// it.
func (s *Service) serveSnapshotRestore(br *bufio.Reader, bw *bufio.Writer, onLeader bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*applyTimeout)
	defer cancel()
	cr := &chunkReader{r: br}
	var info SnapshotInfo
	var err error
	if onLeader && !s.node.isLeader() {
		err = s.notLeader()
		_, _ = io.Copy(io.Discard, cr)
	} else {
		info, err = s.SnapshotRestore(ctx, cr)
	}
	if err == nil && !cr.done {
		err = errors.New("restore: snapshot stream not ended")
	}
	resp := rpcResponse{Err: encodeError(err)}
	if err == nil {
		resp.Body, _ = json.Marshal(info)
	}
	if writeFrame(bw, resp) == nil {
		_ = bw.Flush()
	}
}
