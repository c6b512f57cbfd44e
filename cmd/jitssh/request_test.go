package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/sshd"
)

func TestRequestOutDryRunAndRelease(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	agent := newAgent(t)
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+agent)

	r := runJitssh(t, env, "request", "allowed")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "read: read on demo/*, refs *; approved automatically")
	assert.Contains(t, r.stdout, "write: write on demo/*, refs refs/heads/*; needs 1 from approvers")

	r = runJitssh(t, env, "request", "--repo", "demo/app", "--branch", "main", "--access", "write", "--dry-run")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, `rule "write"`)
	assert.Contains(t, r.stdout, "needs approval: 1 from approvers")

	r = runJitssh(t, env, "request", "--repo", "other/app", "--ref", "*", "--access", "read", "--dry-run")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no rule")

	out := filepath.Join(t.TempDir(), "grant")
	r = runJitssh(t, env, "request", "--repo", "demo/app", "--ref", "*", "--access", "read", "--ttl", "10m", "--reason", "look", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	certData, err := os.ReadFile(out + "-cert.pub")
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certData)
	require.NoError(t, err)
	cert := pub.(*ssh.Certificate)
	assert.Equal(t, []string{"git:read:demo/app:*"}, cert.ValidPrincipals)
	keyData, err := os.ReadFile(out)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(keyData)
	require.NoError(t, err)
	assert.Equal(t, cert.Key.Marshal(), signer.PublicKey().Marshal(), "--out wrote a key that is not the certified one")

	r = runJitssh(t, env, "request", "--repo", "demo/app", "--ref", "*", "--access", "read", "--ttl", "10m", "--reason", "agent")
	require.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, env, "status", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var live []liveCert
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &live))
	require.Len(t, live, 1)
	left := time.Until(live[0].ValidUntil)
	assert.True(t, left > 9*time.Minute && left <= 10*time.Minute, "time left %v", left)
	r = runJitssh(t, env, "release")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "removed from ssh-agent")
	r = runJitssh(t, env, "status", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "[]\n", r.stdout)
	got, err := d.client(t, "alice").call(methodGet, apiRequest{ID: live[0].Request})
	require.NoError(t, err)
	assert.Equal(t, approvals.CertReleased, got.Request.CertState(time.Now()))
}

