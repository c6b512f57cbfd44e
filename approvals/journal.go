package approvals

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jitssh/jitssh/audit"
)

// AuditLog is where the Service's audit entries go: an audit.Log opened
// with audit.Options.Journal. The state machine computes every line itself
// (see auditTxn), so the log holds exactly the entries of the applied
// commands, in raft order, the same on every replica.
type AuditLog interface {
	Head() (audit.Chain, error)
	AppendLines(lines [][]byte) error
}

// ErrAudit: the change was applied, but its audit entry is not on the log
// yet, so it is not acknowledged and nothing that depends on it (a
// certificate) happens until it is. The entry is written as soon as the
// log takes writes again, or from the raft log after a restart.
var ErrAudit = errors.New("audit log unavailable")

// journal carries the audit lines of applied commands to the AuditLog, in
// raft order, each once, and tells the Service how far they are durable.
//
// It is the one place where state and audit log meet:
//
//   - A command's lines are computed inside its state transaction, from the
//     chain position kept in the state, so the state always knows the exact
//     seq and hash the log must have after each command.
//   - The FSM hands the lines over right after applying, and the journal
//     writes them with one write and one fsync per batch of commands.
//   - What is not durable is kept, in order, and written again until it is;
//     nothing after it is written before it. The FSM refuses to snapshot
//     while anything is kept, so after a crash raft replays every command
//     whose lines may be missing; lines at or below the file's last seq are
//     skipped, and the one at that seq must hash like the file's.
//   - Callers learn of a change (their reply, Wait, Events) only once its
//     lines are durable; a certificate is signed only once its approval is.
type journal struct {
	log     AuditLog // nil: no audit log; lines are durable at once
	logger  *slog.Logger
	publish func([]*Request) // told about changed requests once durable

	mu      sync.Mutex
	file    audit.Chain   // the file's last durable line; zero when log is nil
	pending []journalItem // applied, not yet durable, in raft order
	durable uint64        // every line of every command up to here is durable
	err     error         // why pending could not be written; nil when nothing failed
	gap     error         // the file lacks lines that cannot be written again
	changed chan struct{} // closed and replaced when durable, err or gap change
	retry   *time.Timer   // set while a write is scheduled again
	delay   time.Duration // the next retry's delay
	closed  bool
	grace   time.Duration // how long await waits for a failing log; auditGrace when zero

	// catch fetches from a peer the lines a restored snapshot put the
	// state beyond (see restored).
	catch catchUp
}

// journalItem is what one applied command leaves to write.
type journalItem struct {
	index    uint64
	lines    []auditLine
	requests []*Request
	// jump: the state was restored from a snapshot whose audit chain
	// position is this; the file must reach it before anything after it
	// is written or counts as durable.
	jump *audit.Chain
}

// auditLine is one line and the chain position after it.
type auditLine struct {
	pos  audit.Chain
	line []byte
}

// Retry delays after a failed audit write.
const (
	journalRetryFirst = 50 * time.Millisecond
	journalRetryMax   = 5 * time.Second
)

func newJournal(log AuditLog, logger *slog.Logger, publish func([]*Request)) (*journal, error) {
	j := &journal{log: log, logger: logger, publish: publish, changed: make(chan struct{})}
	if log != nil {
		head, err := log.Head()
		if err != nil {
			return nil, fmt.Errorf("read audit log head: %w", err)
		}
		j.file = head
	}
	return j, nil
}

// fileHead returns the position of the file's last durable line, or the
// zero Chain when there is no audit log.
func (j *journal) fileHead() audit.Chain {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.file
}

// add queues what the command at index left to write. It runs on the raft
// apply path, in index order.
func (j *journal) add(index uint64, lines []auditLine, requests []*Request) {
	if len(lines) == 0 && len(requests) == 0 {
		j.mu.Lock()
		if len(j.pending) == 0 {
			j.durable = max(j.durable, index)
		} else {
			j.pending = append(j.pending, journalItem{index: index})
		}
		j.mu.Unlock()
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		lines = nil
	} else {
		lines = j.unwritten(lines)
	}
	j.pending = append(j.pending, journalItem{index: index, lines: lines, requests: requests})
}

// unwritten drops the lines the file already holds: a replay after a
// restart computes them again. The caller holds j.mu.
func (j *journal) unwritten(lines []auditLine) []auditLine {
	var out []auditLine
	for _, l := range lines {
		switch {
		case l.pos.Seq < j.file.Seq:
		case l.pos.Seq == j.file.Seq:
			if l.pos.Hash != j.file.Hash && j.gap == nil {
				j.gap = fmt.Errorf("audit log entry %d is not the one the state records (hash %.12s, want %.12s): the log was altered or belongs to other state",
					l.pos.Seq, j.file.Hash, l.pos.Hash)
				j.notify()
			}
		default:
			out = append(out, l)
		}
	}
	return out
}

// flush writes every pending line with one write and one fsync. On
// failure they stay pending and a retry is scheduled.
func (j *journal) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.flushLocked()
}

