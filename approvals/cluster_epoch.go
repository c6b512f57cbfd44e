package approvals

import (
	"context"
	"fmt"
	"time"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// msgRestore records that the state was restored from an operator's
// snapshot. Its number sits apart from the others'.
const msgRestore msgType = 0x30

// AuditRestore is the kind of the entry that records a snapshot restore
// (audit.RestoreData).
const AuditRestore = audit.KindRestore

// serialEpochShift places each epoch's serials: a restore moves the serial
// counter to at least epoch<<serialEpochShift, above anything the cluster
// the snapshot came from could have issued after taking it (unless it
// issued 2^40 certificates since), and far below the break-glass bit.
const serialEpochShift = 40

// restoreCmd follows the restore of an operator's snapshot: it moves the
// serials into a new epoch and offboards people the running policy no
// longer has.
type restoreCmd struct {
	From     audit.Chain       `json:"from"`     // the audit chain position the snapshot recorded
	Index    uint64            `json:"index"`    // the raft index the snapshot was taken at
	Requests int               `json:"requests"` // how many requests it holds
	Offboard map[string]string `json:"offboard,omitempty"`
	At       time.Time         `json:"at"`
}

func restoreTxn(tx *txn, body []byte, res *applyResult) ([]auditEvent, error) {
	cmd, err := decode[restoreCmd](msgRestore, body)
	if err != nil {
		return nil, err
	}
	epoch, err := counterTxn(tx.Txn, metaEpoch)
	if err != nil {
		return nil, err
	}
	epoch++
	floor := epoch << serialEpochShift
	if floor >= ca.BreakGlassBit {
		return nil, fmt.Errorf("restore: %w: %d restores", ca.ErrSerialsExhausted, epoch)
	}
	last, err := counterTxn(tx.Txn, metaSerial)
	if err != nil {
		return nil, err
	}
	if err := setCounterTxn(tx, metaEpoch, epoch); err != nil {
		return nil, err
	}
	if err := setCounterTxn(tx, metaSerial, max(last, floor)); err != nil {
		return nil, err
	}
	changed, err := offboardTxn(tx, cmd.Offboard, cmd.At)
	if err != nil {
		return nil, err
	}
	res.requests = changed
	var events []auditEvent
	for _, r := range changed {
		events = append(events, auditEvent{AuditOffboard, SystemActor, cmd.At, endData(r, SystemActor, cmd.Offboard[r.Requester])})
	}
	policy, err := textTxn(tx.Txn, metaPolicy)
	if err != nil {
		return nil, err
	}
	rec := audit.RestoreData{
		Reason: fmt.Sprintf("state restored from a snapshot taken at raft index %d, after audit entry %d (%.16s) of its log; %d requests; serials continue above %d (epoch %d)",
			cmd.Index, cmd.From.Seq, cmd.From.Hash, cmd.Requests, max(last, floor), epoch),
		Offboarded:   cmd.Offboard,
		PolicySHA256: policy,
	}
	return append(events, auditEvent{AuditRestore, SystemActor, cmd.At, rec}), nil
}

// restoreCluster loads what a snapshot holds for the cluster: the serial
// epoch and the applied idempotency keys.
func (s *stateStore) restoreCluster(index, epoch uint64, ops []*opEntry) error {
	t := s.writeTxn(index)
	defer t.Abort()
	if epoch > 0 {
		if err := setCounterTxn(t, metaEpoch, epoch); err != nil {
			return err
		}
	}
	for _, o := range ops {
		if err := t.Insert(tableOps, o); err != nil {
			return fmt.Errorf("restore applied key: %w", err)
		}
	}
	return t.Commit()
}

// noteApplied records that the state machine applied everything up to
// index.
func (f *fsm) noteApplied(index uint64) {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	if index > f.applied {
		f.applied = index
		close(f.appliedCh)
		f.appliedCh = make(chan struct{})
	}
}

// awaitApplied returns once the state machine applied index.
func (f *fsm) awaitApplied(ctx context.Context, index uint64) error {
	for {
		f.appliedMu.Lock()
		applied, ch := f.applied, f.appliedCh
		f.appliedMu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for raft index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// appliedIndex returns the last raft index the state machine applied.
func (f *fsm) appliedIndex() uint64 {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.applied
}
