package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// appendStory appends n requests' stories to the log at path: a request,
// an approval and an issue entry each, about request req-<i> and serial
// first+i, with repos and actors that repeat.
func appendStory(tb testing.TB, path string, first, n int) {
	tb.Helper()
	l, err := Open(path, Options{})
	require.NoError(tb, err)
	defer l.Close()
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("req-%06d", i)
		repo := fmt.Sprintf("org/repo%d", i%7)
		actor := fmt.Sprintf("user%d", i%5)
		_, err := l.Append(KindRequest, actor, map[string]any{"id": id, "repo": repo})
		require.NoError(tb, err)
		_, err = l.Append(KindApprove, "approver", map[string]any{"id": id, "repo": repo})
		require.NoError(tb, err)
		_, err = l.Append(KindIssue, "jitssh", map[string]any{"id": id, "repo": repo, "serial": i})
		require.NoError(tb, err)
	}
}

func seqsOf(entries []Entry) []uint64 {
	out := []uint64{}
	for _, e := range entries {
		out = append(out, e.Seq)
	}
	return out
}

// TestIndexFileAnswersAsIndex checks that the persistent index answers
// every kind of query as the in-memory index built from the same log
// does, across a log indexed in several catch-ups.
func TestIndexFileAnswersAsIndex(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	appendStory(t, logPath, 1, 40)
	ix, err := OpenIndexFile(filepath.Join(dir, "audit.log.index"), logPath)
	require.NoError(t, err)
	defer ix.Close()
	appendStory(t, logPath, 41, 200) // past a lines run and a posting chunk
	added, err := ix.CatchUp()
	require.NoError(t, err)
	assert.Equal(t, uint64(600), added)
	assert.Equal(t, uint64(720), ix.Len())

	f, err := os.Open(logPath)
	require.NoError(t, err)
	mem, err := BuildIndex(f)
	f.Close()
	require.NoError(t, err)

	all, err := ix.List(Filter{})
	require.NoError(t, err)
	mid := all[300].Time
	serial := uint64(77)
	for name, f := range map[string]Filter{
		"all":            {},
		"serial":         {Serial: &serial},
		"repo":           {Repo: "org/repo3"},
		"actor":          {Actor: "user2"},
		"kind":           {Kind: KindIssue},
		"kind and actor": {Kind: KindRequest, Actor: "user4"},
		"since":          {Since: mid},
		"until":          {Until: mid},
		"repo since":     {Repo: "org/repo1", Since: mid},
		"limit":          {Kind: KindApprove, Limit: 3},
		"unknown actor":  {Actor: "nobody"},
	} {
		got, err := ix.List(f)
		require.NoError(t, err, name)
		assert.Equal(t, seqsOf(mem.List(f)), seqsOf(got), name)
	}
	want := mem.List(Filter{Kind: KindRequest, Limit: 1})
	e, ok, err := ix.Get(want[0].Seq)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, want[0], e)

	story, err := ix.RequestEntries("req-000123")
	require.NoError(t, err)
	require.Len(t, story, 3)
	assert.Equal(t, []string{KindRequest, KindApprove, KindIssue}, []string{story[0].Kind, story[1].Kind, story[2].Kind})
}

// TestIndexFileReopensAndNoticesChanges reopens an index: it continues
// from where it stopped when the log only grew, and indexes the log again
// when it was cut short or its last indexed line rewritten; a line changed
// after it was indexed is an error when read, never an answer.
func TestIndexFileReopensAndNoticesChanges(t *testing.T) {
	build := func(t *testing.T) (string, string) {
		dir := t.TempDir()
		logPath, ixPath := filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.log.index")
		appendStory(t, logPath, 1, 100)
		ix, err := OpenIndexFile(ixPath, logPath)
		require.NoError(t, err)
		assert.Equal(t, "", ix.Rebuilt, "a new index is a build, not a rebuild")
		assert.Equal(t, uint64(300), ix.Added)
		require.NoError(t, ix.Close())
		return logPath, ixPath
	}
	lines := func(t *testing.T, path string) [][]byte {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		return bytes.SplitAfter(data, []byte("\n"))
	}

	t.Run("grown", func(t *testing.T) {
		logPath, ixPath := build(t)
		appendStory(t, logPath, 101, 5)
		ix, err := OpenIndexFile(ixPath, logPath)
		require.NoError(t, err)
		defer ix.Close()
		assert.Equal(t, "", ix.Rebuilt)
		assert.Equal(t, uint64(15), ix.Added, "only the new entries are read")
		got, err := ix.RequestEntries("req-000103")
		require.NoError(t, err)
		assert.Len(t, got, 3)
	})
	t.Run("truncated", func(t *testing.T) {
		logPath, ixPath := build(t)
		l := lines(t, logPath)
		require.NoError(t, os.WriteFile(logPath, bytes.Join(l[:150], nil), 0o600))
		ix, err := OpenIndexFile(ixPath, logPath)
		require.NoError(t, err)
		defer ix.Close()
		assert.Contains(t, ix.Rebuilt, "cut short")
		assert.Equal(t, uint64(150), ix.Len())
		got, err := ix.RequestEntries("req-000080")
		require.NoError(t, err)
		assert.Empty(t, got, "entries cut off the log are gone from the index")
	})
	t.Run("last line rewritten", func(t *testing.T) {
		logPath, ixPath := build(t)
		l := lines(t, logPath)
		last := len(l) - 2 // the final split is empty
		l[last] = bytes.Replace(l[last], []byte(`"serial":100`), []byte(`"serial":999`), 1)
		require.NoError(t, os.WriteFile(logPath, bytes.Join(l, nil), 0o600))
		ix, err := OpenIndexFile(ixPath, logPath)
		require.NoError(t, err)
		defer ix.Close()
		assert.Contains(t, ix.Rebuilt, "rewritten")
		serial := uint64(999)
		got, err := ix.List(Filter{Serial: &serial})
		require.NoError(t, err)
		assert.Len(t, got, 1, "the index is of the log as it is now")
	})
	t.Run("earlier line changed", func(t *testing.T) {
		logPath, ixPath := build(t)
		l := lines(t, logPath)
		l[10] = bytes.Replace(l[10], []byte("org/repo"), []byte("org/REPO"), 1) // same length
		require.NoError(t, os.WriteFile(logPath, bytes.Join(l, nil), 0o600))
		ix, err := OpenIndexFile(ixPath, logPath)
		require.NoError(t, err, "the last line still matches: opening is cheap")
		defer ix.Close()
		assert.Equal(t, "", ix.Rebuilt)
		_, _, err = ix.Get(11)
		require.ErrorIs(t, err, ErrIndexMismatch)
		_, err = ix.List(Filter{})
		require.ErrorIs(t, err, ErrIndexMismatch)
		_, err = ix.Rebuild()
		require.ErrorIs(t, err, ErrChain, "a rebuild verifies the chain and stops at the change")
	})
	t.Run("not an index of this log", func(t *testing.T) {
		logPath, ixPath := build(t)
		other := filepath.Join(t.TempDir(), "other.log")
		appendStory(t, other, 500, 120)
		ix, err := OpenIndexFile(ixPath, other)
		require.NoError(t, err)
		defer ix.Close()
		assert.NotEmpty(t, ix.Rebuilt)
		assert.Equal(t, uint64(360), ix.Len())
		_ = logPath
	})
}
