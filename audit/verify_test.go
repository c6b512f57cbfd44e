package audit

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goldenLines returns the lines of testdata/golden.jsonl without newlines.
func goldenLines(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	require.NoError(t, err)
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func joinLines(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// reencode rewrites line as the canonical line of the entry it holds after
// change, so that a forgery is well-formed and only the chain can catch it.
func reencode(t *testing.T, line []byte, change func(*Entry)) []byte {
	t.Helper()
	e, err := parseLine(line)
	require.NoError(t, err)
	change(&e)
	out, err := appendEntry(nil, &e)
	require.NoError(t, err)
	return out
}

// TestVerifyTamper alters the golden log in every way the chain must catch
// and checks that Verify names the right line, for the right reason.
func TestVerifyTamper(t *testing.T) {
	n := len(goldenLines(t)) // 12
	tests := []struct {
		name     string
		tamper   func(lines [][]byte) []byte
		wantLine int // 0: verifies
		wantErr  error
	}{
		{
			name:   "intact",
			tamper: joinLines,
		},
		{
			name:   "empty log",
			tamper: func([][]byte) []byte { return nil },
		},
		{
			// Changing an entry's content shows on the next line, whose
			// prev no longer matches.
			name: "edit one byte in the middle of entry 5",
			tamper: func(lines [][]byte) []byte {
				i := bytes.Index(lines[4], []byte("allow"))
				lines[4][i+2] = 'r' // allow -> alrow: still canonical JSON
				return joinLines(lines)
			},
			wantLine: 6, wantErr: ErrChain,
		},
		{
			name: "edit a byte that breaks JSON in entry 5",
			tamper: func(lines [][]byte) []byte {
				lines[4][len(lines[4])/2] = '"'
				return joinLines(lines)
			},
			wantLine: 5, wantErr: ErrSyntax,
		},
		{
			name: "edit the prev of entry 5",
			tamper: func(lines [][]byte) []byte {
				lines[4] = reencode(t, lines[4], func(e *Entry) { e.Prev = GenesisHash })
				return joinLines(lines)
			},
			wantLine: 5, wantErr: ErrChain,
		},
		{
			name: "edit the time of entry 1",
			tamper: func(lines [][]byte) []byte {
				lines[0] = reencode(t, lines[0], func(e *Entry) { e.Time = e.Time.Add(-1) })
				return joinLines(lines)
			},
			wantLine: 2, wantErr: ErrChain,
		},
		{
			name: "edit the last entry",
			tamper: func(lines [][]byte) []byte {
				// Nothing follows it: only a checkpoint can catch this.
				lines[n-1] = reencode(t, lines[n-1], func(e *Entry) { e.Actor = "mallory" })
				return joinLines(lines)
			},
		},
		{
			name: "delete line 5",
			tamper: func(lines [][]byte) []byte {
				return joinLines(append(lines[:4:4], lines[5:]...))
			},
			wantLine: 5, wantErr: ErrSeq,
		},
		{
			name: "delete the first line",
			tamper: func(lines [][]byte) []byte {
				return joinLines(lines[1:])
			},
			wantLine: 1, wantErr: ErrSeq,
		},
		{
			name: "swap lines 4 and 5",
			tamper: func(lines [][]byte) []byte {
				lines[3], lines[4] = lines[4], lines[3]
				return joinLines(lines)
			},
			wantLine: 4, wantErr: ErrSeq,
		},
		{
			name: "swap lines 4 and 5 and their seqs",
			tamper: func(lines [][]byte) []byte {
				l4 := reencode(t, lines[4], func(e *Entry) { e.Seq = 4 })
				l5 := reencode(t, lines[3], func(e *Entry) { e.Seq = 5 })
				lines[3], lines[4] = l4, l5
				return joinLines(lines)
			},
			wantLine: 4, wantErr: ErrChain,
		},
		{
			// A forged line that chains correctly onto line 4 pushes the
			// original line 5 down, where its seq no longer follows.
			name: "insert a forged line after line 4",
			tamper: func(lines [][]byte) []byte {
				forged := reencode(t, lines[4], func(e *Entry) { e.Actor = "mallory"; e.Prev = lineHash(lines[3]) })
				return joinLines(append(lines[:4:4], append([][]byte{forged}, lines[4:]...)...))
			},
			wantLine: 6, wantErr: ErrSeq,
		},
		{
			// Renumbering everything after it leaves the original line 5,
			// now line 6, chained to line 4, not to the forgery.
			name: "insert a forged line after line 4 and renumber the rest",
			tamper: func(lines [][]byte) []byte {
				forged := reencode(t, lines[4], func(e *Entry) { e.Actor = "mallory"; e.Prev = lineHash(lines[3]) })
				out := append(lines[:4:4], forged)
				for _, l := range lines[4:] {
					out = append(out, reencode(t, l, func(e *Entry) { e.Seq++ }))
				}
				return joinLines(out)
			},
			wantLine: 6, wantErr: ErrChain,
		},
		{
			name: "first line does not start from genesis",
			tamper: func(lines [][]byte) []byte {
				lines[0] = reencode(t, lines[0], func(e *Entry) { e.Prev = lineHash([]byte("x")) })
				return joinLines(lines)
			},
			wantLine: 1, wantErr: ErrChain,
		},
		{
			name: "non-canonical line in the middle",
			tamper: func(lines [][]byte) []byte {
				lines[6] = bytes.Replace(lines[6], []byte(`"seq":7`), []byte(`"seq": 7`), 1)
				return joinLines(lines)
			},
			wantLine: 7, wantErr: ErrSyntax,
		},
		{
			name: "blank line in the middle",
			tamper: func(lines [][]byte) []byte {
				return joinLines(append(lines[:3:3], append([][]byte{{}}, lines[3:]...)...))
			},
			wantLine: 4, wantErr: ErrSyntax,
		},
		{
			// Cut at a line boundary, the log is a valid shorter log: only
			// a checkpoint can catch this (TestVerifyCheckpoint).
			name: "truncate the tail at a line boundary",
			tamper: func(lines [][]byte) []byte {
				return joinLines(lines[:n-3])
			},
		},
		{
			name: "torn last line: cut in the middle",
			tamper: func(lines [][]byte) []byte {
				b := joinLines(lines)
				return b[:len(b)-len(lines[n-1])/2]
			},
			wantLine: n, wantErr: ErrTornTail,
		},
		{
			name: "torn last line: only the newline missing",
			tamper: func(lines [][]byte) []byte {
				b := joinLines(lines)
				return b[:len(b)-1]
			},
			wantLine: n, wantErr: ErrTornTail,
		},
		{
			name: "torn last line: zeros after a crash",
			tamper: func(lines [][]byte) []byte {
				return append(joinLines(lines), make([]byte, 200)...)
			},
			wantLine: n + 1, wantErr: ErrTornTail,
		},
		{
			name: "torn last line: garbage with a newline",
			tamper: func(lines [][]byte) []byte {
				return append(joinLines(lines), []byte("{\"seq\":13,\"ti\n")...)
			},
			wantLine: n + 1, wantErr: ErrTornTail,
		},
		{
			name: "torn last line: garbage line then a partial one",
			tamper: func(lines [][]byte) []byte {
				return append(joinLines(lines), []byte("{\"seq\":13,\"ti\n{\"se")...)
			},
			wantLine: n + 1, wantErr: ErrTornTail,
		},
		{
			// Two bad lines are damage, not an interrupted write.
			name: "two garbage lines at the end",
			tamper: func(lines [][]byte) []byte {
				return append(joinLines(lines), []byte("garbage\nmore garbage\n")...)
			},
			wantLine: n + 1, wantErr: ErrSyntax,
		},
		{
			name: "line longer than MaxLineSize",
			tamper: func(lines [][]byte) []byte {
				long := append(bytes.Repeat([]byte("x"), MaxLineSize+10), '\n')
				return append(joinLines(lines[:2]), append(long, joinLines(lines[2:])...)...)
			},
			wantLine: 3, wantErr: ErrSyntax,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := tt.tamper(goldenLines(t))
			sum, err := Verify(bytes.NewReader(log))
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, uint64(bytes.Count(log, []byte("\n"))), sum.Entries)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			var verr *VerifyError
			require.ErrorAs(t, err, &verr)
			assert.Equal(t, tt.wantLine, verr.Line, "failing line; error: %v", err)
			assert.Equal(t, uint64(tt.wantLine-1), sum.Entries, "the summary covers the lines before the failure")
			for _, other := range []error{ErrSyntax, ErrSeq, ErrChain, ErrTornTail} {
				if other != tt.wantErr {
					assert.NotErrorIs(t, err, other)
				}
			}
		})
	}
}

// TestVerifyStreams checks that Verify copes with a reader that returns a
// byte at a time, and reports read errors as such.
func TestVerifyStreams(t *testing.T) {
	golden := joinLines(goldenLines(t))
	want, err := Verify(bytes.NewReader(golden))
	require.NoError(t, err)
	got, err := Verify(iotest.OneByteReader(bytes.NewReader(golden)))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	boom := errors.New("disk on fire")
	_, err = Verify(io.MultiReader(bytes.NewReader(golden[:500]), iotest.ErrReader(boom)))
	require.ErrorIs(t, err, boom)
	var verr *VerifyError
	assert.False(t, errors.As(err, &verr), "a read error is not a verification failure")
}
