package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStockRefusalMessages: behind stock OpenSSH, git-shell's refusals say
// what was missing, to plain ssh, without telling whether a repository or
// ref the grants do not cover exists.
func TestStockRefusalMessages(t *testing.T) {
	s := startStock(t)
	reader := s.credential(t, "reader", s.caDir, "1h", "git:read:demo/app:*")
	feature := s.credential(t, "feature", s.caDir, "1h", "git:write:demo/app:refs/heads/feature/*")
	expired := s.credential(t, "expired", s.caDir, "")
	expired.cert = expired.key + "-cert.pub"
	signExpired(t, s.caDir, expired.key+".pub", expired.cert, "expired/req-1", "git:read:demo/app:*")

	work := t.TempDir()
	clone := filepath.Join(work, "c")
	out, err := s.git(reader, work, "clone", "-q", s.GitURL("demo/app"), clone)
	require.NoError(t, err, out)
	mustGit(t, clone, "commit", "-q", "--allow-empty", "-m", "work")

	tests := []struct {
		name string
		c    credential
		args []string
		want string
	}{
		{"a push with a read grant", reader, []string{"push", s.GitURL("demo/app"), "HEAD:refs/heads/feature/x"},
			"jitssh: not granted: a push needs write access on demo/app; your grant there gives read"},
		{"a repository no grant names", feature, []string{"ls-remote", s.GitURL("demo/other")},
			"jitssh: not granted: your certificate has no grant on demo/other"},
		{"a ref the grant hides", feature, []string{"push", s.GitURL("demo/app"), "HEAD:refs/heads/main"},
			"! [remote rejected] HEAD -> main (not in your grant: creating refs/heads/main needs write access on demo/app)"},
		// sshd refuses an expired certificate itself, before jitssh
		// runs: the client gets SSH's refusal only.
		{"an expired certificate", expired, []string{"ls-remote", s.GitURL("demo/app")},
			"Permission denied (publickey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := s.git(tt.c, clone, tt.args...)
			require.Error(t, err, out)
			assert.Contains(t, out, tt.want)
		})
	}

	// What exists and what does not read the same.
	for _, pair := range []struct {
		c                 credential
		verb, exists, not string
	}{
		{feature, "ls-remote", s.GitURL("demo/other"), s.GitURL("demo/nope")},
		{feature, "push", "HEAD:refs/heads/secret", "HEAD:refs/heads/nope"},
	} {
		args := func(x string) []string {
			if pair.verb == "push" {
				return []string{"push", s.GitURL("demo/app"), x}
			}
			return []string{pair.verb, x}
		}
		there, err := s.git(pair.c, clone, args(pair.exists)...)
		require.Error(t, err, there)
		missing, err := s.git(pair.c, clone, args(pair.not)...)
		require.Error(t, err, missing)
		nameOf := func(x string) string { return x[strings.LastIndexAny(x, "/:")+1:] }
		assert.Equal(t, there, strings.ReplaceAll(missing, nameOf(pair.not), nameOf(pair.exists)))
	}
}
