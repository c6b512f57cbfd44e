package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sequential is the reference batching: one line at a time, parsed by the
// scanner itself, as a scanner without workers reads a log.
var sequential = batching{workers: 0, bytes: 1 << 30, lines: 1}

// parallelBatchings put lines into batches of various sizes, so that the
// tampered lines of TestParallelScanMatchesSequential fall at the start,
// middle and end of batches, and have them parsed by several workers.
var parallelBatchings = []batching{
	{workers: 3, bytes: 1 << 30, lines: 1},
	{workers: 2, bytes: 1 << 30, lines: 2},
	{workers: 4, bytes: 1 << 30, lines: 3},
	{workers: 2, bytes: 1 << 30, lines: 7},
	{workers: 2, bytes: 3000, lines: 1 << 20}, // two or three lines, by size
	{workers: 8, bytes: defaultBatchBytes, lines: defaultBatchLines},
	{workers: 0, bytes: 1 << 30, lines: 5}, // batched, but parsed by the scanner
}

// withBatching makes new scanners use b until the test ends.
func withBatching(t *testing.T, b batching) {
	t.Helper()
	saved := scanBatching
	scanBatching = func() batching { return b }
	t.Cleanup(func() { scanBatching = saved })
}

// scanOutcome is everything a scan reports: Verify's summary and error, and
// every failure a Checker reports, with its summary.
type scanOutcome struct {
	Sum      Summary
	Err      string
	VerifyAt *VerifyError
	Checked  LogSummary
	CheckErr string
	Reported []string
}

func scanAll(t *testing.T, log []byte, reader func([]byte) io.Reader) scanOutcome {
	t.Helper()
	var out scanOutcome
	sum, err := Verify(reader(log))
	out.Sum = sum
	if err != nil {
		out.Err = err.Error()
		errors.As(err, &out.VerifyAt)
	}
	k := NewChecker(CheckOptions{})
	ls, err := k.Check(reader(log), nil, func(err error) {
		out.Reported = append(out.Reported, fmt.Sprintf("%T %v", err, err))
	})
	out.Checked = ls
	if err != nil {
		out.CheckErr = err.Error()
	}
	return out
}

