package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	require.NoError(t, err)
	var appended []Entry
	for i := range 3 {
		e, err := l.Append(KindGit, "alice", map[string]any{"serial": i, "repo": "demo/app"})
		require.NoError(t, err)
		appended = append(appended, e)
	}
	require.NoError(t, l.Close())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a new log is private to its owner")

	// A second Open continues the chain where the first left it.
	l = openLog(t, path, Options{})
	e, err := l.Append(KindRevoke, "bob", nil)
	require.NoError(t, err)
	appended = append(appended, e)

	sum, err := verifyFile(t, path)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), sum.Entries)
	lines := fileLines(t, path)
	require.Len(t, lines, 4)
	for i, line := range lines {
		onDisk, err := parseLine(line)
		require.NoError(t, err)
		assert.Equal(t, appended[i], onDisk, "Append returns exactly what it wrote")
		assert.Equal(t, uint64(i+1), onDisk.Seq)
	}
	assert.Equal(t, lineHash(lines[3]), sum.Head)
}

func TestAppendRefuses(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), "audit.log"), Options{})
	tests := []struct {
		name        string
		kind, actor string
		data        any
	}{
		{"empty kind", "", "alice", nil},
		{"checkpoint kind is reserved", KindCheckpoint, "alice", nil},
		{"repair kind is reserved", KindRepair, "", nil},
		{"data is a string", KindGit, "alice", "text"},
		{"data is an array", KindGit, "alice", []string{"a"}},
		{"data does not encode", KindGit, "alice", map[string]any{"f": func() {}}},
		{"entry too large", KindGit, "alice", map[string]string{"blob": strings.Repeat("x", MaxLineSize)}},
		{"actor too large", KindGit, strings.Repeat("a", MaxLineSize), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := l.Append(tt.kind, tt.actor, tt.data)
			require.ErrorIs(t, err, ErrInvalidEntry)
			assert.Zero(t, e)
		})
	}
	// Refused entries take no seq.
	e, err := l.Append(KindGit, "alice", nil)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), e.Seq)
	sum, err := verifyFile(t, l.Path())
	require.NoError(t, err)
	assert.Equal(t, uint64(1), sum.Entries)
}

func TestAppendAfterClose(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"), Options{})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "closing twice is harmless")
	_, err = l.Append(KindGit, "alice", nil)
	require.ErrorIs(t, err, ErrClosed)
}

