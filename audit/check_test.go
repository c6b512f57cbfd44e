package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// found is one failure as a test compares it: where and which error.
type found struct {
	Line int
	Seq  uint64
	Err  error
}

// checkAll runs a Checker over the log at path and returns every failure.
func checkAll(t *testing.T, path string, opts CheckOptions) ([]found, Summary) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []found
	sum, err := NewChecker(opts).Check(f, nil, func(err error) {
		var ve *VerifyError
		var ce *CheckError
		switch {
		case errors.As(err, &ve):
			out = append(out, found{ve.Line, ve.Seq, ve.Err})
		case errors.As(err, &ce):
			out = append(out, found{ce.Line, ce.Seq, sentinel(t, ce.Err)})
		default:
			t.Fatalf("failure of unknown type %T: %v", err, err)
		}
	})
	require.NoError(t, err)
	return out, sum.Summary
}

// sentinel returns the sentinel error err wraps.
func sentinel(t *testing.T, err error) error {
	t.Helper()
	for _, s := range []error{ErrUnapprovedIssue, ErrSelfApproval, ErrScope, ErrValidity, ErrUnknownPerson, ErrCA,
		ErrStatementMismatch, ErrRecord, ErrStatementSignature, ErrBadSignature, ErrTruncated, ErrPolicy, ErrPolicyUnknown} {
		if errors.Is(err, s) {
			return s
		}
	}
	t.Fatalf("no sentinel in %v", err)
	return nil
}

// TestCheckerFindsEveryFailure tampers with one log in several places, far
// apart, and checks that every tamper is found where it is, the later ones
// as well as the first.
func TestCheckerFindsEveryFailure(t *testing.T) {
	f := newGrantsFixture(t)
	good, reqs := goodStory(f)
	r5 := f.request("r5", "dave", "write", "demo/app", "refs/heads/feature/x", "1h0m0s", "sneak", Step{Group: "leads", Count: 1})
	story := append(good.set("request r2", func() RequestData {
		d := reqs["r2"]
		d.Signature = f.sign("mallory", NamespaceRequest, []byte(d.Statement))
		return d
	}()),
		rec{"git a", KindGit, "dave/r3", map[string]any{"serial": 3, "repo": "demo/app", "decision": "allow"}},
		rec{"git b", KindGit, "dave/r3", map[string]any{"serial": 3, "repo": "demo/app", "decision": "allow"}},
		rec{"request r5", KindRequest, "dave", r5},
		rec{"issue r5", KindIssue, "jitssh", later(func(now time.Time) IssueData { return f.issue(r5, 5, time.Hour, now, "bob") })},
		rec{"git c", KindGit, "dave/r5", map[string]any{"serial": 5, "repo": "demo/app", "decision": "allow"}},
		rec{"git d", KindGit, "dave/r5", map[string]any{"serial": 5, "repo": "demo/app", "decision": "allow"}},
	)
	path := story.write(t)
	intact, sum := checkAll(t, path, f.opts())
	require.Equal(t, []found{
		{int(story.seq("request r2")), story.seq("request r2"), ErrStatementSignature},
		{int(story.seq("issue r2")), story.seq("issue r2"), ErrUnapprovedIssue},
		{int(story.seq("issue r5")), story.seq("issue r5"), ErrUnapprovedIssue},
	}, intact, "the grants failures of the story itself")
	assert.Equal(t, uint64(len(story)), sum.Entries)

	// Then the chain: a byte edited in "git 1", "break-glass" deleted, and
	// "git a" and "git b" swapped. Line numbers after the deletion are one
	// less than seqs.
	lines := fileLines(t, path)
	idx := func(name string) int { return story.index(name) }
	edited := slices.Clone(lines[idx("git 1")])
	edited[bytes.Index(edited, []byte("allow"))+2] = 'r'
	lines[idx("git 1")] = edited
	lines[idx("git a")], lines[idx("git b")] = lines[idx("git b")], lines[idx("git a")]
	lines = slices.Delete(lines, idx("break-glass"), idx("break-glass")+1)
	tampered := filepath.Join(t.TempDir(), "audit.log")
	require.NoError(t, os.WriteFile(tampered, joinLines(lines), 0o600))

	got, sum := checkAll(t, tampered, f.opts())
	line := func(name string) int { // line number after the deletion
		if i := idx(name); i > idx("break-glass") {
			return i
		}
		return idx(name) + 1
	}
	assert.Equal(t, []found{
		{line("request r2"), story.seq("request r2"), ErrChain}, // its prev is the hash of the edited "git 1"
		{line("request r2"), story.seq("request r2"), ErrStatementSignature},
		{line("issue r2"), story.seq("issue r2"), ErrUnapprovedIssue},
		{line("revoke r2"), story.seq("revoke r2"), ErrSeq},
		{line("git a"), story.seq("git b"), ErrSeq}, // git b now stands where git a was
		{line("git b"), story.seq("git a"), ErrSeq},
		{line("issue r5"), story.seq("issue r5"), ErrUnapprovedIssue},
	}, got)
	assert.Equal(t, uint64(len(story)-1), sum.Entries, "every entry read")
}

