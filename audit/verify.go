package audit

import (
	"bufio"
	"bytes"
	"errors"
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

// VerifyError names the first line of a log that fails verification.
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
// can, given a signed head.
func Verify(r io.Reader) (Summary, error) {
	return verifyStream(r, nil)
}

// verifyStream is Verify with a hook called for every verified entry; line
// and e.Data are only valid during the call. A hook error stops verification
// and is returned as is.
func verifyStream(r io.Reader, hook func(e *Entry, line []byte, lineNo int) error) (Summary, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineSize+1)
	sc.Split(splitLines)

	sum := Summary{Head: GenesisHash}
	var p parser
	lineNo := 0
	for sc.Scan() {
		lineNo++
		tok := sc.Bytes()
		line, terminated := bytes.CutSuffix(tok, []byte{'\n'})
		if !terminated {
			// Only the last token lacks a newline; it is torn unless the
			// reader failed rather than ended.
			sc.Scan()
			if err := sc.Err(); err != nil {
				return sum, fmt.Errorf("read audit log after line %d: %w", lineNo-1, err)
			}
			return sum, &VerifyError{Line: lineNo, Reason: fmt.Sprintf("last line has no trailing newline (%d bytes)", len(tok)), Err: ErrTornTail}
		}
		e, err := p.parse(line)
		if err != nil {
			verr := &VerifyError{Line: lineNo, Seq: e.Seq, Reason: err.Error(), Err: ErrSyntax}
			// Only the last complete line, perhaps followed by a partial
			// one, can be the remains of an interrupted write, as Open
			// sees it.
			last := !sc.Scan()
			if !last && !bytes.HasSuffix(sc.Bytes(), []byte{'\n'}) {
				last = !sc.Scan()
			}
			if err := sc.Err(); err != nil {
				return sum, fmt.Errorf("read audit log after line %d: %w", lineNo, err)
			}
			if last {
				verr.Reason = "last line does not parse: " + verr.Reason
				verr.Err = ErrTornTail
			}
			return sum, verr
		}
		if want := sum.Entries + 1; e.Seq != want {
			reason := fmt.Sprintf("seq %d follows seq %d", e.Seq, sum.Entries)
			if e.Seq > want {
				reason += fmt.Sprintf(": %d entries missing", e.Seq-want)
			}
			return sum, &VerifyError{Line: lineNo, Seq: e.Seq, Reason: reason, Err: ErrSeq}
		}
		if e.Prev != sum.Head {
			reason := "prev is not the hash of the line before: line 1 must follow the genesis hash"
			if lineNo > 1 {
				reason = fmt.Sprintf("prev is not the hash of line %d: one of them was altered", lineNo-1)
			}
			return sum, &VerifyError{Line: lineNo, Seq: e.Seq, Reason: reason, Err: ErrChain}
		}
		if hook != nil {
			if err := hook(&e, line, lineNo); err != nil {
				return sum, err
			}
		}
		sum.Entries = e.Seq
		sum.Head = lineHash(line)
		sum.LastTime = e.Time
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return sum, &VerifyError{Line: lineNo + 1, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineSize), Err: ErrSyntax}
		}
		return sum, fmt.Errorf("read audit log after line %d: %w", lineNo, err)
	}
	return sum, nil
}

// splitLines is bufio.ScanLines keeping the newline, so that the caller can
// tell a complete last line from a torn one.
func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
