package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// gitServerProc is a running `jitssh git-server` binary.
type gitServerProc struct {
	cmd        *exec.Cmd
	addr       string
	metrics    string
	config     string
	knownHosts string
	log        *lockedBuffer
	dir, root  string
	// krl is the KRL file, and extra is appended to the configuration.
	krl, extra string
	// revocation, when set, is the revocation block's body in place of
	// the KRL file.
	revocation string
}

type lockedBuffer struct {
	ch  chan string
	all strings.Builder
}

func (s *gitServerProc) configText(cas []string, krl string) string {
	revocation := s.revocation
	if revocation == "" {
		revocation = "  krl_file: " + krl + "\n"
	}
	return fmt.Sprintf("listen: %s\nhost_key: %s\ntrusted_ca_keys: [%s]\nrepos: %s\nmetrics_listen: %s\nrevocation:\n%slimits:\n  shutdown_grace: 20s\n",
		s.addr, filepath.Join(s.dir, "host_key"), strings.Join(cas, ", "), s.root, s.metrics, revocation) + s.extra
}

func startGitServer(t *testing.T, cas []string, krl string) *gitServerProc {
	t.Helper()
	return startGitServerWith(t, cas, krl, "")
}

// startGitServerWith is startGitServer with extra configuration lines.
func startGitServerWith(t *testing.T, cas []string, krl, extra string) *gitServerProc {
	t.Helper()
	return startGitServerIn(t, t.TempDir(), cas, krl, extra)
}

// startGitServerIn is startGitServerWith with its files in dir, which may
// hold a host key made beforehand.
func startGitServerIn(t *testing.T, dir string, cas []string, krl, extra string) *gitServerProc {
	t.Helper()
	return launchGitServer(t, cas, &gitServerProc{dir: dir, krl: krl, extra: extra})
}

// launchGitServer starts the binary with s's dir (a new one when empty),
// krl, extra and revocation settings, serving a new repository root.
func launchGitServer(t *testing.T, cas []string, s *gitServerProc) *gitServerProc {
	t.Helper()
	if s.dir == "" {
		s.dir = t.TempDir()
	}
	return spawnGitServer(t, s, repoRoot(t), func(s *gitServerProc) string { return s.configText(cas, s.krl) })
}

// startGitServerConfig runs git-server with the configuration config
// writes, serving root.
func startGitServerConfig(t *testing.T, root, extra string, config func(s *gitServerProc) string) *gitServerProc {
	t.Helper()
	return spawnGitServer(t, &gitServerProc{dir: t.TempDir(), extra: extra}, root, config)
}

// spawnGitServer starts the binary for s, serving root, with the
// configuration config writes once s's addresses are chosen.
func spawnGitServer(t *testing.T, s *gitServerProc, root string, config func(s *gitServerProc) string) *gitServerProc {
	t.Helper()
	s.root, s.addr, s.metrics = root, freeAddr(t), freeAddr(t)
	s.log = &lockedBuffer{ch: make(chan string, 1000)}
	s.config = filepath.Join(s.dir, "git-server.yaml")
	require.NoError(t, os.WriteFile(s.config, []byte(config(s)), 0o600))
	s.cmd = exec.Command(jitsshBin, "git-server", "--config", s.config)
	stderr, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.log.ch <- sc.Text()
		}
		close(s.log.ch)
	}()
	s.waitLog(t, "git-server listening")
	hostKey, err := sshdHostPubFile(filepath.Join(s.dir, "host_key"))
	require.NoError(t, err)
	host, port, _ := net.SplitHostPort(s.addr)
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	require.NoError(t, os.WriteFile(s.knownHosts, []byte(fmt.Sprintf("[%s]:%s %s", host, port, hostKey)), 0o644))
	return s
}

func (s *gitServerProc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case line, ok := <-s.log.ch:
			if !ok {
				t.Fatalf("git-server exited before logging %q:\n%s", want, s.log.all.String())
			}
			s.log.all.WriteString(line + "\n")
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Fatalf("git-server did not log %q:\n%s", want, s.log.all.String())
		}
	}
}

func sshdHostPubFile(path string) (string, error) {
	out, err := exec.Command("ssh-keygen", "-y", "-f", path).Output()
	return string(out), err
}

func (s *gitServerProc) lsRemote(c credential) (string, error) {
	_, port, _ := net.SplitHostPort(s.addr)
	ssh := fmt.Sprintf("ssh -F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -i %s -o CertificateFile=%s", s.knownHosts, c.key, c.cert)
	return gitRun(s.dir, []string{"GIT_SSH_COMMAND=" + ssh}, "ls-remote", fmt.Sprintf("ssh://git@127.0.0.1:%s/demo/app", port))
}

