package approvals

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jitssh/jitssh/audit"
)

// Every node's audit log holds the same lines: each command's lines are
// computed in its state transaction. A node that was away long enough to
// be sent a snapshot instead of the commands has a state whose audit chain
// position is beyond the end of its file: the lines in between were
// written by its peers. It fetches them from a peer, checks that they
// continue its file and end exactly at the position the state records
// (the hash chain makes any other lines fail), and appends them. Until
// then nothing after the snapshot is acknowledged by this node; when no
// peer can supply lines that check, it keeps refusing (fail closed) and
// tries again.

// fetchLines returns the audit lines after from up to and including to,
// checked to continue from and end at to.
type fetchLines func(ctx context.Context, from, to audit.Chain) ([][]byte, error)

// Delays between attempts at catching up.
const (
	catchUpRetryFirst = 100 * time.Millisecond
	catchUpRetryMax   = 5 * time.Second
	catchUpTimeout    = time.Minute
)

// catchUp is the journal's state of fetching missing lines; guarded by the
// journal's mu.
type catchUp struct {
	fetch   fetchLines // nil: no peers (one node)
	running bool
	lag     error // why the last attempt failed; nil when none did
	timer   *time.Timer
	delay   time.Duration
	cancel  context.CancelFunc
}

// setFetch gives the journal a way to fetch lines from peers.
func (j *journal) setFetch(f fetchLines) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.catch.fetch = f
}

// restored tells the journal that the state was replaced by a snapshot
// whose audit chain position is c, made at raft index.
func (j *journal) restored(c audit.Chain, index uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil || c.IsZero() {
		if len(j.pending) == 0 {
			j.durable = max(j.durable, index)
		} else {
			j.pending = append(j.pending, journalItem{index: index})
		}
		return
	}
	j.pending = append(j.pending, journalItem{index: index, jump: &c})
	j.flushLocked()
}

// catchUpLocked starts fetching the lines between the file's end and
// target, unless that is under way or scheduled. The caller holds j.mu.
func (j *journal) catchUpLocked(target audit.Chain) {
	c := &j.catch
	if c.running || c.timer != nil || j.closed {
		return
	}
	from := j.file
	if c.fetch == nil {
		if c.lag == nil {
			c.lag = fmt.Errorf("audit log ends at entry %d, but the restored state continues from entry %d: entries %d to %d are missing and no peer can supply them",
				from.Seq, target.Seq, from.Seq+1, target.Seq)
			j.logger.Error("audit log behind the state", "err", c.lag)
			j.notify()
		}
		return
	}
	c.running = true
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	c.cancel = cancel
	go func() {
		defer cancel()
		lines, err := c.fetch(ctx, from, target)
		j.mu.Lock()
		defer j.mu.Unlock()
		j.caughtUpLocked(from, target, lines, err)
	}()
}

// caughtUpLocked appends what a fetch returned, or schedules another try.
// The caller holds j.mu.
func (j *journal) caughtUpLocked(from, target audit.Chain, lines [][]byte, err error) {
	c := &j.catch
	c.running = false
	if j.closed {
		return
	}
	if err == nil && j.file != from {
		err = fmt.Errorf("the log moved from entry %d to %d meanwhile", from.Seq, j.file.Seq)
	}
	if err == nil {
		// Only lines that chain from the file's end to exactly the
		// position the state records are the state's.
		var end audit.Chain
		if end, err = checkLines(from, lines); err == nil && end != target {
			err = fmt.Errorf("the entries end at %d (%.12s), not at %d (%.12s)", end.Seq, end.Hash, target.Seq, target.Hash)
		}
	}
	if err == nil {
		if err = j.log.AppendLines(lines); err == nil {
			j.file = target
		}
	}
	if err != nil {
		if c.lag == nil {
			j.logger.Error("audit log behind the state; fetching the missing entries from peers", "from", from.Seq+1, "to", target.Seq, "err", err)
		}
		c.lag = fmt.Errorf("audit log ends at entry %d, but the state continues from entry %d, and no peer supplied the entries between: %w",
			from.Seq, target.Seq, err)
		c.delay = min(max(2*c.delay, catchUpRetryFirst), catchUpRetryMax)
		c.timer = time.AfterFunc(c.delay, func() {
			j.mu.Lock()
			defer j.mu.Unlock()
			c.timer = nil
			j.flushLocked()
		})
		j.notify()
		return
	}
	j.logger.Info("audit log caught up from a peer", "from", from.Seq+1, "to", target.Seq)
	c.lag, c.delay = nil, 0
	j.flushLocked()
	j.notify()
}

// stopLocked ends catching up. The caller holds j.mu.
func (c *catchUp) stopLocked() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.cancel != nil {
		c.cancel()
	}
}