func TestRequestExitCodes(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	agent := newAgent(t)
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+agent)
	bob := d.client(t, "bob")
	// Outside a Git checkout: in one, --repo and --branch have defaults.
	noCheckout := append(slices.Clip(env), "GIT_DIR="+filepath.Join(t.TempDir(), "none"))

	for _, tt := range []struct {
		name string
		args []string
	}{
		{"no repo", []string{"request", "--branch", "main"}},
		{"no ref", []string{"request", "--repo", "demo/app"}},
		{"branch and ref", []string{"request", "--repo", "demo/app", "--branch", "main", "--ref", "*"}},
		{"bad ttl", []string{"request", "--repo", "demo/app", "--branch", "main", "--ttl", "soon"}},
		{"unknown flag", []string{"request", "--repo", "demo/app", "--branch", "main", "--nope"}},
		{"deny without reason", []string{"deny", "req-x"}},
		{"revoke without target", []string{"revoke", "--reason", "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runJitssh(t, noCheckout, tt.args...)
			assert.Equal(t, 2, r.code, "stderr: %s", r.stderr)
			assert.True(t, strings.HasPrefix(r.stderr, "jitssh: "), r.stderr)
		})
	}

	// Input only the daemon can judge (malformed, or outside the policy's
	// bounds) is bad usage too, with the daemon's reason.
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"malformed ref", []string{"--repo", "demo/app", "--ref", "refs/heads/a..b"}},
		{"repo outside", []string{"--repo", "../x", "--ref", "*"}},
		{"ttl below the minimum", []string{"--repo", "demo/app", "--ref", "*", "--ttl", "4s"}},
		{"ttl above the maximum", []string{"--repo", "demo/app", "--ref", "*", "--ttl", "9h"}},
		{"unknown access", []string{"--repo", "demo/app", "--ref", "*", "--access", "admin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runJitssh(t, env, append([]string{"request", "--reason", "x"}, tt.args...)...)
			assert.Equal(t, exitUsage, r.code, "stderr: %s", r.stderr)
			assert.True(t, strings.HasPrefix(r.stderr, "jitssh: bad request: "), r.stderr)
		})
	}

	// No agent and no --out: a clear error before anything is asked.
	r := runJitssh(t, append(d.env("alice"), "SSH_AUTH_SOCK="), "request", "--repo", "demo/app", "--ref", "*", "--access", "read")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no ssh-agent")

	// The requester sees who can approve.
	r = runJitssh(t, env, "request", "--no-wait", "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "can approve: bob")
	// The requester withdraws it; its kept key goes with it.
	cancelled := strings.TrimSpace(r.stdout)
	stash := filepath.Join(d.dir, "state", "alice", "pending", cancelled+".key")
	require.FileExists(t, stash)
	r = runJitssh(t, env, "request", "cancel", cancelled)
	require.Equal(t, 0, r.code, r.stderr)
	got, err := bob.call(methodGet, apiRequest{ID: cancelled})
	require.NoError(t, err)
	assert.Equal(t, approvals.StateCancelled, got.Request.State)
	assert.NoFileExists(t, stash)
	r = runJitssh(t, env, "request", "wait", cancelled)
	assert.Equal(t, exitExpired, r.code, "waiting on a cancelled request: %s", r.stderr)
	assert.Contains(t, r.stderr, "cancelled")
	// release on a request still pending withdraws it too.
	id := noWait(t, env, "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")
	r = runJitssh(t, env, "release", id)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "cancelled")
	got, err = bob.call(methodGet, apiRequest{ID: id})
	require.NoError(t, err)
	assert.Equal(t, approvals.StateCancelled, got.Request.State)

	// Denied: exit 3, and the kept key is gone.
	id = noWait(t, env, "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")
	deny(t, d, bob, id)
	r = runJitssh(t, env, "request", "wait", id)
	assert.Equal(t, exitDenied, r.code, r.stderr)
	assert.Contains(t, r.stderr, "denied")
	assert.NoFileExists(t, filepath.Join(d.dir, "state", "alice", "pending", id+".key"))

	// Ctrl-C while waiting cancels the request on the daemon: exit 4.
	cmd, _, stderr, pending := startWaitingRequest(t, bob, env)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	require.Error(t, err)
	assert.Equal(t, exitExpired, cmd.ProcessState.ExitCode(), stderr.String())
	got, err = bob.call(methodGet, apiRequest{ID: pending.ID})
	require.NoError(t, err)
	assert.Equal(t, approvals.StateCancelled, got.Request.State)
}

func noWait(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := runJitssh(t, env, append([]string{"request", "--no-wait"}, args...)...)
	require.Equal(t, 0, r.code, r.stderr)
	return strings.TrimSpace(r.stdout)
}

func deny(t *testing.T, d *inProcessDaemon, bob *apiClient, id string) {
	t.Helper()
	got, err := bob.call(methodGet, apiRequest{ID: id})
	require.NoError(t, err)
	req := apiRequest{ID: id, Reason: "no"}
	req.Signature, err = bob.sign("jitssh-deny@jitssh", decisionStatement(methodDeny, "bob", got.Request, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodDeny, req)
	require.NoError(t, err)
}

func TestCASignBreakGlassIsAudited(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	r := runJitssh(t, nil, "ca", "init", "--dir", caDir)
	require.Equal(t, 0, r.code, r.stderr)
	key := filepath.Join(dir, "user")
	require.NoError(t, ensureKey(key))
	log := filepath.Join(dir, "audit.log")
	r = runJitssh(t, nil, "ca", "sign", "--dir", caDir, "--pubkey", key+".pub", "--grant", "git:force:demo/app:*",
		"--ttl", "15m", "--key-id", "oncall/incident-7", "--audit-log", log)
	require.Equal(t, 0, r.code, r.stderr)
	r = runJitssh(t, []string{"JITSSH_AUDIT_LOG=" + log}, "audit", "list", "--kind", "ca.sign", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "oncall/incident-7")
	assert.Contains(t, r.stdout, "git:force:demo/app:*")

	// No audit entry, no certificate.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "notafile"), 0o700))
	r = runJitssh(t, nil, "ca", "sign", "--dir", caDir, "--pubkey", key+".pub", "--grant", "git:force:demo/app:*",
		"--ttl", "15m", "--key-id", "oncall/incident-8", "--audit-log", filepath.Join(dir, "notafile"))
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout, "a certificate was printed although the audit log refused the entry")
}