// TestGitServerReloadAndRevocation runs the real binary: SIGHUP brings in a
// second CA, a bad reload keeps the running configuration, a KRL written
// while it runs takes effect without a restart, and SIGTERM lets a running
// operation finish.
func TestGitServerReloadAndRevocation(t *testing.T) {
	needTool(t, "ssh")
	dir := t.TempDir()
	st := &stockServer{dir: dir}
	ca1, ca2 := filepath.Join(dir, "ca1"), filepath.Join(dir, "ca2")
	for _, d := range []string{ca1, ca2} {
		r := runJitssh(t, nil, "ca", "init", "--dir", d)
		require.Equal(t, 0, r.code, r.stderr)
	}
	krl := filepath.Join(dir, "revoked.krl")
	r := runJitssh(t, nil, "ca", "krl", "--dir", ca1, "--out", krl)
	require.Equal(t, 0, r.code, r.stderr)
	one := st.credential(t, "one", ca1, "1h", "git:read:demo/app:*")
	two := st.credential(t, "two", ca2, "1h", "git:read:demo/app:*")
	pub1, pub2 := filepath.Join(ca1, ca.PublicKeyFile), filepath.Join(ca2, ca.PublicKeyFile)

	s := startGitServer(t, []string{pub1}, krl)
	out, err := s.lsRemote(one)
	require.NoError(t, err, out)
	_, err = s.lsRemote(two)
	require.Error(t, err, "a certificate of an untrusted CA got in")

	require.NoError(t, os.WriteFile(s.config, []byte(s.configText([]string{pub1, pub2}, krl)), 0o600))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "reloaded trusted CAs")
	out, err = s.lsRemote(two)
	require.NoError(t, err, "after reload: %s", out)

	require.NoError(t, os.WriteFile(s.config, []byte("listen: [broken"), 0o600))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	s.waitLog(t, "reload failed")
	out, err = s.lsRemote(two)
	require.NoError(t, err, "a bad reload dropped the running configuration: %s", out)

	r = runJitssh(t, nil, "ca", "krl", "--dir", ca1, "--serial", fmt.Sprint(one.serial), "--out", krl)
	require.Equal(t, 0, r.code, r.stderr)
	_, err = s.lsRemote(one)
	require.Error(t, err, "a revoked certificate still works")

	resp, err := http.Get("http://" + s.metrics + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), "jitssh_git_operations_total")
	assert.Contains(t, string(body), "jitssh_git_authorization_seconds")

	// A running operation finishes after SIGTERM; new ones are refused.
	_, port, _ := net.SplitHostPort(s.addr)
	hold := exec.Command("ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile="+s.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", two.key, "-o", "CertificateFile="+two.cert, "-p", port,
		"git@127.0.0.1", "git-upload-pack 'demo/app'")
	stdin, err := hold.StdinPipe()
	require.NoError(t, err)
	stdout, err := hold.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, hold.Start())
	_, err = bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, stdout)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	s.waitLog(t, "git-server stopping")
	_, err = s.lsRemote(two)
	require.Error(t, err, "a new connection was accepted after SIGTERM")
	// The held client now finishes its fetch negotiation: "0000" = no wants.
	_, err = io.WriteString(stdin, "0000")
	require.NoError(t, err)
	stdin.Close()
	require.NoError(t, hold.Wait(), "the running operation was cut by SIGTERM")
	require.NoError(t, s.cmd.Wait(), "git-server did not exit cleanly")
}

// TestGitServerFailsClosedOnAudit: with an audit log that takes no writes
// (/dev/full), git-server serves nothing, tells the client why, and logs
// the failed record.
func TestGitServerFailsClosedOnAudit(t *testing.T) {
	needTool(t, "ssh")
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	st := &stockServer{dir: dir}
	caDir := filepath.Join(dir, "ca")
	r := runJitssh(t, nil, "ca", "init", "--dir", caDir)
	require.Equal(t, 0, r.code, r.stderr)
	krl := filepath.Join(dir, "revoked.krl")
	r = runJitssh(t, nil, "ca", "krl", "--dir", caDir, "--out", krl)
	require.Equal(t, 0, r.code, r.stderr)
	dev := st.credential(t, "dev", caDir, "1h", "git:read:demo/app:*")
	s := startGitServerWith(t, []string{filepath.Join(caDir, ca.PublicKeyFile)}, krl, "audit_log: /dev/full\n")
	out, err := s.lsRemote(dev)
	require.Error(t, err, out)
	assert.NotContains(t, out, "refs/heads")
	assert.Contains(t, out, "audit log cannot be written")
	s.waitLog(t, "audit record failed")
}
