package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// Summary describes a verified log, or the verified prefix of one when
// verification fails.
type Summary struct {
	Entries  uint64    // number of entries, which is also the last seq
	Head     string    // hex SHA-256 of the last line; GenesisHash when empty
	LastTime time.Time // time of the last entry; zero when empty
}

// VerifyError names a line of a log that fails verification.
type VerifyError struct {
	Line   int    // 1-based line number
	Seq    uint64 // seq of the entry on that line; 0 when it did not parse
	Reason string
	Err    error // ErrSyntax, ErrSeq, ErrChain, ErrTornTail or ErrTruncated
}

func (e *VerifyError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("audit log line %d: %s: %v", e.Line, e.Reason, e.Err)
	}
	return fmt.Sprintf("audit log line %d (seq %d): %s: %v", e.Line, e.Seq, e.Reason, e.Err)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Verify reads a whole log and checks that every line is the canonical
// encoding of an entry, that seq runs 1, 2, 3, ... and that every prev is the
// hash of the line before. It streams: memory use does not grow with the log.
//
// On failure it returns a *VerifyError for the first line that fails,
// together with the Summary of the lines before it. A change to an entry's
// content shows up on the line after it, whose prev no longer matches; a
// missing, swapped or inserted line shows up where seq or prev stops
// following. A last line without its newline, or one that does not parse, is
// reported as ErrTornTail.
//
// Verify cannot tell a log cut short at a line boundary from a shorter log,
// nor a chain rewritten from some point on from the original: VerifyCheckpoint
// can, given a signed head. To find every failure rather than the first, use
// a Checker.
func Verify(r io.Reader) (Summary, error) {
	return verifyStream(r, nil)
}

// verifyStream is Verify with a hook called for every verified entry; line
// and e.Data are only valid during the call. A hook error stops verification
// and is returned as is.
func verifyStream(r io.Reader, hook func(e *Entry, line []byte, lineNo int) error) (Summary, error) {
	s := newScanner(r, 0)
	return s.run(hook, func(v *VerifyError) error { return v })
}

// scanner reads a log line by line and checks the chain. It can stop at
// the first failure (Verify) or report each one and go on (Checker): after
// a failure it takes up the chain again from the line that failed, so one
// bad line does not hide the lines after it.
//
// A line is in sequence when its seq follows that of the line before it or
// the highest seq so far (which takes up the order again after lines were
// swapped), and chained when its prev is the hash of a recent line with the
// seq before its own. In a log without failures both come down to "the line
// before", so the two modes agree on what verifies.
//
// Lines are read in batches, which workers parse and hash in parallel (see
// batch.go); the chain is then followed, and failures reported, line by
// line in order, so what a scan reports does not depend on how the lines
// were batched or how many workers parsed them.
type scanner struct {
	br      *bufio.Reader
	lineNo  int
	long    []byte // a line longer than the reader's buffer, assembled
	sum     Summary
	head    [sha256.Size]byte // hash of the last entry read, when hasHead
	hasHead bool
	count   uint64 // entries read

	prevSeq  uint64 // seq of the line before; what the next line follows
	maxSeq   uint64
	skipPrev bool // the line before did not parse: the next prev cannot be checked

	// recent holds the hashes of recent lines by seq modulo its length, so
	// that a line can be chained to its true predecessor after lines were
	// moved, and a checkpoint to the line it signs.
	recent []recentLine

	batching batching // see batch.go
}

type recentLine struct {
	seq  uint64
	hash [sha256.Size]byte
	set  bool
}

// defaultWindow is how many recent line hashes a scanner keeps: enough to
// take up the chain after lines were moved about.
const defaultWindow = 256

func newScanner(r io.Reader, window int) *scanner {
	if window <= 0 {
		window = defaultWindow
	}
	s := &scanner{
		br:       bufio.NewReaderSize(r, 64<<10),
		recent:   make([]recentLine, window),
		batching: scanBatching(),
	}
	s.sum.Head = GenesisHash
	s.remember(0, genesisSum)
	return s
}

var genesisSum = sha256.Sum256(nil)

func (s *scanner) remember(seq uint64, sum [sha256.Size]byte) {
	s.recent[seq%uint64(len(s.recent))] = recentLine{seq: seq, hash: sum, set: true}
}

// hashOf returns the hash of the most recent line with seq, if the scanner
// still holds it.
func (s *scanner) hashOf(seq uint64) ([sha256.Size]byte, bool) {
	r := s.recent[seq%uint64(len(s.recent))]
	if !r.set || r.seq != seq {
		return [sha256.Size]byte{}, false
	}
	return r.hash, true
}

