package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// devSession is a running `jitssh dev --dir DIR` driven the way a person
// would: by sourcing the env files it writes and running jitssh, git and
// ssh-agent from the OS.
type devSession struct {
	t   *testing.T
	dir string
	cmd *exec.Cmd
	out *syncBuffer
}

func startDev(t *testing.T, dir string) *devSession {
	t.Helper()
	return startDevWith(t, jitsshBin, dir)
}

// startDevWith runs jitssh dev from the binary bin.
func startDevWith(t *testing.T, bin, dir string) *devSession {
	t.Helper()
	needTool(t, "git")
	needTool(t, "ssh")
	d := &devSession{t: t, dir: dir, out: &syncBuffer{}}
	// A restart on the same dir: wait for this run's env files.
	os.Remove(filepath.Join(dir, "auditor.env"))
	d.cmd = exec.Command(bin, "dev", "--dir", dir)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, d.cmd.Start())
	t.Cleanup(func() { d.stop() })
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "auditor.env"))
		return err == nil
	}, 60*time.Second, 50*time.Millisecond, "jitssh dev did not write its env files: %s", d.out)
	// The env files come first; the story is printed just after them.
	require.Eventually(t, func() bool {
		return strings.Contains(d.out.String(), "Ctrl-C stops it")
	}, 10*time.Second, 20*time.Millisecond, "jitssh dev did not print its story: %s", d.out)
	return d
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (d *devSession) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		d.t.Error("jitssh dev did not stop on Ctrl-C")
	}
}