// TestParallelScanMatchesSequential tampers with a generated daemon log in
// every way verification must catch, at various places, and checks that
// scanning it in batches parsed by parallel workers reports exactly what
// reading it one line at a time does: the same summary, the same first
// failure for Verify, and the same failures in the same order for a
// Checker.
func TestParallelScanMatchesSequential(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.log")
	writeHistoryLog(t, path, 20, 1)
	lines := fileLines(t, path) // 45 entries
	n := len(lines)
	require.Greater(t, n, 30)

	clone := func() [][]byte {
		out := make([][]byte, len(lines))
		for i, l := range lines {
			out[i] = bytes.Clone(l)
		}
		return out
	}
	edit := func(i int) func([][]byte) []byte {
		return func(ls [][]byte) []byte {
			ls[i] = reencode(t, ls[i], func(e *Entry) { e.Actor = "mallory" })
			return joinLines(ls)
		}
	}
	drop := func(i int) func([][]byte) []byte {
		return func(ls [][]byte) []byte { return joinLines(append(ls[:i:i], ls[i+1:]...)) }
	}
	swap := func(i, j int) func([][]byte) []byte {
		return func(ls [][]byte) []byte {
			ls[i], ls[j] = ls[j], ls[i]
			return joinLines(ls)
		}
	}
	badJSON := func(i int) func([][]byte) []byte {
		return func(ls [][]byte) []byte {
			ls[i] = ls[i][:len(ls[i])/2]
			return joinLines(ls)
		}
	}
	nonCanonical := func(i int) func([][]byte) []byte {
		return func(ls [][]byte) []byte {
			ls[i] = bytes.Replace(ls[i], []byte(`,"kind":`), []byte(`, "kind":`), 1)
			return joinLines(ls)
		}
	}
	tooLong := func(i int) func([][]byte) []byte {
		return func(ls [][]byte) []byte {
			ls[i] = bytes.Repeat([]byte("x"), MaxLineSize+10)
			return joinLines(ls)
		}
	}
	tests := []struct {
		name     string
		tamper   func([][]byte) []byte
		wantLine int // Verify's first failure; 0: verifies
		wantErr  error
	}{
		{"intact", joinLines, 0, nil},
		{"empty", func([][]byte) []byte { return nil }, 0, nil},
		{"edited first line", edit(0), 2, ErrChain},
		{"edited line 17", edit(16), 18, ErrChain},
		{"edited line before the last", edit(n - 2), n, ErrChain},
		{"dropped first line", drop(0), 1, ErrSeq},
		{"dropped line 9", drop(8), 9, ErrSeq},
		{"dropped last line", drop(n - 1), 0, nil},
		{"swapped lines 10 and 11", swap(9, 10), 10, ErrSeq},
		{"moved line 3 to 30", swap(2, 29), 3, ErrSeq},
		{"bad JSON on line 1", badJSON(0), 1, ErrSyntax},
		{"bad JSON on line 12", badJSON(11), 12, ErrSyntax},
		{"bad JSON on the last line", badJSON(n - 1), n, ErrTornTail},
		{"bad JSON before a partial last line", func(ls [][]byte) []byte {
			return append(badJSON(n-1)(ls), ls[0][:40]...)
		}, n, ErrTornTail},
		{"non-canonical line 20", nonCanonical(19), 20, ErrSyntax},
		{"line 6 too long", tooLong(5), 6, ErrSyntax},
		{"last line too long and unterminated", func(ls [][]byte) []byte {
			return append(joinLines(ls), bytes.Repeat([]byte("y"), MaxLineSize+2)...)
		}, n + 1, ErrSyntax},
		{"no newline at the end", func(ls [][]byte) []byte {
			b := joinLines(ls)
			return b[:len(b)-1]
		}, n, ErrTornTail},
		{"partial line at the end", func(ls [][]byte) []byte {
			return append(joinLines(ls), ls[3][:100]...)
		}, n + 1, ErrTornTail},
		{"empty line in the middle", func(ls [][]byte) []byte {
			return joinLines(append(ls[:7:7], append([][]byte{nil}, ls[7:]...)...))
		}, 8, ErrSyntax},
		{"many failures", func(ls [][]byte) []byte {
			ls[4] = reencode(t, ls[4], func(e *Entry) { e.Actor = "mallory" })
			ls[12] = ls[12][:30]
			ls[20], ls[21] = ls[21], ls[20]
			ls = append(ls[:30:30], ls[31:]...)
			return append(joinLines(ls), ls[1][:10]...)
		}, 6, ErrChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := tt.tamper(clone())
			plain := func(b []byte) io.Reader { return bytes.NewReader(b) }
			withBatching(t, sequential)
			want := scanAll(t, log, plain)
			if tt.wantLine == 0 {
				assert.Empty(t, want.Err)
			} else if assert.NotNil(t, want.VerifyAt, "Verify: %s", want.Err) {
				assert.Equal(t, tt.wantLine, want.VerifyAt.Line, want.Err)
				assert.ErrorIs(t, want.VerifyAt, tt.wantErr)
			}
			for _, b := range parallelBatchings {
				withBatching(t, b)
				assert.Equal(t, want, scanAll(t, log, plain), "batching %+v", b)
			}
		})
	}
}

// TestParallelScanReadErrors checks that a read error is reported after
// the same lines, batched or not, wherever it strikes: between lines, in
// the middle of one, or right after a line that does not parse.
func TestParallelScanReadErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.log")
	writeHistoryLog(t, path, 10, 1)
	lines := fileLines(t, path)
	lines[5] = lines[5][:20] // does not parse: is it the last line?
	log := joinLines(lines)
	boom := errors.New("disk on fire")
	lineEnd := func(i int) int { return len(joinLines(lines[:i])) }
	for _, tt := range []struct {
		at int
		// Verify meets the error before it fails at line 6: only a
		// line that is last, or followed by a partial line, is a torn
		// tail, so it must read past line 6 to judge it.
		verifyMeetsIt bool
	}{
		{0, true}, {10, true}, {lineEnd(1), true}, {lineEnd(3) + 7, true}, {lineEnd(6), true}, {lineEnd(6) + 1, true},
		{lineEnd(7), false}, {lineEnd(9), false}, {len(log) - 1, false},
	} {
		at := tt.at
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			failing := func(b []byte) io.Reader {
				return io.MultiReader(bytes.NewReader(b[:at]), iotest.ErrReader(boom))
			}
			withBatching(t, sequential)
			want := scanAll(t, log, failing)
			if tt.verifyMeetsIt {
				assert.Contains(t, want.Err, boom.Error())
			} else {
				assert.Contains(t, want.Err, "audit log line 6 (seq 6)")
			}
			assert.Contains(t, want.CheckErr, boom.Error())
			for _, b := range parallelBatchings {
				withBatching(t, b)
				assert.Equal(t, want, scanAll(t, log, failing), "batching %+v", b)
			}
		})
	}
}