// A crash in the middle of a write leaves a torn tail. Open must say so and
// where; with RepairTornTail it must move the bytes aside, record that, and
// carry on from the last good entry.
func TestOpenTornTail(t *testing.T) {
	tests := []struct {
		name string
		// torn returns the bytes a crash leaves after the good entries,
		// given the line that was being written, and how many of them are
		// torn (the rest being complete, good lines).
		torn        func(next []byte) []byte
		wantReason  string
		goodEntries uint64 // entries before the torn bytes
	}{
		{
			name:        "partial line",
			torn:        func(next []byte) []byte { return next[:30] },
			wantReason:  "no trailing newline",
			goodEntries: 5,
		},
		{
			name:        "complete line without its newline",
			torn:        func(next []byte) []byte { return next },
			wantReason:  "no trailing newline",
			goodEntries: 5,
		},
		{
			name:        "zeros where the data never reached the disk",
			torn:        func(next []byte) []byte { return make([]byte, len(next)+1) },
			wantReason:  "no trailing newline",
			goodEntries: 5,
		},
		{
			name:        "garbage line with a newline",
			torn:        func(next []byte) []byte { return append(append([]byte{}, next[:40]...), '\n') },
			wantReason:  "does not parse",
			goodEntries: 5,
		},
		{
			name:        "garbage line then a partial one",
			torn:        func(next []byte) []byte { return append(append(append([]byte{}, next[:40]...), '\n'), next[:10]...) },
			wantReason:  "does not parse",
			goodEntries: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l, err := Open(path, Options{})
			require.NoError(t, err)
			var last Entry
			for i := range 5 {
				last, err = l.Append(KindGit, "alice", map[string]int{"i": i})
				require.NoError(t, err)
			}
			require.NoError(t, l.Close())
			good, err := os.ReadFile(path)
			require.NoError(t, err)
			// The line a sixth append would have written.
			_, next, err := advance(last.Seq, fileLines(t, path)[4]).next(KindGit, "alice", json.RawMessage(`{"i":5}`), last.Time)
			require.NoError(t, err)
			torn := tt.torn(next)
			appendFile(t, path, torn)

			_, err = Open(path, Options{})
			require.ErrorIs(t, err, ErrTornTail)
			var te *TornTailError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, int64(len(good)), te.Offset, "where the torn bytes start")
			assert.Equal(t, int64(len(torn)), te.Bytes)
			assert.Equal(t, tt.goodEntries, te.AfterSeq)
			assert.Contains(t, te.Reason, tt.wantReason)
			assert.Contains(t, err.Error(), fmt.Sprintf("offset %d", len(good)), "the message says where")
			onDisk, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, append(good, torn...), onDisk, "a refused Open changes nothing")

			// Verify reports the same tail.
			_, err = verifyFile(t, path)
			require.ErrorIs(t, err, ErrTornTail)

			// With repair, the torn bytes go to a sidecar, and the log
			// continues from the last good entry.
			l = openLog(t, path, Options{RepairTornTail: true})
			rep := l.Repaired()
			require.NotNil(t, rep)
			assert.Equal(t, te.Offset, rep.Offset)
			assert.True(t, strings.HasPrefix(rep.Sidecar, path+".torn-"), "sidecar %s", rep.Sidecar)
			saved, err := os.ReadFile(rep.Sidecar)
			require.NoError(t, err)
			assert.Equal(t, torn, saved, "the sidecar holds exactly the torn bytes")

			e, err := l.Append(KindGit, "alice", map[string]int{"i": 5})
			require.NoError(t, err)
			assert.Equal(t, tt.goodEntries+2, e.Seq, "seq continues after the repair entry")
			sum, err := verifyFile(t, path)
			require.NoError(t, err)
			assert.Equal(t, e.Seq, sum.Entries)

			// The repair itself is on the record, naming the sidecar.
			lines := fileLines(t, path)
			repair, err := parseLine(lines[tt.goodEntries])
			require.NoError(t, err)
			assert.Equal(t, KindRepair, repair.Kind)
			var rec repairRecord
			require.NoError(t, json.Unmarshal(repair.Data, &rec))
			assert.Equal(t, repairRecord{Sidecar: rep.Sidecar, Offset: te.Offset, Bytes: te.Bytes, AfterSeq: te.AfterSeq, Reason: te.Reason}, rec)
		})
	}
}

// When more than the last line is damaged, it is not a torn tail, and
// nothing is repaired automatically.
func TestOpenDamagedTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, Options{})
	require.NoError(t, err)
	for range 3 {
		_, err := l.Append(KindGit, "alice", nil)
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	appendFile(t, path, []byte("garbage one\ngarbage two\n"))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	for _, repair := range []bool{false, true} {
		_, err = Open(path, Options{RepairTornTail: repair})
		require.ErrorIs(t, err, ErrSyntax)
		require.NotErrorIs(t, err, ErrTornTail)
	}
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

// A process that crashes mid-write leaves its torn line under the feet of
// the processes that keep the log open; their next append finds it.
func TestTornTailLeftByAnotherProcess(t *testing.T) {
	for _, repair := range []bool{false, true} {
		t.Run(fmt.Sprintf("repair=%v", repair), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l := openLog(t, path, Options{RepairTornTail: repair})
			_, err := l.Append(KindIssue, "jitssh", map[string]int{"serial": 1})
			require.NoError(t, err)
			appendFile(t, path, []byte(`{"seq":2,"time":"2025-`))

			e, err := l.Append(KindIssue, "jitssh", map[string]int{"serial": 2})
			if !repair {
				require.ErrorIs(t, err, ErrTornTail)
				// It keeps refusing rather than writing after the tear.
				_, err = l.Append(KindIssue, "jitssh", map[string]int{"serial": 2})
				require.ErrorIs(t, err, ErrTornTail)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, uint64(3), e.Seq, "after the repair entry")
			require.NotNil(t, l.Repaired())
			sum, err := verifyFile(t, path)
			require.NoError(t, err)
			assert.Equal(t, uint64(3), sum.Entries)
		})
	}
}

