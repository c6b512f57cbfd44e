package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"time"
)

// run is the writer goroutine: it takes every op waiting at the moment,
// commits them with one write and one fsync, and answers them all. While it
// is in fsync, new appends queue up for the next batch; that is the group
// commit.
func (l *Log) run() {
	defer close(l.done)
	batch := make([]*op, 0, maxBatchOps)
	for o := range l.ops {
		batch = append(batch[:0], o)
		size := o.size()
	fill:
		for len(batch) < maxBatchOps && size < maxBatchBytes {
			select {
			case o, ok := <-l.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
				size += o.size()
			default:
				break fill
			}
		}
		l.commit(batch)
		for _, o := range batch {
			close(o.done)
		}
	}
}

// commit appends a batch under the file lock.
func (l *Log) commit(batch []*op) {
	fail := func(err error) {
		for _, o := range batch {
			o.err = err
		}
	}
	if l.sticky != nil {
		fail(l.sticky)
		return
	}
	if err := lockFile(l.f); err != nil {
		fail(fmt.Errorf("lock audit log %s: %w", l.path, err))
		return
	}
	defer unlockFile(l.f)
	ops, err := l.refresh(batch)
	if err != nil {
		fail(err)
		return
	}
	l.writeLocked(ops)
}

// refresh brings l.head and l.end up to date with the file when another
// process has written to it (or it is the first look), and deals with a torn
// tail: an error, or with RepairTornTail a repair whose entry it puts in
// front of ops. The caller holds the lock.
func (l *Log) refresh(ops []*op) ([]*op, error) {
	fi, err := l.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat audit log %s: %w", l.path, err)
	}
	size := fi.Size()
	if size == l.end {
		return ops, nil
	}
	t, err := readTail(l.f, size)
	if err != nil {
		return nil, fmt.Errorf("read tail of audit log %s: %w", l.path, err)
	}
	if !t.torn() {
		l.head, l.end = t.head, size
		return ops, nil
	}
	te := t.err(l.path)
	if !l.opts.RepairTornTail {
		return nil, te
	}
	te.Sidecar, err = moveTornTail(l.f, l.path, t)
	if err != nil {
		return nil, fmt.Errorf("repair %w: %w", te, err)
	}
	l.head, l.end = t.head, t.goodEnd
	l.repaired.Store(te)
	if l.opts.Journal {
		l.opts.Logger.Warn("audit log: torn tail moved aside; its writer writes those entries again", "log", l.path,
			"sidecar", te.Sidecar, "after_seq", te.AfterSeq, "bytes", te.Bytes)
		return ops, nil
	}
	data, err := json.Marshal(repairRecord{
		Sidecar:  te.Sidecar,
		Offset:   te.Offset,
		Bytes:    te.Bytes,
		AfterSeq: te.AfterSeq,
		Reason:   te.Reason,
	})
	if err != nil {
		return nil, fmt.Errorf("encode repair entry: %w", err)
	}
	rep := &op{kind: KindRepair, data: data}
	return append([]*op{rep}, ops...), nil
}

// repairRecord is the data of an "audit.repair" entry.
type repairRecord struct {
	Sidecar  string `json:"sidecar"`
	Offset   int64  `json:"offset"`
	Bytes    int64  `json:"bytes"`
	AfterSeq uint64 `json:"after_seq"`
	Reason   string `json:"reason"`
}

// writeLocked encodes the entries of ops after l.head, writes them with one
// write, fsyncs, and only then advances l.head and answers ops. The caller
// holds the lock and has refreshed l.head.
func (l *Log) writeLocked(ops []*op) {
	h := l.head
	buf := l.buf[:0]
	now := time.Now()
	for _, o := range ops {
		if o.headOnly {
			continue
		}
		if o.lines != nil {
			var err error
			if h, buf, err = appendLines(h, buf, o.lines); err != nil {
				o.err = err
			}
			continue
		}
		e, line, err := h.next(o.kind, o.actor, o.data, now)
		if err != nil {
			o.err = err
			continue
		}
		buf = append(buf, line...)
		buf = append(buf, '\n')
		h = advance(e.Seq, line)
		o.entry = e
	}
	if cap(buf) <= maxBatchBytes*2 {
		l.buf = buf // reuse, unless one huge batch would pin its memory
	}
	fail := func(err error) {
		for _, o := range ops {
			if o.err == nil {
				o.err, o.entry = err, Entry{}
			}
		}
	}
	if len(buf) > 0 {
		if n, err := l.f.Write(buf); err != nil {
			// Take back a partial write so it cannot become a torn tail.
			if n > 0 {
				if terr := l.f.Truncate(l.end); terr != nil {
					l.sticky = fmt.Errorf("audit log %s: cannot take back a partial write: %w", l.path, terr)
				}
			}
			fail(fmt.Errorf("write audit log %s: %w", l.path, err))
			return
		}
	}
	// A head-only op syncs too: the bytes it reports may have been written
	// by another process that has not reached its own fsync.
	if err := l.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages;
		// nothing this Log writes from now on could be trusted to be durable.
		l.sticky = fmt.Errorf("audit log %s: fsync failed, log closed for writing: %w", l.path, err)
		fail(l.sticky)
		return
	}
	l.syncs.Add(1)
	l.head = h
	l.end += int64(len(buf))
	for _, o := range ops {
		switch {
		case o.headOnly && o.headFile == nil:
			o.head = h
		case o.headOnly && o.headFile != nil:
			o.err = writeHeadFile(l.path+HeadSuffix, o.headFile, o.headSeq)
		case o.err == nil && o.headFile != nil:
			if err := writeHeadFile(l.path+HeadSuffix, o.headFile, o.headSeq); err != nil {
				o.err = fmt.Errorf("checkpoint entry seq %d recorded, but: %w", o.entry.Seq, err)
			}
		}
	}
}

// durableHead returns the seq and hash of the last entry on disk, after
// making sure every byte up to it is durable.
func (l *Log) durableHead() (head, error) {
	o := &op{headOnly: true}
	if err := l.submit(o); err != nil {
		return head{}, err
	}
	return o.head, o.err
}

// lockFile takes the exclusive flock that serialises writers of the log
// across processes. It is held for one batch at a time.
func lockFile(f *os.File) error { return flock(f, syscall.LOCK_EX) }

func flock(f *os.File, how int) error {
	for {
		// A signal (the Go runtime sends them) can interrupt the wait.
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

func unlockFile(f *os.File) {
	// Closing the file or ending the process releases the lock too, so a
	// failure here cannot leave the log locked for long.
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// appendLines checks that lines continue h, each the one before, and adds
// them to buf; on any error buf and h come back as they were.
func appendLines(h head, buf []byte, lines [][]byte) (head, []byte, error) {
	start, next := len(buf), h
	for _, line := range lines {
		var err error
		if next, err = checkContinuation(next, line); err != nil {
			return h, buf[:start], err
		}
		buf = append(buf, line...)
		buf = append(buf, '\n')
	}
	return next, buf, nil
}

// size is roughly how many bytes o adds to the file.
func (o *op) size() int {
	n := len(o.data)
	for _, line := range o.lines {
		n += len(line) + 1
	}
	return n
}
