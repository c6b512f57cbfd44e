// Package opensshtest starts a real OpenSSH sshd on a loopback port for
// tests, so that jitssh's certificates, KRLs and principals commands are
// proven against the peer Git servers actually run.
//
// What it promises: every server listens only on 127.0.0.1, on a port
// chosen at run time; it has its own host key, pinned in a known_hosts file
// that the ssh commands from Server.SSH check strictly; it accepts public
// key authentication only, never from an authorized_keys file unless the
// Config names one, so a login succeeds only through what the test set up;
// and it is stopped, with every process it forked, when the test ends.
//
// Limits that come from sshd itself:
//   - sshd must be started by absolute path (it re-executes itself); Start
//     finds it in PATH, /usr/sbin or /usr/local/sbin.
//   - Started by a user other than root, sshd can log in only that user;
//     the ssh commands from Server.SSH log in as the current user. As root
//     it needs its privilege separation directory (/run/sshd on Debian).
//   - Run without PAM (UsePAM no), sshd refuses locked accounts (a password
//     field starting with "!"). An account whose password field is "*" or a
//     hash is fine.
//   - sshd runs an AuthorizedPrincipalsCommand only if the program and each
//     directory above it are owned by root and not writable by group or
//     others, so a program under /tmp (mode 1777) never runs. Build such
//     programs into SafeDir.
//
// When sshd, ssh or ssh-keygen is missing the test is skipped, unless the
// environment variable CI is set, where that is a failure.
package opensshtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config is the part of sshd_config a test decides. Paths must be
// absolute. Empty fields are left out of the configuration.
type Config struct {
	TrustedUserCAKeys               string
	RevokedKeys                     string
	AuthorizedPrincipalsFile        string
	AuthorizedPrincipalsCommand     string
	AuthorizedPrincipalsCommandUser string
	// AuthorizedKeysFile defaults to "none": plain keys get in nowhere
	// unless a test asks for it.
	AuthorizedKeysFile string
	ExposeAuthInfo     bool
	// ExtraConfig lines are appended to sshd_config as they are.
	ExtraConfig []string
}

// Server is a running sshd.
type Server struct {
	Addr           string // "127.0.0.1:PORT"
	Host           string // "127.0.0.1"
	Port           int
	User           string // the account Server.SSH logs in as: the current user
	HostKeyPub     string // the host key's authorized_keys line
	KnownHostsFile string // pins HostKeyPub for Addr
	Dir            string // sshd_config, host key, pid file and log live here
	ConfigFile     string
	LogFile        string // sshd's stderr at LogLevel VERBOSE

	cmd  *exec.Cmd
	exit chan struct{} // closed when sshd has exited
}

// startAttempts bounds retries when another process takes the chosen port
// between choosing it and sshd binding it.
const startAttempts = 5

// readyTimeout bounds how long sshd may take to accept connections.
const readyTimeout = 15 * time.Second

// Start writes a host key and an sshd_config into a temporary directory,
// runs sshd -D -e -f CONFIG and returns once it accepts connections. The
// server is stopped in t.Cleanup.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	sshd := SSHDPath(t)
	NeedTool(t, "ssh")

	u, err := user.Current()
	if err != nil {
		t.Fatalf("opensshtest: current user: %v", err)
	}
	dir := t.TempDir()
	hostPub := writeHostKey(t, dir)

	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("opensshtest: choose a port: %v", err)
		}
		s := &Server{
			Host:       "127.0.0.1",
			Port:       port,
			Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			User:       u.Username,
			HostKeyPub: hostPub,
			Dir:        dir,
			ConfigFile: filepath.Join(dir, "sshd_config"),
			LogFile:    filepath.Join(dir, "sshd.log"),
		}
		s.KnownHostsFile = filepath.Join(dir, "known_hosts")
		writeFile(t, s.KnownHostsFile, fmt.Sprintf("[127.0.0.1]:%d %s\n", port, hostPub), 0o644)
		writeFile(t, s.ConfigFile, s.config(cfg), 0o644)

		err = s.run(sshd)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
		if !strings.Contains(s.Log(), "Bind to port") && !strings.Contains(s.Log(), "Cannot bind") {
			break
		}
	}
	t.Fatalf("opensshtest: start sshd: %v", lastErr)
	return nil
}