// as runs argv in a shell that sourced DIR/PERSON.env, with the given
// ssh-agent, in dir.
func (d *devSession) as(person, agent, dir string, argv ...string) (string, int) {
	script := ". " + filepath.Join(d.dir, person+".env") + ` && exec "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, argv...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(jitsshBin)+":"+os.Getenv("PATH"), "SSH_AUTH_SOCK="+agent,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

func (d *devSession) ok(person, agent, dir string, argv ...string) string {
	d.t.Helper()
	out, code := d.as(person, agent, dir, argv...)
	require.Equal(d.t, 0, code, "%s: %v:\n%s", person, argv, out)
	return out
}

func (d *devSession) requestID(person, agent string, args ...string) string {
	d.t.Helper()
	out := d.ok(person, agent, d.dir, append([]string{"jitssh", "request", "--no-wait", "--reason", "test"}, args...)...)
	id, _, _ := strings.Cut(strings.TrimSpace(out), "\n") // stderr follows: who can approve
	require.True(d.t, strings.HasPrefix(id, "req-"), "request printed %q", out)
	return id
}

func newAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	require.NoError(t, agent.Start())
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 5*time.Second, 20*time.Millisecond)
	return sock
}

// TestDevStory drives the whole story the README tells through jitssh dev.
func TestDevStory(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	d := startDev(t, dir)
	for _, p := range []string{"alice", "bob", "carol", "auditor"} {
		env, err := os.ReadFile(filepath.Join(dir, p+".env"))
		require.NoError(t, err)
		for _, v := range []string{"JITSSH_SERVER", "JITSSH_IDENTITY", "JITSSH_KNOWN_HOSTS", "GIT_SSH_COMMAND", "JITSSH_DEMO_REPO_URL"} {
			assert.Contains(t, string(env), "export "+v+"=", "%s.env", p)
		}
	}
	assert.DirExists(t, filepath.Join(dir, "repos", "demo", "app.git"))
	alice, bob := newAgent(t), newAgent(t)
	work := t.TempDir()

	// Read is approved automatically; the clone works.
	out := d.ok("alice", alice, work, "jitssh", "request", "--repo", "demo/app", "--ref", "*", "--access", "read", "--ttl", "10m", "--reason", "look around")
	assert.Contains(t, out, "issued")
	d.ok("alice", alice, work, "sh", "-c", `git clone -q "$JITSSH_DEMO_REPO_URL" app`)
	app := filepath.Join(work, "app")
	status := d.ok("alice", alice, work, "jitssh", "status", "--json")
	var live []liveCert
	require.NoError(t, json.Unmarshal([]byte(status), &live))
	require.Len(t, live, 1)
	assert.Equal(t, []string{"git:read:demo/app:*"}, live[0].Grants)

	// A bare repository dropped under DIR/repos is served under the same policy.
	dropped := filepath.Join(dir, "repos", "team", "tool.git")
	d.ok("alice", alice, work, "git", "init", "-q", "--bare", "-b", "main", dropped)
	d.ok("alice", alice, app, "git", "push", "-q", dropped, "HEAD:refs/heads/main")
	out = d.ok("alice", alice, work, "sh", "-c", `GIT_SSH_COMMAND=ssh exec jitssh request --repo team/tool --branch main --access read --ttl 1m --reason tool`)
	assert.Contains(t, out, "GIT_SSH_COMMAND='jitssh git-ssh'", "no hint to use git-ssh with two grants and plain ssh")
	d.ok("alice", alice, work, "sh", "-c", `git clone -q "$JITSSH_GIT_URL/team/tool.git" tool`)
	assert.FileExists(t, filepath.Join(work, "tool", "README.md"))

	// Grants on two repositories sit in the agent together, and git-ssh
	// (the env's GIT_SSH_COMMAND) offers each repository its own: the older
	// demo/app certificate for app, the newer team/tool one for tool.
	var both []liveCert
	require.NoError(t, json.Unmarshal([]byte(d.ok("alice", alice, work, "jitssh", "status", "--json")), &both))
	require.Len(t, both, 2)
	heads := d.ok("alice", alice, app, "git", "ls-remote", "--heads", "origin")
	assert.Contains(t, heads, "refs/heads/main")
	assert.Contains(t, heads, "refs/heads/feature/login")
	d.ok("alice", alice, filepath.Join(work, "tool"), "git", "fetch", "-q", "origin")

	// Write on a feature branch needs one approver, never oneself.
	id := d.requestID("alice", alice, "--repo", "demo/app", "--ref", "refs/heads/feature/*", "--access", "write", "--ttl", "10m")
	out, code := d.as("alice", alice, work, "jitssh", "approve", id)
	assert.NotEqual(t, 0, code, "self-approval: %s", out)
	assert.Contains(t, out, "own")
	listing := d.ok("bob", bob, work, "jitssh", "requests", "list")
	assert.Contains(t, listing, id)
	assert.Contains(t, listing, "waiting")
	d.ok("bob", bob, work, "jitssh", "approve", id, "--reason", "go ahead")
	d.ok("alice", alice, work, "jitssh", "request", "wait", id)
	featureID := id
	// Grants add up: the read grant on demo/app stays beside the write one.
	var three []liveCert
	require.NoError(t, json.Unmarshal([]byte(d.ok("alice", alice, work, "jitssh", "status", "--json")), &three))
	require.Len(t, three, 3)
	d.ok("alice", alice, app, "git", "checkout", "-q", "feature/login")
	d.ok("alice", alice, app, "git", "commit", "-q", "--allow-empty", "-m", "work")
	d.ok("alice", alice, app, "git", "push", "-q", "origin", "feature/login")
	out, code = d.as("alice", alice, app, "git", "push", "origin", "HEAD:main")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "[remote rejected]")

	// Two approvers on main, expiry, revocation and denial are the
	// end-to-end scripts' (testdata/script/story_*.txtar); this test keeps
	// to what only jitssh dev itself does: env files, dropped
	// repositories, grants on several repositories, restarts and clean-up.

	// The auditor can prove the record: chain, signatures, and every
	// certificate against an approved request.
	out = d.ok("auditor", newAgent(t), work, "jitssh", "audit", "verify")
	assert.Contains(t, out, "ok:")
	certs := d.ok("auditor", newAgent(t), work, "jitssh", "audit", "certs")
	assert.Contains(t, certs, "alice/"+featureID)

	// Everything is still there after a restart on the same directory.
	d.stop()
	d2 := startDev(t, dir)
	all := d2.ok("bob", bob, work, "jitssh", "requests", "list", "--json")
	assert.Contains(t, all, featureID)
	assert.Contains(t, all, `"approved"`)
	d2.stop()
	ps, _ := exec.Command("ps", "-eo", "args").CombinedOutput()
	assert.NotContains(t, string(ps), filepath.Join(dir, "agents"), "jitssh dev left an ssh-agent behind")
	socks, err := filepath.Glob(filepath.Join(dir, "agents", "*.sock"))
	require.NoError(t, err)
	assert.Empty(t, socks, "jitssh dev left agent sockets behind")
}

// TestDevPrintedStory runs, word for word, the story jitssh dev prints,
// taken from its output.
func TestDevPrintedStory(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	d := startDev(t, dir)
	printed := func() (string, bool) {
		_, rest, begun := strings.Cut(d.out.String(), storyBegin)
		story, _, ended := strings.Cut(rest, storyEnd)
		return story, begun && ended
	}
	require.Eventually(t, func() bool { _, ok := printed(); return ok }, 5*time.Second, 20*time.Millisecond,
		"jitssh dev printed no story:\n%s", d.out)
	story, _ := printed()
	for _, step := range []string{"jitssh approve \"$MAIN\"", "jitssh deny", "jitssh revoke", "jitssh release", "jitssh audit verify"} {
		assert.Contains(t, story, step)
	}
	// PATH has no jitssh: the env files bring DIR/bin/jitssh.
	cmd := exec.Command("sh", "-e", "-c", story)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin", "SSH_AUTH_SOCK="+newAgent(t),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.com",
		"GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the printed story failed:\n%s", out)
	// "set -e" does not stop at a "!" line that unexpectedly succeeds:
	// each refusal says so when it happens, and all four must.
	assert.Equal(t, 4, strings.Count(string(out), refused), "not every step that must be refused was:\n%s", out)
	assert.Contains(t, string(out), "! [remote rejected] HEAD -> main")
	assert.Contains(t, string(out), "denied by carol: not on main")
	assert.Contains(t, string(out), "fetched: the read grant still works")
	assert.Contains(t, string(out), "ok: ")
}

// TestDevKilledLeavesNoAgent: even killed outright, jitssh dev takes its
// ssh-agents, which hold grant keys, with it.
func TestDevKilledLeavesNoAgent(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	d := startDev(t, dir)
	require.NoError(t, d.cmd.Process.Kill())
	_ = d.cmd.Wait()
	agents := filepath.Join(dir, "agents")
	require.Eventually(t, func() bool {
		ps, _ := exec.Command("ps", "-eo", "args").CombinedOutput()
		return !strings.Contains(string(ps), agents)
	}, 10*time.Second, 50*time.Millisecond, "an ssh-agent outlived jitssh dev")
}

// sourcedEnv is the environment a shell has after sourcing DIR/PERSON.env
// on top of base.
func sourcedEnv(t *testing.T, dir, person string, base []string) []string {
	t.Helper()
	sh := exec.Command("sh", "-c", `. "$1" && env -0`, "sh", filepath.Join(dir, person+".env"))
	sh.Env = base
	out, err := sh.Output()
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

// TestDevSurvivesRestart: a shell that sourced an env file keeps working
// after jitssh dev restarts, even when the binary that first ran it (as
// `go run` would have) is gone: the env files name DIR/bin/jitssh.
func TestDevSurvivesRestart(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	first := filepath.Join(t.TempDir(), "jitssh")
	require.NoError(t, copyExecutable(jitsshBin, first))
	d := startDevWith(t, first, dir)
	base := []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "SSH_AUTH_SOCK=" + newAgent(t),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}
	env := sourcedEnv(t, dir, "alice", base)
	stable := filepath.Join(dir, "bin", "jitssh")
	for _, kv := range env {
		assert.NotContains(t, kv, first, "the env files name the binary jitssh dev ran from")
	}
	assert.Contains(t, env, "PATH="+filepath.Join(dir, "bin")+":/usr/bin:/bin")
	assert.Contains(t, strings.Join(env, "\n"), "GIT_SSH_COMMAND="+stable+" git-ssh ")
	d.stop()
	require.NoError(t, os.Remove(first))

	startDev(t, dir)
	script := `jitssh request --repo demo/app --ref '*' --access read --ttl 1m --reason again && git ls-remote "$JITSSH_DEMO_REPO_URL"`
	sh := exec.Command("sh", "-c", script)
	sh.Env, sh.Dir = env, t.TempDir()
	out, err := sh.CombinedOutput()
	require.NoError(t, err, "a shell sourced before the restart:\n%s", out)
	assert.Contains(t, string(out), "refs/heads/main")
}

// TestDevEndsWithItsParent: when the process that started jitssh dev is
// killed outright (as killing `go run` is), jitssh dev stops as it does on
// Ctrl-C: its agents end and their sockets go.
func TestDevEndsWithItsParent(t *testing.T) {
	needTool(t, "ssh-agent")
	needTool(t, "git")
	dir := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	parent := exec.Command("sh", "-c", `"$1" dev --dir "$2" >"$2.log" 2>&1 & echo $! >"$3"; wait`, "sh", jitsshBin, dir, pidFile)
	require.NoError(t, parent.Start())
	require.Eventually(t, func() bool { _, err := os.Stat(filepath.Join(dir, "auditor.env")); return err == nil },
		60*time.Second, 50*time.Millisecond, "jitssh dev did not start")
	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	socks, _ := filepath.Glob(filepath.Join(dir, "agents", "*.sock"))
	require.NotEmpty(t, socks, "jitssh dev runs no agents")
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	require.NoError(t, parent.Process.Kill())
	_ = parent.Wait()
	require.Eventually(t, func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return syscall.Kill(pid, 0) != nil // no /proc: gone when it cannot be signalled
		}
		_, after, _ := strings.Cut(string(stat), ") ")
		return strings.HasPrefix(after, "Z") || strings.HasPrefix(after, "X")
	}, 20*time.Second, 50*time.Millisecond, "jitssh dev outlived its parent")
	socks, err = filepath.Glob(filepath.Join(dir, "agents", "*.sock"))
	require.NoError(t, err)
	assert.Empty(t, socks, "jitssh dev did not stop cleanly: agent sockets left")
	ps, _ := exec.Command("ps", "-eo", "args").CombinedOutput()
	assert.NotContains(t, string(ps), filepath.Join(dir, "agents"), "an ssh-agent outlived jitssh dev")
	log, err := os.ReadFile(filepath.Join(dir, "jitssh.log"))
	require.NoError(t, err)
	assert.Contains(t, string(log), "the process that started it is gone")
}