// TestAppendConcurrent: 50 goroutines, 100 appends each, one Log.
func TestAppendConcurrent(t *testing.T) {
	const goroutines, each = 50, 100
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})
	var wg sync.WaitGroup
	seqs := make([][]uint64, goroutines)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e, err := l.Append(KindGit, fmt.Sprintf("user%d", g), map[string]int{"i": i})
				if err != nil {
					errs <- err
					return
				}
				seqs[g] = append(seqs[g], e.Seq)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	sum, err := verifyFile(t, path)
	require.NoError(t, err)
	assert.Equal(t, uint64(goroutines*each), sum.Entries)

	seen := make(map[uint64]bool)
	for _, s := range seqs {
		for i, seq := range s {
			assert.False(t, seen[seq], "seq %d returned twice", seq)
			seen[seq] = true
			if i > 0 {
				assert.Greater(t, seq, s[i-1], "one goroutine's appends stay in order")
			}
		}
	}
	assert.Len(t, seen, goroutines*each)
	syncs := l.syncs.Load()
	t.Logf("%d appends, %d fsyncs: %.1f entries per fsync", goroutines*each, syncs, float64(goroutines*each)/float64(syncs))
	assert.Less(t, syncs, uint64(goroutines*each), "concurrent appends share fsyncs")
}

// TestAppendMultiProcess runs 8 copies of this test binary that append to
// one file at once, like git-shell processes started by sshd.
func TestAppendMultiProcess(t *testing.T) {
	const procs, each = 8, 100
	for _, mode := range []string{"open-once", "open-each"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			var wg sync.WaitGroup
			outs := make([]bytes.Buffer, procs)
			errs := make([]error, procs)
			for p := range procs {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(),
					envRole+"="+mode,
					envLog+"="+path,
					envCount+"="+fmt.Sprint(each),
					envActor+"="+fmt.Sprintf("proc%d", p),
				)
				cmd.Stdout, cmd.Stderr = &outs[p], &outs[p]
				require.NoError(t, cmd.Start())
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[p] = cmd.Wait()
				}()
			}
			wg.Wait()
			for p := range procs {
				require.NoError(t, errs[p], "process %d: %s", p, outs[p].String())
			}

			sum, err := verifyFile(t, path)
			require.NoError(t, err, "seq 1..n without gaps or duplicates, chain intact")
			assert.Equal(t, uint64(procs*each), sum.Entries)
			perActor := make(map[string]int)
			switches, last := 0, ""
			for _, line := range fileLines(t, path) {
				e, err := parseLine(line)
				require.NoError(t, err)
				perActor[e.Actor]++
				if e.Actor != last {
					switches, last = switches+1, e.Actor
				}
			}
			t.Logf("the file changed hands between processes %d times", switches-1)
			for p := range procs {
				assert.Equal(t, each, perActor[fmt.Sprintf("proc%d", p)], "every entry of process %d is there", p)
			}
		})
	}
}

// A snapshot holds whole entries only, and stays as it was while the log
// grows.
func TestOpenSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, Options{})
	for range 3 {
		_, err := l.Append(KindGit, "alice", nil)
		require.NoError(t, err)
	}
	s, err := OpenSnapshot(path)
	require.NoError(t, err)
	defer s.Close()
	for range 2 {
		_, err := l.Append(KindGit, "bob", nil)
		require.NoError(t, err)
	}
	sum, err := Verify(s)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), sum.Entries)

	_, err = OpenSnapshot(filepath.Join(t.TempDir(), "missing.log"))
	require.Error(t, err)
}