// TestRequestKeepsKeyWhenDaemonGoes: if the daemon goes away while a
// request waits, the request is still open there; the client keeps the
// key for `request wait` instead of throwing it away.
func TestRequestKeepsKeyWhenDaemonGoes(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t))
	cmd, _, stderr, pending := startWaitingRequest(t, bob, env)
	d.stop()
	err := cmd.Wait()
	require.Error(t, err)
	assert.Equal(t, exitError, cmd.ProcessState.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "jitssh request wait "+pending.ID)
	assert.FileExists(t, filepath.Join(d.dir, "state", "alice", "pending", pending.ID+".key"))
}

// TestRequestWaitsForApproval: a requester waiting in the foreground gets
// the certificate once an approver approves, in ssh-agent. Issuing records
// the approval a moment before the certificate, and waiting must not stop
// in between.
func TestRequestWaitsForApproval(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	sock := newAgent(t)
	cmd, stdout, stderr, pending := startWaitingRequest(t, bob, append(d.env("alice"), "SSH_AUTH_SOCK="+sock))
	req := apiRequest{ID: pending.ID, Reason: "ok"}
	var err error
	req.Signature, err = bob.sign("jitssh-approve@jitssh", decisionStatement(methodApprove, "bob", pending, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait(), "stdout: %s\nstderr: %s", stdout, stderr)
	assert.Contains(t, stdout.String(), "issued "+pending.ID)
	list := exec.Command("ssh-add", "-L")
	list.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	keys, err := list.Output()
	require.NoError(t, err)
	assert.Contains(t, string(keys), "-cert-v01@openssh.com")
}

// startWaitingRequest runs `jitssh request` for write on main, which needs
// an approver, and returns once the daemon lists it as pending.
func startWaitingRequest(t *testing.T, approver *apiClient, env []string) (cmd *exec.Cmd, stdout, stderr *syncBuffer, pending *approvals.Request) {
	t.Helper()
	cmd = exec.Command(jitsshBin, "request", "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")
	cmd.Env = append(os.Environ(), env...)
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := approver.call(methodList, apiRequest{States: []string{"pending"}})
		if err == nil && len(resp.Requests) > 0 {
			pending = resp.Requests[0]
			// The requester has its answer, and says it waits, only once
			// the request is on the audit log.
			return strings.Contains(stderr.String(), pending.ID) || strings.Contains(stdout.String(), pending.ID)
		}
		return false
	}, 10*time.Second, 50*time.Millisecond)
	return cmd, stdout, stderr, pending
}

// TestWaitingLineOnATerminal runs jitssh request on a 60-column terminal
// (a pty made by script(1)) until it is approved: every redraw of the
// waiting line fits, so none leaves a wrapped copy behind.
func TestWaitingLineOnATerminal(t *testing.T) {
	needTool(t, "ssh-agent")
	scriptProg := needTool(t, "script")
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	const cols = 60
	shell := fmt.Sprintf("stty cols %d rows 24; exec %s request --repo demo/app --branch main --access write --ttl 10m --reason 'a reason long enough'", cols, jitsshBin)
	cmd := exec.Command(scriptProg, "-q", "-e", "-c", shell, "/dev/null")
	cmd.Env = append(os.Environ(), append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t), "SHELL=/bin/sh", "TERM=xterm", "NO_COLOR=")...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	var pending *approvals.Request
	require.Eventually(t, func() bool {
		resp, err := bob.call(methodList, apiRequest{States: []string{"pending"}})
		if err != nil || len(resp.Requests) == 0 {
			return false
		}
		pending = resp.Requests[0]
		// Two frames drawn: at least one redraw over the first.
		return strings.Count(out.String(), pending.ID) >= 2
	}, 20*time.Second, 50*time.Millisecond, "no waiting line: %q", out)
	req := apiRequest{ID: pending.ID, Reason: "ok"}
	var err error
	req.Signature, err = bob.sign("jitssh-approve@jitssh", decisionStatement(methodApprove, "bob", pending, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait(), "%q", out)
	assert.Contains(t, out.String(), "issued "+pending.ID)
	redraws := 0
	for _, line := range strings.FieldsFunc(out.String(), func(r rune) bool { return r == '\r' || r == '\n' }) {
		line = strings.ReplaceAll(line, "\033[K", "")
		if strings.Contains(line, pending.ID) && !strings.HasPrefix(line, "issued") {
			redraws++
			assert.LessOrEqual(t, utf8.RuneCountInString(line), cols-1, "a redraw wider than the terminal: %q", line)
		}
	}
	assert.GreaterOrEqual(t, redraws, 2)
}