// TestCheckerTakesUpTheChain: after each kind of break, the lines that
// follow are checked against the line that broke the chain, so a single
// tamper is reported once.
func TestCheckerTakesUpTheChain(t *testing.T) {
	const n = 12
	plain := func() [][]byte {
		var out [][]byte
		h := genesis
		for i := range n {
			e, line, err := h.next(KindGit, "alice", json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), reportBase.Add(time.Duration(i)*time.Second))
			require.NoError(t, err)
			out = append(out, line)
			h = advance(e.Seq, line)
		}
		return out
	}
	for _, tt := range []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		want   []found
	}{
		{"intact", func(l [][]byte) [][]byte { return l }, nil},
		{"edit a line", func(l [][]byte) [][]byte {
			l[4] = reencode(t, l[4], func(e *Entry) { e.Actor = "mallory" })
			return l
		}, []found{{6, 6, ErrChain}}},
		{"delete a line", func(l [][]byte) [][]byte { return slices.Delete(l, 4, 5) }, []found{{5, 6, ErrSeq}}},
		{"delete two lines apart", func(l [][]byte) [][]byte { return slices.Delete(slices.Delete(l, 8, 9), 2, 3) },
			[]found{{3, 4, ErrSeq}, {8, 10, ErrSeq}}},
		{"swap two lines", func(l [][]byte) [][]byte { l[3], l[4] = l[4], l[3]; return l }, []found{{4, 5, ErrSeq}, {5, 4, ErrSeq}}},
		{"move a line far back", func(l [][]byte) [][]byte {
			moved := l[2]
			return slices.Insert(slices.Delete(l, 2, 3), 8, moved)
		}, []found{{3, 4, ErrSeq}, {9, 3, ErrSeq}}},
		{"renumber one line", func(l [][]byte) [][]byte {
			l[4] = reencode(t, l[4], func(e *Entry) { e.Seq = 99 })
			return l
		}, []found{{5, 99, ErrSeq}, {6, 6, ErrSeq}}},
		{"insert a forged line that chains", func(l [][]byte) [][]byte {
			forged := reencode(t, l[4], func(e *Entry) { e.Actor = "mallory"; e.Prev = lineHash(l[3]) })
			return slices.Insert(l, 4, forged)
		}, []found{{6, 5, ErrSeq}}},
		{"garbage in place of a line", func(l [][]byte) [][]byte { l[4] = []byte("garbage"); return l }, []found{{5, 0, ErrSyntax}}},
		{"garbage line inserted", func(l [][]byte) [][]byte { return slices.Insert(l, 4, []byte("garbage")) }, []found{{5, 0, ErrSyntax}}},
		{"line longer than MaxLineSize", func(l [][]byte) [][]byte {
			return slices.Insert(l, 2, bytes.Repeat([]byte("x"), MaxLineSize+10))
		}, []found{{3, 0, ErrSyntax}}},
		{"first line deleted", func(l [][]byte) [][]byte { return l[1:] }, []found{{1, 2, ErrSeq}}},
		{"torn tail after a break", func(l [][]byte) [][]byte {
			l[1] = reencode(t, l[1], func(e *Entry) { e.Actor = "mallory" })
			return append(l, []byte("{\"seq\":13,\"ti"))
		}, []found{{3, 3, ErrChain}, {n + 1, 0, ErrTornTail}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := joinLines(tt.tamper(plain()))
			if tt.name == "torn tail after a break" {
				log = bytes.TrimSuffix(log, []byte("\n"))
			}
			p := filepath.Join(t.TempDir(), "audit.log")
			require.NoError(t, os.WriteFile(p, log, 0o600))
			got, _ := checkAll(t, p, CheckOptions{})
			assert.Equal(t, tt.want, got)

			// Verify stops at the first of them.
			_, err := Verify(bytes.NewReader(log))
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			var ve *VerifyError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tt.want[0].Line, ve.Line)
		})
	}
}

