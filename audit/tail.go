package audit

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jitssh/jitssh/internal/atomicfile"
)

// TornTailError says where a log's torn tail is. It wraps ErrTornTail.
type TornTailError struct {
	Path     string
	Offset   int64  // byte offset at which the torn bytes start
	Bytes    int64  // how many torn bytes there are, up to the end of the file
	AfterSeq uint64 // seq of the last good entry before them; 0 if none
	Reason   string
	// Sidecar is the file the torn bytes were moved to, when they were.
	Sidecar string
}

func (e *TornTailError) Error() string {
	s := fmt.Sprintf("audit log %s: %v: %d bytes at offset %d after seq %d: %s",
		e.Path, ErrTornTail, e.Bytes, e.Offset, e.AfterSeq, e.Reason)
	if e.Sidecar != "" {
		s += "; moved to " + e.Sidecar
	}
	return s
}

func (e *TornTailError) Unwrap() error { return ErrTornTail }

// tail is what reading the end of a log file finds.
type tail struct {
	head    head  // the last good entry
	goodEnd int64 // [0, goodEnd) ends with the last good entry's newline
	size    int64
	reason  string // why [goodEnd, size) is torn; empty when it is not
}

func (t tail) torn() bool { return t.goodEnd < t.size }

func (t tail) err(path string) *TornTailError {
	return &TornTailError{Path: path, Offset: t.goodEnd, Bytes: t.size - t.goodEnd, AfterSeq: t.head.seq, Reason: t.reason}
}

// readTail finds the last good entry of the first size bytes of f without
// reading the whole file: it reads backwards to the last newline. Bytes after
// that newline are torn (a write that never finished); so is the last line
// itself when it does not parse, and then the line before it must parse.
// Anything worse is not a torn tail but damage, which readTail reports as
// ErrSyntax and nothing here repairs.
func readTail(f io.ReaderAt, size int64) (tail, error) {
	t := tail{head: genesis, size: size}
	if size == 0 {
		return t, nil
	}
	nl, err := lastNewline(f, size)
	if err != nil {
		return t, err
	}
	if nl+1 < size {
		t.reason = "last line has no trailing newline"
	}
	if nl < 0 {
		return t, nil // not one complete line
	}
	last, err := lineEndingAt(f, nl)
	if err != nil {
		return t, err
	}
	if last.perr == nil {
		t.head = advance(last.e.Seq, last.line)
		t.goodEnd = nl + 1
		return t, nil
	}
	t.reason = fmt.Sprintf("last line does not parse: %v", last.perr)
	if last.start == 0 {
		return t, nil
	}
	prev, err := lineEndingAt(f, last.start-1)
	if err != nil {
		return t, err
	}
	if prev.perr != nil {
		return t, fmt.Errorf("the two last lines, before offset %d, do not parse: %w: %v", last.start, ErrSyntax, prev.perr)
	}
	t.head = advance(prev.e.Seq, prev.line)
	t.goodEnd = last.start
	return t, nil
}

// tailLine is one line read back from the end of a log.
type tailLine struct {
	start int64  // offset of its first byte
	line  []byte // without the newline
	e     Entry
	perr  error // why it does not parse, if it does not
}

// lineEndingAt reads and parses the line that ends with the newline at
// offset nl.
func lineEndingAt(f io.ReaderAt, nl int64) (tailLine, error) {
	prev, err := lastNewline(f, nl)
	if err != nil {
		return tailLine{}, err
	}
	l := tailLine{start: prev + 1}
	if n := nl - l.start; n > MaxLineSize {
		l.perr = fmt.Errorf("line of %d bytes is longer than %d", n, MaxLineSize)
		return l, nil
	}
	l.line = make([]byte, nl-l.start)
	if _, err := f.ReadAt(l.line, l.start); err != nil {
		return tailLine{}, fmt.Errorf("read line at offset %d: %w", l.start, err)
	}
	l.e, l.perr = parseLine(l.line)
	return l, nil
}

// lastNewline returns the offset of the last '\n' before end, or -1.
func lastNewline(f io.ReaderAt, end int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end > 0 {
		n := min(int64(chunk), end)
		off := end - n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, fmt.Errorf("read at offset %d: %w", off, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return off + int64(i), nil
		}
		end = off
	}
	return -1, nil
}

// moveTornTail copies the torn bytes of f to a new sidecar file next to
// path, makes the copy durable, and only then cuts them off the log. The
// caller holds the lock.
func moveTornTail(f *os.File, path string, t tail) (string, error) {
	sidecar := fmt.Sprintf("%s.torn-%d", path, time.Now().UnixNano())
	s, err := os.OpenFile(sidecar, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("create torn-tail sidecar: %w", err)
	}
	_, err = io.Copy(s, io.NewSectionReader(f, t.goodEnd, t.size-t.goodEnd))
	if err == nil {
		err = s.Sync()
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return "", fmt.Errorf("write torn-tail sidecar %s: %w", sidecar, err)
	}
	if err := f.Truncate(t.goodEnd); err != nil {
		return "", fmt.Errorf("cut torn tail off %s (saved in %s): %w", path, sidecar, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s after cutting its torn tail (saved in %s): %w", path, sidecar, err)
	}
	return sidecar, nil
}
