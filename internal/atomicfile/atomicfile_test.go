package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// entries lists dir's names, so a test sees temporary files left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFileReplacesWithModeAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial")
	require.NoError(t, os.WriteFile(path, []byte("old\n"), 0o644))

	require.NoError(t, WriteFile(path, []byte("new\n"), 0o600))

	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "new\n", string(got))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.Equal(t, []string{"serial"}, entries(t, dir))
}

func TestAbortKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "export.json")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))

	p, err := Create(path)
	require.NoError(t, err)
	_, err = p.Write([]byte("half of the new"))
	require.NoError(t, err)
	p.Abort()
	p.Abort() // twice is harmless, as a deferred Abort after one is

	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "old", string(got))
	require.Equal(t, []string{"export.json"}, entries(t, dir))
	require.Error(t, p.Commit(0o644), "a spent replacement must not commit")
}

func TestFailedRenameKeepsTheOldFileAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should go makes the rename fail after
	// the content was written and synced.
	path := filepath.Join(dir, "target")
	require.NoError(t, os.Mkdir(path, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(path, "inside"), []byte("x"), 0o644))

	err := WriteFile(path, []byte("new"), 0o644)
	require.ErrorContains(t, err, "write "+path)

	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, fi.IsDir(), "the old entry must be untouched")
	require.Equal(t, []string{"target"}, entries(t, dir))
}

func TestCreateInMissingDirectoryFails(t *testing.T) {
	_, err := Create(filepath.Join(t.TempDir(), "no-such-dir", "file"))
	require.ErrorContains(t, err, "no-such-dir")
}