// run reads the log to its end. Every verified entry goes to hook (which may
// be nil) and every failure to fail, which stops the scan by returning an
// error; run returns that error, or the hook's, or a read error. After a
// failure that fail lets pass, the failing entry still goes to hook, so the
// checks of its content are made too.
func (s *scanner) run(hook func(e *Entry, line []byte, lineNo int) error, fail func(*VerifyError) error) (Summary, error) {
	p := newPipeline(s)
	err := s.follow(p, hook, fail)
	p.close()
	if s.hasHead {
		// Encoded once at the end rather than for every line.
		s.sum.Head = hex.EncodeToString(s.head[:])
	}
	return s.sum, err
}

// follow takes the batches of p in order and follows the chain through
// their lines.
func (s *scanner) follow(p *pipeline, hook func(e *Entry, line []byte, lineNo int) error, fail func(*VerifyError) error) error {
	for {
		b := p.next()
		for i := range b.frames {
			f := &b.frames[i]
			s.lineNo++
			if f.tooLong {
				s.skipPrev = true
				s.prevSeq++
				if err := fail(&VerifyError{Line: s.lineNo, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineSize), Err: ErrSyntax}); err != nil {
					return err
				}
				continue
			}
			line := b.buf[f.start:f.end]
			if !f.terminated {
				// Only the last line lacks a newline: a write was interrupted.
				return fail(&VerifyError{Line: s.lineNo, Reason: fmt.Sprintf("last line has no trailing newline (%d bytes)", len(line)), Err: ErrTornTail})
			}
			r := &b.out[i]
			if r.err != nil {
				verr := &VerifyError{Line: s.lineNo, Seq: r.e.Seq, Reason: r.err.Error(), Err: ErrSyntax}
				last, err := p.lastLine(b, i)
				if err != nil {
					return fmt.Errorf("read audit log after line %d: %w", s.lineNo, err)
				}
				if last {
					verr.Reason = "last line does not parse: " + verr.Reason
					verr.Err = ErrTornTail
					return fail(verr)
				}
				s.skipPrev = true
				s.prevSeq++
				if err := fail(verr); err != nil {
					return err
				}
				continue
			}
			e := r.e // the hook may keep e; r is reused
			if verr := s.chained(&e, &r.prev); verr != nil {
				if err := fail(verr); err != nil {
					return err
				}
			}
			s.skipPrev = false
			s.prevSeq = e.Seq
			s.maxSeq = max(s.maxSeq, e.Seq)
			s.remember(e.Seq, r.sum)
			if hook != nil {
				if err := hook(&e, line, s.lineNo); err != nil {
					return err
				}
			}
			s.count++
			s.sum.Entries = e.Seq
			s.head, s.hasHead = r.sum, true
			s.sum.LastTime = e.Time
		}
		switch {
		case b.err != nil:
			return fmt.Errorf("read audit log after line %d: %w", s.lineNo, b.err)
		case b.eof:
			return nil
		}
		p.release(b)
	}
}

// chained checks that e, whose prev decodes to prev, takes up the chain
// where the lines before left it.
func (s *scanner) chained(e *Entry, prev *[sha256.Size]byte) *VerifyError {
	if e.Seq != s.prevSeq+1 && e.Seq != s.maxSeq+1 {
		reason := fmt.Sprintf("seq %d follows seq %d", e.Seq, s.prevSeq)
		switch {
		case e.Seq <= s.maxSeq:
			reason += fmt.Sprintf(": out of order, seq %d came before", s.maxSeq)
		case e.Seq > s.prevSeq+1:
			reason += fmt.Sprintf(": %d entries missing", e.Seq-s.prevSeq-1)
		}
		return &VerifyError{Line: s.lineNo, Seq: e.Seq, Reason: reason, Err: ErrSeq}
	}
	if s.skipPrev {
		return nil
	}
	if h, ok := s.hashOf(e.Seq - 1); ok && h == *prev {
		return nil
	}
	reason := "prev is not the hash of the line before: line 1 must follow the genesis hash"
	if s.lineNo > 1 {
		reason = fmt.Sprintf("prev is not the hash of line %d: one of them was altered", s.lineNo-1)
	}
	return &VerifyError{Line: s.lineNo, Seq: e.Seq, Reason: reason, Err: ErrChain}
}