// config renders sshd_config.
func (s *Server) config(cfg Config) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("ListenAddress %s", s.Addr)
	line("HostKey %s", filepath.Join(s.Dir, "host_ed25519"))
	line("PidFile %s", filepath.Join(s.Dir, "sshd.pid"))
	line("LogLevel VERBOSE")
	line("UsePAM no")
	line("StrictModes no")
	line("PubkeyAuthentication yes")
	line("PasswordAuthentication no")
	line("KbdInteractiveAuthentication no")
	line("HostbasedAuthentication no")
	line("UseDNS no")
	line("PrintMotd no")
	line("PrintLastLog no")
	line("X11Forwarding no")
	if os.Geteuid() == 0 {
		line("PermitRootLogin yes")
	}
	authKeys := cfg.AuthorizedKeysFile
	if authKeys == "" {
		authKeys = "none"
	}
	line("AuthorizedKeysFile %s", authKeys)
	opt := func(name, value string) {
		if value != "" {
			line("%s %s", name, value)
		}
	}
	opt("TrustedUserCAKeys", cfg.TrustedUserCAKeys)
	opt("RevokedKeys", cfg.RevokedKeys)
	opt("AuthorizedPrincipalsFile", cfg.AuthorizedPrincipalsFile)
	opt("AuthorizedPrincipalsCommand", cfg.AuthorizedPrincipalsCommand)
	opt("AuthorizedPrincipalsCommandUser", cfg.AuthorizedPrincipalsCommandUser)
	if cfg.ExposeAuthInfo {
		line("ExposeAuthInfo yes")
	}
	for _, l := range cfg.ExtraConfig {
		line("%s", l)
	}
	return b.String()
}

// run starts sshd and waits until it accepts connections or exits.
func (s *Server) run(sshd string) error {
	logf, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", s.ConfigFile)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group, so that stop reaches the per-connection
	// children too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", sshd, err)
	}
	s.exit = make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(s.exit)
	}()

	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exit:
			return fmt.Errorf("sshd exited (%v):\n%s", s.cmd.ProcessState, s.Log())
		default:
		}
		if s.answers() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("sshd did not accept connections on %s within %v:\n%s", s.Addr, readyTimeout, s.Log())
}

// answers reports whether an SSH server greets on the port. Checking the
// banner, not just the connect, tells sshd apart from anything else that
// may hold the port.
func (s *Server) answers() bool {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	banner, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(banner, "SSH-2.0-OpenSSH")
}

// stop ends sshd and the processes it forked.
func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exit
	}
	// Connection children may outlive the listener by a moment.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// Log returns what sshd has logged so far, for failure messages.
func (s *Server) Log() string {
	data, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no sshd log: %v)", err)
	}
	return string(data)
}

// SSHArgs returns the ssh options every client of this server needs: the
// port, the login user, the pinned host key, no configuration files, no
// prompts, and only the identities given. They come first on the command
// line, and for ssh the first value of an option wins, so callers cannot
// loosen them. Useful for GIT_SSH_COMMAND (see GitSSHCommand).
func (s *Server) SSHArgs() []string {
	return []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(s.Port),
		"-l", s.User,
		"-o", "UserKnownHostsFile=" + s.KnownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "PreferredAuthentications=publickey",
		"-o", "ConnectTimeout=10",
	}
}

// SSH returns an ssh command to this server, not yet started. args are more
// ssh options followed by the remote command, for example
//
//	s.SSH(t, "-i", key, "-o", "CertificateFile="+cert, "echo", "ok")
//
// (ssh reads options between the destination and the command.)
func (s *Server) SSH(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	ssh := NeedTool(t, "ssh")
	argv := append(s.SSHArgs(), s.Host)
	return exec.Command(ssh, append(argv, args...)...)
}

// GitSSHCommand returns a value for GIT_SSH_COMMAND that reaches this
// server with the given extra ssh options (such as -i KEY), and the URL of
// repo on it.
func (s *Server) GitSSHCommand(extra ...string) string {
	parts := append([]string{"ssh"}, s.SSHArgs()...)
	parts = append(parts, extra...)
	for i, p := range parts {
		parts[i] = shellQuote(p)
	}
	return strings.Join(parts, " ")
}

// GitURL is the ssh:// URL of repo on this server.
func (s *Server) GitURL(repo string) string {
	return fmt.Sprintf("ssh://%s@%s/%s", s.User, s.Addr, strings.TrimPrefix(repo, "/"))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=/.:,@+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SSHDPath returns the absolute path of sshd.
func SSHDPath(t testing.TB) string {
	t.Helper()
	candidates := []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"}
	if p, err := exec.LookPath("sshd"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		if abs, err := filepath.Abs(p); err == nil {
			if fi, err := os.Stat(abs); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return abs
			}
		}
	}
	missing(t, "sshd not found in PATH, /usr/sbin or /usr/local/sbin")
	return ""
}

// NeedTool returns the path of an external program, skipping the test when
// it is missing (failing it when CI is set).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found: %v", name, err))
	}
	return p
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("opensshtest: %s (CI is set, so this is a failure)", msg)
	}
	t.Skipf("opensshtest: %s", msg)
}

// writeHostKey writes a fresh ed25519 host key into dir and returns its
// public line.
func writeHostKey(t testing.TB, dir string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("opensshtest: host key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "opensshtest host key")
	if err != nil {
		t.Fatalf("opensshtest: host key: %v", err)
	}
	writeFile(t, filepath.Join(dir, "host_ed25519"), string(pem.EncodeToMemory(block)), 0o600)
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatalf("opensshtest: host key: %v", err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func writeFile(t testing.TB, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatalf("opensshtest: %v", err)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("not a TCP address")
	}
	return addr.Port, nil
}