// maxLinesReply bounds the bytes of audit lines one reply carries; a
// fetch asks again for the rest.
const maxLinesReply = 4 << 20

// readAuditLines returns the lines of the audit log at path with seq from
// to to, as many as fit in maxLinesReply; fewer when the log ends first.
func readAuditLines(path string, from, to uint64) ([][]byte, error) {
	snap, err := audit.OpenSnapshot(path)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	sc := bufio.NewScanner(snap)
	sc.Buffer(make([]byte, 0, 64<<10), audit.MaxLineSize+1)
	var out [][]byte
	size := 0
	for sc.Scan() {
		seq, err := lineSeq(sc.Bytes())
		if err != nil {
			return nil, err
		}
		if seq < from {
			continue
		}
		if seq > to || size+len(sc.Bytes()) > maxLinesReply && len(out) > 0 {
			break
		}
		out = append(out, bytes.Clone(sc.Bytes()))
		size += len(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read audit log %s: %w", path, err)
	}
	return out, nil
}

type lineHead struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
}

func lineSeq(line []byte) (uint64, error) {
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil {
		return 0, fmt.Errorf("audit line: %w", err)
	}
	return h.Seq, nil
}

// checkLines checks that lines are the entries after from, each following
// the one before, and reports the position after the last.
func checkLines(from audit.Chain, lines [][]byte) (audit.Chain, error) {
	pos := from
	for _, line := range lines {
		var h lineHead
		if err := json.Unmarshal(line, &h); err != nil {
			return pos, fmt.Errorf("audit line after %d: %w", pos.Seq, err)
		}
		if h.Seq != pos.Seq+1 || h.Prev != pos.Hash {
			return pos, fmt.Errorf("audit line %d does not follow entry %d", h.Seq, pos.Seq)
		}
		sum := sha256.Sum256(line)
		pos = audit.Chain{Seq: h.Seq, Hash: hex.EncodeToString(sum[:])}
	}
	return pos, nil
}

// errNoLines: a peer had none of the lines asked for.
var errNoLines = errors.New("peer has none of the entries")

type linesArgs struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

type linesReply struct {
	Lines [][]byte `json:"lines"` // base64: the bytes must arrive exactly as written
}

// serveAuditLines answers a peer that lacks lines: those of this node's
// audit log from a.From to a.To, as far as they are durable here.
func (s *Service) serveAuditLines(a linesArgs) (linesReply, error) {
	p, ok := s.journal.log.(interface{ Path() string })
	if !ok {
		return linesReply{}, fmt.Errorf("%w: this node keeps no audit log file", errNoLines)
	}
	head := s.journal.fileHead()
	if a.From == 0 || a.From > head.Seq {
		return linesReply{}, nil
	}
	lines, err := readAuditLines(p.Path(), a.From, min(a.To, head.Seq))
	if err != nil {
		return linesReply{}, err
	}
	return linesReply{Lines: lines}, nil
}

// fetchAuditLines gets the lines after from up to to from a peer, the
// leader first, each batch checked to continue the last, and the whole to
// end exactly at to.
func (s *Service) fetchAuditLines(ctx context.Context, from, to audit.Chain) ([][]byte, error) {
	var addrs []string
	if addr, _ := s.node.raft.LeaderWithID(); addr != "" && string(addr) != s.cluster.addr {
		addrs = append(addrs, string(addr))
	}
	if f := s.node.raft.GetConfiguration(); f.Error() == nil {
		for _, sv := range f.Configuration().Servers {
			if a := string(sv.Address); a != s.cluster.addr && (len(addrs) == 0 || a != addrs[0]) {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no peer to ask")
	}
	var errs []error
	for _, addr := range addrs {
		lines, err := s.fetchLinesFrom(ctx, addr, from, to)
		if err == nil {
			return lines, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

func (s *Service) fetchLinesFrom(ctx context.Context, addr string, from, to audit.Chain) ([][]byte, error) {
	pos := from
	var all [][]byte
	for pos.Seq < to.Seq {
		var reply linesReply
		if err := s.cluster.rpc.call(ctx, addr, rpcAuditLines, linesArgs{From: pos.Seq + 1, To: to.Seq}, &reply); err != nil {
			return nil, err
		}
		if len(reply.Lines) == 0 {
			return nil, fmt.Errorf("%w after %d", errNoLines, pos.Seq)
		}
		next, err := checkLines(pos, reply.Lines)
		if err != nil {
			return nil, err
		}
		all = append(all, reply.Lines...)
		pos = next
	}
	if pos != to {
		return nil, fmt.Errorf("the entries end at %d with hash %.12s, but the state records %d with hash %.12s", pos.Seq, pos.Hash, to.Seq, to.Hash)
	}
	return all, nil
}