func (j *journal) flushLocked() {
	if len(j.pending) == 0 || j.closed {
		return
	}
	// Everything up to the first restore the file has not reached yet.
	var lines [][]byte
	last := j.file
	n := len(j.pending)
	for i, it := range j.pending {
		if it.jump != nil {
			if it.jump.Seq > last.Seq {
				n = i
				break
			}
			if it.jump.Seq == last.Seq && it.jump.Hash != last.Hash && j.gap == nil {
				j.gap = fmt.Errorf("audit log entry %d is not the one the restored state records (hash %.12s, want %.12s): the log belongs to other state",
					last.Seq, last.Hash, it.jump.Hash)
				j.notify()
			}
		}
		for _, l := range it.lines {
			lines = append(lines, l.line)
			last = l.pos
		}
	}
	if n == 0 {
		j.catchUpLocked(*j.pending[0].jump)
		return
	}
	if len(lines) > 0 {
		if first := j.pending[firstWithLines(j.pending[:n])].lines[0].pos.Seq; first != j.file.Seq+1 && j.gap == nil {
			j.gap = fmt.Errorf("audit log ends at entry %d but the next entry the state has is %d: entries %d to %d are missing and cannot be written again",
				j.file.Seq, first, j.file.Seq+1, first-1)
			j.notify()
		}
		if j.gap != nil {
			return
		}
		if err := j.log.AppendLines(lines); err != nil {
			if j.err == nil {
				j.logger.Error("audit log write failed; changes are held until it is written", "err", err, "entries", len(lines))
			}
			j.err = err
			j.notify()
			j.scheduleRetry()
			return
		}
		j.file = last
	}
	if j.err != nil {
		j.logger.Info("audit log writable again; held changes recorded", "entries", len(lines))
	}
	done := j.pending[:n]
	j.pending = slices.Clone(j.pending[n:])
	j.err = nil
	j.delay = 0
	j.durable = max(j.durable, done[len(done)-1].index)
	j.notify()
	for _, it := range done {
		if len(it.requests) > 0 && j.publish != nil {
			j.publish(it.requests)
		}
	}
	if len(j.pending) > 0 {
		j.catchUpLocked(*j.pending[0].jump)
	}
}

func firstWithLines(items []journalItem) int {
	for i, it := range items {
		if len(it.lines) > 0 {
			return i
		}
	}
	return 0
}

// scheduleRetry writes the pending lines again after a backoff. The
// caller holds j.mu.
func (j *journal) scheduleRetry() {
	if j.retry != nil || j.closed {
		return
	}
	j.delay = min(max(2*j.delay, journalRetryFirst), journalRetryMax)
	j.retry = time.AfterFunc(j.delay, func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.retry = nil
		j.flushLocked()
	})
}

// notify wakes everyone waiting on a change. The caller holds j.mu.
func (j *journal) notify() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// behind reports whether applied commands still have lines to write; the
// FSM takes no snapshot then.
func (j *journal) behind() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) > 0
}

// durableAt reports whether every line up to raft index is durable, and
// returns a channel closed at the next change when it is not.
func (j *journal) durableAt(index uint64) (bool, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return index <= j.durable, j.changed
}

// auditGrace is how long a caller waits for a failing log to take writes
// again before it is told its change is held.
const auditGrace = time.Second

// await returns once every line up to raft index is durable. It fails,
// wrapping ErrAudit, when the log cannot be written: at once when lines are
// missing for good or no peer supplies those a restored snapshot skipped,
// and when writes keep failing for auditGrace.
func (j *journal) await(ctx context.Context, index uint64) error {
	var grace <-chan time.Time
	for {
		j.mu.Lock()
		durable, err, gap, lag, ch := j.durable, j.err, j.gap, j.catch.lag, j.changed
		j.mu.Unlock()
		switch {
		case index <= durable:
			return nil
		case gap != nil:
			return fmt.Errorf("%w: %w", ErrAudit, gap)
		case lag != nil:
			return fmt.Errorf("%w: %w", ErrAudit, lag)
		case err != nil && grace == nil:
			t := time.NewTimer(cmp.Or(j.grace, auditGrace))
			defer t.Stop()
			grace = t.C
		}
		select {
		case <-ch:
		case <-grace:
			if err := j.health(); err != nil {
				return fmt.Errorf("%w: the change is applied and will be recorded when the log takes writes again: %w", ErrAudit, err)
			}
			grace = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// health returns why the journal cannot write, or nil.
func (j *journal) health() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.gap != nil {
		return j.gap
	}
	if j.catch.lag != nil {
		return j.catch.lag
	}
	return j.err
}

// close stops retries. Lines still pending are written from the raft log
// on the next start.
func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	if j.retry != nil {
		j.retry.Stop()
		j.retry = nil
	}
	j.catch.stopLocked()
	j.notify()
}

// visible returns r as callers may see it: a certificate whose issue entry
// is not durable yet has not left, so it is left out, and the request
// reads as still issuing. ch, when r was cut, is closed at the journal's
// next change.
func (s *Service) visible(r *Request) (out *Request, ch <-chan struct{}) {
	if r.Certificate == "" {
		return r, nil
	}
	durable, ch := s.journal.durableAt(r.Version)
	if durable {
		return r, nil
	}
	c := r.clone()
	c.Serial, c.Certificate = 0, ""
	c.IssuedAt, c.ValidAfter, c.ValidBefore = time.Time{}, time.Time{}, time.Time{}
	c.Revoked = nil
	return c, ch
}