// TestRequestWaitInterruptedStaysPending: Ctrl-C on request wait only
// stops waiting. The request stays pending with its key kept, the exit
// status says so (5, not 4 "cancelled"), and a later wait picks it up.
func TestRequestWaitInterruptedStaysPending(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t))
	id := noWait(t, env, "--repo", "demo/app", "--branch", "main", "--access", "write", "--ttl", "10m", "--reason", "x")

	cmd := exec.Command(jitsshBin, "request", "wait", id)
	cmd.Env = append(os.Environ(), env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), id+" waiting for approval") },
		10*time.Second, 20*time.Millisecond, "request wait did not start waiting: %s", stderr)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	_ = cmd.Wait()
	assert.Equal(t, exitStillPending, cmd.ProcessState.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "still pending")
	assert.Contains(t, stderr.String(), "jitssh request wait "+id)
	assert.NotContains(t, stderr.String(), "cancelled")
	got, err := bob.call(methodGet, apiRequest{ID: id})
	require.NoError(t, err)
	assert.Equal(t, approvals.StatePending, got.Request.State)
	assert.FileExists(t, filepath.Join(d.dir, "state", "alice", "pending", id+".key"))

	// It is picked up where it was left.
	req := apiRequest{ID: id, Reason: "ok"}
	req.Signature, err = bob.sign("jitssh-approve@jitssh", decisionStatement(methodApprove, "bob", got.Request, req).Message())
	require.NoError(t, err)
	_, err = bob.call(methodApprove, req)
	require.NoError(t, err)
	r := runJitssh(t, env, "request", "wait", id)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "issued "+id)
}

// TestInstallInAgentKeepsEveryGrant checks, against a real ssh-agent,
// that grants add up: a newer, narrower and shorter grant on a repository
// does not push out the older one, and when it ends the older one is still
// there to use.
func TestInstallInAgentKeepsEveryGrant(t *testing.T) {
	needTool(t, "ssh-agent")
	sock := newAgent(t)
	t.Setenv("SSH_AUTH_SOCK", sock)
	ag, err := connectAgent()
	require.NoError(t, err)

	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	caSigner, err := ssh.NewSignerFromKey(caPriv)
	require.NoError(t, err)
	now := time.Now()
	add := func(keyID string, until time.Time, grants ...string) {
		t.Helper()
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		sshPub, err := ssh.NewPublicKey(pub)
		require.NoError(t, err)
		cert := testCert(keyID, now.Add(-time.Minute), until, grants...)
		cert.Key = sshPub
		require.NoError(t, cert.SignCert(rand.Reader, caSigner))
		require.NoError(t, installInAgent(ag, priv, cert))
	}
	held := func() []string {
		t.Helper()
		certs, err := jitsshCertsInAgent()
		require.NoError(t, err)
		var ids []string
		for _, c := range certs {
			ids = append(ids, c.KeyId)
		}
		return ids
	}
	fetch := sshd.Command{Service: sshd.UploadPack, Repo: "demo/app"}
	push := sshd.Command{Service: sshd.ReceivePack, Repo: "demo/app"}
	offered := func(cmd sshd.Command) string {
		t.Helper()
		c := certForCommand(agentCerts(), cmd, time.Now())
		require.NotNil(t, c)
		return c.KeyId
	}

	add("alice/req-read", now.Add(30*time.Minute), "git:read:demo/app:*")
	add("alice/req-tool", now.Add(30*time.Minute), "git:read:team/tool:*")
	// ssh-agent counts lifetimes in whole seconds: three seconds of
	// validity leave it at least one before it drops the key.
	add("alice/req-write", now.Add(3*time.Second), "git:write:demo/app:refs/heads/feature/*")
	assert.ElementsMatch(t, []string{"alice/req-read", "alice/req-tool", "alice/req-write"}, held(), "a newer grant on demo/app pushed out an older one")
	assert.Equal(t, "alice/req-write", offered(push))
	assert.Equal(t, "alice/req-read", offered(fetch))

	// The short grant leaves the agent with its own lifetime; the others
	// keep theirs.
	require.Eventually(t, func() bool { return !slices.Contains(held(), "alice/req-write") }, 10*time.Second, 100*time.Millisecond,
		"the short grant outlived its lifetime in the agent")
	assert.ElementsMatch(t, []string{"alice/req-read", "alice/req-tool"}, held())
	assert.Equal(t, "alice/req-read", offered(fetch))

	// A certificate that has ended is not added at all.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	past := time.Now().Add(-time.Minute)
	assert.ErrorContains(t, installInAgent(ag, priv, testCert("alice/req-old", past.Add(-time.Hour), past, "git:read:demo/app:*")), "already expired")
}