// checkpointStory writes 4 entries, a checkpoint, 4 more, a checkpoint,
// and 2 more: 12 entries, checkpoints at seq 5 (signing seq 4) and 10
// (signing seq 9). The head file signs seq 9.
func checkpointStory(t *testing.T, signer ssh.Signer) (path string, lines [][]byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})
	for round := range 3 {
		n := 4
		if round == 2 {
			n = 2
		}
		for i := range n {
			_, err := l.Append(KindGit, "alice", map[string]int{"round": round, "i": i})
			require.NoError(t, err)
		}
		if round < 2 {
			_, err := l.Checkpoint(signer)
			require.NoError(t, err)
		}
	}
	require.NoError(t, l.Close())
	return path, fileLines(t, path)
}

// rewrite changes the entry at index i with edit and hashes the chain anew
// from there on, as someone who can rewrite the file would; the checkpoint
// entries keep the data they had.
func rewrite(t *testing.T, lines [][]byte, i int, edit func(e *Entry)) [][]byte {
	t.Helper()
	return rewriteEach(t, lines, i, func(j int, e *Entry) {
		if j == i {
			edit(e)
		}
	})
}

// rewriteEach is rewrite with edit called for each entry from index i on.
func rewriteEach(t *testing.T, lines [][]byte, i int, edit func(j int, e *Entry)) [][]byte {
	t.Helper()
	out := slices.Clone(lines)
	h := genesis
	for j, line := range out {
		e, err := parseLine(line)
		require.NoError(t, err)
		if j >= i {
			edit(j, &e)
			e.Prev = h.hash
			out[j], err = appendEntry(nil, &e)
			require.NoError(t, err)
		}
		h = advance(e.Seq, out[j])
	}
	return out
}

