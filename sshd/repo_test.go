package sshd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	f := newFixture(t)
	outside := t.TempDir()
	git(t, outside, "init", "-q", "--bare", "escape.git")
	require.NoError(t, os.Symlink(filepath.Join(outside, "escape.git"), filepath.Join(f.root, "demo", "escape.git")))
	require.NoError(t, os.Symlink(f.bare, filepath.Join(f.root, "demo", "alias.git")))
	require.NoError(t, os.MkdirAll(filepath.Join(f.root, "demo", "notbare.git"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(f.root, "out")))
	git(t, outside, "init", "-q", "--bare", "viadir.git")

	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	tests := []struct {
		name string
		want string // "" = not found
	}{
		{"demo/app", f.bare},
		{"demo/alias", f.bare}, // a link inside the root is fine
		{"demo/escape", ""},
		{"out/viadir", ""},
		{"demo/notbare", ""},
		{"demo/missing", ""},
		{"demo", ""},
	}
	for _, tt := range tests {
		got, err := repos.Resolve(tt.name)
		if tt.want == "" {
			require.ErrorIs(t, err, ErrRepoNotFound, "Resolve(%q) = %q", tt.name, got)
			continue
		}
		require.NoError(t, err, "Resolve(%q)", tt.name)
		want, _ := filepath.EvalSymlinks(tt.want)
		require.Equal(t, want, got, "Resolve(%q)", tt.name)
	}
	_, err = NewRepos(filepath.Join(f.root, "nope"))
	require.Error(t, err)
}
