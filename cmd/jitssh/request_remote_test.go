package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gitIn runs git in dir and fails the test if it fails.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

// TestRequestFillsRepoAndBranchFromCheckout runs jitssh request inside a
// Git checkout without --repo or --branch: the daemon is asked (a dry run)
// for the repository the remote's URL names and the branch checked out.
func TestRequestFillsRepoAndBranchFromCheckout(t *testing.T) {
	needTool(t, "git")
	d := startInProcessDaemon(t, "")
	env := d.env("alice")

	for _, tt := range []struct {
		name     string
		remotes  map[string]string
		branch   string // "" leaves HEAD detached
		args     []string
		wantRepo string
		wantRef  string
		wantErr  string // on stderr, with exit status 2
	}{
		{name: "ssh URL with port and .git, as jitssh dev's",
			remotes: map[string]string{"origin": "ssh://git@127.0.0.1:2222/demo/app.git"}, branch: "feature/login",
			wantRepo: "demo/app", wantRef: "refs/heads/feature/login"},
		{name: "scp-like URL",
			remotes: map[string]string{"origin": "git@git.example.com:demo/tool.git"}, branch: "main",
			wantRepo: "demo/tool", wantRef: "refs/heads/main"},
		{name: "ssh URL without user or .git",
			remotes: map[string]string{"origin": "ssh://git.example.com/demo/app"}, branch: "main",
			wantRepo: "demo/app", wantRef: "refs/heads/main"},
		{name: "--remote picks another",
			remotes: map[string]string{"origin": "git@h:demo/app", "upstream": "git@h:demo/lib"}, branch: "main",
			args: []string{"--remote", "upstream"}, wantRepo: "demo/lib", wantRef: "refs/heads/main"},
		{name: "flags win",
			remotes: map[string]string{"origin": "git@h:demo/app"}, branch: "main",
			args: []string{"--repo", "demo/other", "--ref", "refs/heads/feature/*"}, wantRepo: "demo/other", wantRef: "refs/heads/feature/*"},
		{name: "--branch with the remote's repository",
			remotes: map[string]string{"origin": "git@h:demo/app"}, branch: "main",
			args: []string{"--branch", "feature/x"}, wantRepo: "demo/app", wantRef: "refs/heads/feature/x"},
		{name: "an https remote names no SSH repository",
			remotes: map[string]string{"origin": "https://git.example.com/demo/app.git"}, branch: "main",
			wantErr: "not an SSH URL"},
		{name: "no such remote",
			remotes: map[string]string{"origin": "git@h:demo/app"}, branch: "main",
			args: []string{"--remote", "nope"}, wantErr: "--repo"},
		{name: "a detached HEAD names no branch",
			remotes: map[string]string{"origin": "git@h:demo/app"},
			wantErr: "--branch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			gitIn(t, dir, "init", "-q", "-b", "main")
			gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "one")
			for name, url := range tt.remotes {
				gitIn(t, dir, "remote", "add", name, url)
			}
			if tt.branch == "" {
				gitIn(t, dir, "checkout", "-q", "--detach")
			} else if tt.branch != "main" {
				gitIn(t, dir, "checkout", "-q", "-b", tt.branch)
			}
			// From a subdirectory, as people do.
			sub := filepath.Join(dir, "src")
			require.NoError(t, os.Mkdir(sub, 0o755))

			cmd := exec.Command(jitsshBin, append([]string{"request", "--dry-run", "--json", "--access", "read", "--reason", "x"}, tt.args...)...)
			cmd.Dir = sub
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "JITSSH_") && !strings.HasPrefix(kv, "GIT_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			cmd.Env = append(cmd.Env, env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if tt.wantErr != "" {
				require.True(t, errors.As(err, &exit), "want failure; stdout %s", stdout.String())
				assert.Equal(t, exitUsage, exit.ExitCode())
				assert.Contains(t, stderr.String(), tt.wantErr)
				return
			}
			require.NoError(t, err, stderr.String())
			var r dryRunAnswer
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &r), stdout.String())
			assert.Equal(t, tt.wantRepo, r.Repo)
			assert.Equal(t, tt.wantRef, r.Ref)
		})
	}
}