func TestCheckerCheckpoints(t *testing.T) {
	signer, other := newSigner(t), newSigner(t)
	path, lines := checkpointStory(t, signer)
	headFile, err := os.ReadFile(path + HeadSuffix)
	require.NoError(t, err)
	otherPath, _ := checkpointStory(t, other)
	otherHead, err := os.ReadFile(otherPath + HeadSuffix)
	require.NoError(t, err)
	otherLines := fileLines(t, otherPath)

	tests := []struct {
		name        string
		lines       [][]byte
		head        []byte
		key         ssh.PublicKey
		want        []found
		headChecked bool
	}{
		{name: "intact", lines: lines, head: headFile, key: signer.PublicKey(), headChecked: true},
		{name: "intact, no head file", lines: lines, key: signer.PublicKey()},
		{name: "rewritten from seq 2 with its chain", head: headFile, key: signer.PublicKey(),
			lines: rewrite(t, lines, 1, func(e *Entry) { e.Actor = "mallory" }),
			want:  []found{{5, 5, ErrTruncated}, {9, 9, ErrTruncated}, {10, 10, ErrTruncated}}},
		{name: "rewritten from seq 2, no head file", key: signer.PublicKey(),
			lines: rewrite(t, lines, 1, func(e *Entry) { e.Actor = "mallory" }),
			want:  []found{{5, 5, ErrTruncated}, {10, 10, ErrTruncated}}},
		{name: "rewritten after the last checkpoint", head: headFile, key: signer.PublicKey(), headChecked: true,
			lines: rewrite(t, lines, 10, func(e *Entry) { e.Actor = "mallory" })},
		{name: "cut below the head", lines: lines[:8], head: headFile, key: signer.PublicKey(),
			want: []found{{9, 9, ErrTruncated}}},
		{name: "cut below the head and regrown", head: headFile, key: signer.PublicKey(),
			lines: append(slices.Clone(lines[:8]), rewrite(t, lines, 8, func(e *Entry) { e.Kind = KindRelease })[8:9]...),
			want:  []found{{9, 9, ErrTruncated}}},
		{name: "a checkpoint signed by another key", head: headFile, key: signer.PublicKey(), headChecked: true,
			lines: rewrite(t, lines, 9, func(e *Entry) {
				o, err := parseLine(otherLines[9])
				require.NoError(t, err)
				e.Data = o.Data
			}),
			want: []found{{10, 10, ErrBadSignature}}},
		{name: "entries before a checkpoint removed, the rest renumbered", head: headFile, key: signer.PublicKey(),
			lines: func() [][]byte {
				cut := slices.Delete(slices.Clone(lines), 1, 3)
				return rewriteEach(t, cut, 1, func(j int, e *Entry) { e.Seq = uint64(j + 1) })
			}(),
			// The checkpoints, now at seq 3 and 8, sign seq 4 and 9; the head
			// file signs seq 9, now a Git operation.
			want: []found{{3, 3, ErrTruncated}, {8, 8, ErrTruncated}, {9, 9, ErrTruncated}}},
		{name: "head file signed by another key", head: otherHead, key: signer.PublicKey(),
			lines: lines, want: []found{{0, 0, ErrBadSignature}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []found
			var res LogSummary
			k := NewChecker(CheckOptions{HeadKey: tt.key})
			res, err := k.Check(bytes.NewReader(joinLines(tt.lines)), tt.head, func(err error) {
				var ve *VerifyError
				var ce *CheckError
				var he *HeadError
				switch {
				case errors.As(err, &ve):
					got = append(got, found{ve.Line, ve.Seq, ve.Err})
				case errors.As(err, &ce):
					got = append(got, found{ce.Line, ce.Seq, sentinel(t, ce.Err)})
				case errors.As(err, &he):
					got = append(got, found{0, 0, sentinel(t, he.Err)})
				}
			})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.headChecked, res.HeadChecked)
			if tt.headChecked {
				assert.Equal(t, uint64(9), res.HeadSeq)
			}
			assert.Equal(t, bytes.Count(joinLines(tt.lines), []byte(`"kind":"checkpoint"`)), res.Checkpoints)
		})
	}

	t.Run("without a head key", func(t *testing.T) {
		k := NewChecker(CheckOptions{})
		var got []error
		res, err := k.Check(bytes.NewReader(joinLines(rewrite(t, lines, 1, func(e *Entry) { e.Actor = "mallory" }))), nil, func(err error) { got = append(got, err) })
		require.NoError(t, err)
		assert.Empty(t, got, "a rewritten chain verifies without the key that signs checkpoints")
		assert.Zero(t, res.Checkpoints)
		assert.Equal(t, 2, k.Summary().CheckpointsUnchecked)

		_, err = k.Check(bytes.NewReader(joinLines(lines)), headFile, func(err error) { got = append(got, err) })
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.ErrorIs(t, got[0], ErrBadSignature, "a head file cannot be checked without the key")
	})
}

// mustOpen opens a file the test closes at its end.
func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// FuzzChecker feeds arbitrary logs to a Checker: it never fails to read a
// log it can read, it agrees with Verify on whether the chain holds, and
// its first chain failure is the one Verify names.
func FuzzChecker(f *testing.F) {
	golden, err := os.ReadFile(goldenPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)/2])
	lines := bytes.SplitAfter(golden, []byte("\n"))
	f.Add(bytes.Join(append([][]byte{lines[1], lines[0]}, lines[2:]...), nil))
	f.Add(bytes.Join(append(slices.Clone(lines[:3]), lines[4:]...), nil))
	f.Add([]byte("garbage\n{\"seq\":1}\n"))
	f.Fuzz(func(t *testing.T, log []byte) {
		var chain []*VerifyError
		_, err := NewChecker(CheckOptions{}).Check(bytes.NewReader(log), nil, func(err error) {
			var ve *VerifyError
			if errors.As(err, &ve) {
				chain = append(chain, ve)
			}
		})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		_, verr := Verify(bytes.NewReader(log))
		var ve *VerifyError
		switch {
		case verr == nil && len(chain) > 0:
			t.Fatalf("Verify passes, Checker finds %v", chain[0])
		case verr != nil && !errors.As(verr, &ve):
			t.Fatalf("Verify: %v", verr)
		case verr != nil && len(chain) == 0:
			t.Fatalf("Verify finds %v, Checker nothing", verr)
		case verr != nil && (chain[0].Line != ve.Line || chain[0].Err != ve.Err):
			t.Fatalf("Verify finds %v first, Checker %v", ve, chain[0])
		}
		for i := 1; i < len(chain); i++ {
			if chain[i].Line < chain[i-1].Line {
				t.Fatalf("failures out of line order: %v after %v", chain[i], chain[i-1])
			}
		}
	})
}
