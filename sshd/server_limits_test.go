package sshd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// holdUploadPack starts the real ssh client running git-upload-pack as u
// and leaves it waiting for the client's wants, as a clone is between its
// ref advertisement and its request. It returns a channel that receives
// when the ssh process exits.
func (n *native) holdUploadPack(u *user) (<-chan error, func()) {
	t := n.t
	args := strings.Fields(n.sshCommand(u))
	args = append(args, "-p", fmt.Sprint(n.addr.Port), "git@127.0.0.1", "git-upload-pack 'demo/app'")
	cmd := exec.Command(args[0], args[1:]...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Wait for the advertisement so the session is really running.
	_, err = bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, stdout)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return done, func() { stdin.Close(); cmd.Process.Kill() }
}

func TestNativeExpiryCutsOpenConnection(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = 100 * time.Millisecond })
	u := n.newUser("brief", 2*time.Second, "git:read:demo/app:*")
	n.startAgent(u)
	done, stop := n.holdUploadPack(u)
	defer stop()
	deadline := time.Unix(int64(u.cert.ValidBefore), 0)
	select {
	case <-done:
		assert.False(t, time.Now().Before(deadline.Add(-time.Second)), "cut before the certificate expired")
	case <-time.After(time.Until(deadline) + 5*time.Second):
		t.Fatal("connection still open after the certificate expired")
	}
}

func TestNativeRevocationCutsOpenConnection(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = 100 * time.Millisecond })
	u := n.newUser("revokee", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	done, stop := n.holdUploadPack(u)
	defer stop()
	select {
	case <-done:
		t.Fatal("connection closed before revocation")
	case <-time.After(300 * time.Millisecond):
	}
	n.revoked.Revoke(n.ca.PublicKey(), u.cert.Serial)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open 5s after revocation")
	}
	out, err := n.gitAs(u, t.TempDir(), "ls-remote", n.url("demo/app"))
	require.Error(t, err, out)
}

func TestNativeKeepExpiredLeavesConnection(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = 100 * time.Millisecond; o.KeepExpired = true })
	u := n.newUser("kept", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	done, stop := n.holdUploadPack(u)
	defer stop()
	n.revoked.Revoke(n.ca.PublicKey(), u.cert.Serial)
	select {
	case <-done:
		t.Fatal("connection closed although keep_expired_connections is set")
	case <-time.After(time.Second):
	}
}

func TestNativeSilentAndSlowClientsAreDropped(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.HandshakeTimeout = 500 * time.Millisecond })
	for _, tt := range []struct {
		name    string
		trickle bool
	}{{"silent", false}, {"slow", true}} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", n.addr.String())
			require.NoError(t, err)
			defer conn.Close()
			stopTrickle := make(chan struct{})
			defer close(stopTrickle)
			if tt.trickle {
				go func() {
					msg := []byte("SSH-2.0-slowpoke\r\n")
					for i := 0; ; i++ {
						select {
						case <-stopTrickle:
							return
						case <-time.After(100 * time.Millisecond):
						}
						if _, err := conn.Write(msg[i%len(msg) : i%len(msg)+1]); err != nil {
							return
						}
					}
				}()
			}
			start := time.Now()
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			_, err = io.Copy(io.Discard, conn)
			if tt.trickle && errors.Is(err, syscall.ECONNRESET) {
				// The server closed with a trickled byte unread, which
				// the kernel answers with a reset: closed all the same.
				err = nil
			}
			require.NoError(t, err, "server did not close the connection")
			assert.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

func TestNativeConnectionLimitPerSource(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.MaxPerSource = 2 })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", n.addr.String())
		require.NoError(t, err)
		defer c.Close()
		// The banner proves the server admitted it.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(line, "SSH-2.0-"))
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", n.addr.String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Empty(t, b, "third connection from one source was admitted")
	conns[0].Close()
	// The slot frees up once a connection closes.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", n.addr.String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "SSH-2.0-")
	}, 5*time.Second, 50*time.Millisecond)
}

func TestNativeSessionLimitPerConnection(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.MaxSessionsPerConn = 2 })
	u := n.newUser("many", time.Hour, "git:read:demo/app:*")
	client := n.dialGo(t, u)
	defer client.Close()
	var open []*ssh.Session
	for i := 0; i < 2; i++ {
		s, err := client.NewSession()
		require.NoError(t, err)
		defer s.Close()
		open = append(open, s)
	}
	_, err := client.NewSession()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "too many sessions")
	open[0].Close()
	require.Eventually(t, func() bool {
		s, err := client.NewSession()
		if err == nil {
			s.Close()
		}
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
}

// dialGo connects with x/crypto's client using u's certificate.
func (n *native) dialGo(t *testing.T, u *user) *ssh.Client {
	t.Helper()
	data, err := osReadFile(u.keyFile)
	require.NoError(t, err)
	key, err := ssh.ParsePrivateKey(data)
	require.NoError(t, err)
	signer, err := ssh.NewCertSigner(u.cert, key)
	require.NoError(t, err)
	client, err := ssh.Dial("tcp", n.addr.String(), &ssh.ClientConfig{
		User:            "git",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // loopback test server started above
		Timeout:         5 * time.Second,
	})
	require.NoError(t, err)
	return client
}

func TestNativeRefusesNonGitSessions(t *testing.T) {
	n := startNative(t, nil)
	u := n.newUser("shelly", time.Hour, "git:force:demo/app:*")
	n.startAgent(u)
	base := strings.Fields(n.sshCommand(u))
	base = append(base, "-p", fmt.Sprint(n.addr.Port))
	tests := []struct {
		name string
		args []string
	}{
		{"shell", []string{"-tt", "git@127.0.0.1"}},
		{"command", []string{"git@127.0.0.1", "id"}},
		{"command with git prefix", []string{"git@127.0.0.1", "git-upload-pack 'demo/app'; id"}},
		{"subsystem", []string{"-s", "git@127.0.0.1", "sftp"}},
		{"path escape", []string{"git@127.0.0.1", "git-upload-pack '../../etc'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string(nil), base...), tt.args...)
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			require.Error(t, err, string(out))
			assert.NotContains(t, string(out), "uid=")
		})
	}
	for _, e := range n.events.all() {
		assert.Equal(t, Deny, e.Decision, "%+v", e)
	}
}

func TestNativeIgnoresClientEnvironment(t *testing.T) {
	n := startNative(t, nil)
	u := n.newUser("envy", time.Hour, "git:read:demo/app:refs/heads/main")
	n.startAgent(u)
	// Were GIT_DIR or GIT_NAMESPACE honoured, the answer would change or
	// break; a bogus GIT_PROTOCOL is dropped rather than passed on.
	ssh := n.sshCommand(u, "-o", `SetEnv="GIT_DIR=/nonexistent GIT_NAMESPACE=x GIT_PROTOCOL=version=9;evil"`)
	out, err := gitErr(t.TempDir(), []string{"GIT_SSH_COMMAND=" + ssh}, "ls-remote", n.url("demo/app"))
	require.NoError(t, err, out)
	assert.Contains(t, out, "refs/heads/main")
	assert.Equal(t, "", gitProtocolEnv([]string{"GIT_DIR=/x"}))
	assert.Equal(t, "version=2", gitProtocolEnv([]string{"GIT_PROTOCOL=version=2"}))
}

// TestNativeConcurrentClones: 200 clones at once, more than the server
// shakes hands with at a time, all succeed and get the right history.
func TestNativeConcurrentClones(t *testing.T) {
	if testing.Short() {
		t.Skip("200 clones")
	}
	n := startNative(t, func(o *ServerOptions) {
		o.MaxPerSource, o.MaxConnections = 512, 512
		// The 400 client processes this test starts at once on a small
		// machine can take longer than the default to do their own half
		// of a handshake; the timeout is for clients that stall, which
		// these do not, and has tests of its own.
		o.HandshakeTimeout = 2 * time.Minute
	})
	u := n.newUser("crowd", time.Hour, "git:read:demo/app:refs/heads/main")
	n.startAgent(u)
	const clones = 200
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, clones)
	for i := 0; i < clones; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dir := filepath.Join(root, fmt.Sprint(i))
			out, err := n.gitAs(u, root, "clone", "-q", n.url("demo/app"), dir)
			if err != nil {
				errs <- fmt.Errorf("clone %d: %v: %s", i, err, out)
				return
			}
			head, err := gitErr(dir, nil, "rev-parse", "HEAD")
			if err != nil || head != n.tips["main"] {
				errs <- fmt.Errorf("clone %d: HEAD %q, %v", i, head, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	served := 0
	for _, e := range n.events.all() {
		if e.Stage == "" && e.Decision == Allow && e.Service == string(UploadPack) && e.Error == "" {
			served++
		}
	}
	assert.Equal(t, clones, served, "upload-packs recorded as served")
}

// TestNativeHandshakeSlots: beyond MaxHandshakesPerSource, a connection
// waits for a slot before its handshake begins (the server does not even
// send its banner), and its handshake timeout has not started; it gets
// its turn when a slot frees.
func TestNativeHandshakeSlots(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.MaxHandshakesPerSource = 1; o.HandshakeTimeout = time.Second })
	banner := func(c net.Conn, wait time.Duration) (string, error) {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
		return bufio.NewReader(c).ReadString('\n')
	}
	first, err := net.Dial("tcp", n.addr.String())
	require.NoError(t, err)
	defer first.Close()
	line, err := banner(first, 5*time.Second)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "SSH-2.0-"))

	second, err := net.Dial("tcp", n.addr.String())
	require.NoError(t, err)
	defer second.Close()
	_, err = banner(second, 300*time.Millisecond)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "the second handshake began while the first held the only slot: %v", err)
	first.Close()
	line, err = banner(second, 5*time.Second)
	require.NoError(t, err, "the waiting connection never got its turn")
	assert.True(t, strings.HasPrefix(line, "SSH-2.0-"))

	// Connections that waited longer than the handshake timeout still get
	// a whole handshake of their own: a real clone behind three silent
	// connections, each holding the slot for the timeout.
	for range 3 {
		c, err := net.Dial("tcp", n.addr.String())
		require.NoError(t, err)
		defer c.Close()
	}
	second.Close()
	u := n.newUser("patient", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	out, err := n.gitAs(u, t.TempDir(), "ls-remote", n.url("demo/app"))
	require.NoError(t, err, out)
	assert.Contains(t, out, "refs/heads/main")
}

// TestHandshakeEndsOnce: a handshake ends authenticated or timed out,
// never both: a key that signs just after the timeout fired does not get
// in, and a timeout just after authentication does not close the
// connection.
func TestHandshakeEndsOnce(t *testing.T) {
	newConn := func() (*trackedConn, net.Conn, *int) {
		server, client := net.Pipe()
		slots := 1
		tc := &trackedConn{Conn: server, release: func() {}, handshake: time.NewTimer(time.Hour)}
		tc.endHandshake = func() { slots-- }
		return tc, client, &slots
	}
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}

	tc, client, slots := newConn()
	require.True(t, tc.authenticated())
	tc.timeout()
	assert.Equal(t, 0, *slots)
	go tc.Conn.Write([]byte("x"))
	assert.False(t, closed(client), "a timeout after authentication closed the connection")

	tc, client, slots = newConn()
	tc.timeout()
	assert.True(t, closed(client), "the timeout did not close the connection")
	assert.False(t, tc.authenticated(), "a key got in after the timeout")
	assert.Equal(t, 0, *slots, "the slot was freed twice, or never")
}

// TestNativeSourceAddress binds a certificate to 127.0.0.2 and connects
// with the real ssh client from 127.0.0.2 and from 127.0.0.1.
func TestNativeSourceAddress(t *testing.T) {
	n := startNative(t, nil)
	u := n.newUser("bound", time.Hour)
	data, err := osReadFile(u.keyFile + ".pub")
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	require.NoError(t, err)
	u.cert, err = n.ca.Sign(caRequest(t, pub, "127.0.0.2/32", "git:read:demo/app:*"), serialFunc(n.nextSerial))
	require.NoError(t, err)
	u.certFile = u.keyFile + "-cert.pub"
	require.NoError(t, osWriteFile(u.certFile, ssh.MarshalAuthorizedKey(u.cert)))
	n.startAgent(u)
	for _, tt := range []struct {
		from string
		ok   bool
	}{{"127.0.0.2", true}, {"127.0.0.1", false}} {
		ssh := n.sshCommand(u, "-o", "BindAddress="+tt.from)
		out, err := gitErr(t.TempDir(), []string{"GIT_SSH_COMMAND=" + ssh}, "ls-remote", n.url("demo/app"))
		if tt.ok {
			require.NoError(t, err, "from %s: %s", tt.from, out)
			assert.Contains(t, out, "refs/heads/secret")
		} else {
			require.Error(t, err, "from %s: %s", tt.from, out)
		}
	}
}

// TestNativeIdleConnectionIsClosed holds an authenticated session with
// nothing moving; the idle timeout ends it.
func TestNativeIdleConnectionIsClosed(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.IdleTimeout = 700 * time.Millisecond })
	u := n.newUser("idler", time.Hour, "git:read:demo/app:*")
	n.startAgent(u)
	done, stop := n.holdUploadPack(u)
	defer stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle connection was still open after 5s with a 0.7s idle timeout")
	}
}

// TestNativeRecheckUsesVerifier: an open connection is checked again with
// the current Verifier's own rule, whatever it refuses the certificate
// for: a CA no longer trusted, or a validity window its clock has left.
func TestNativeRecheckUsesVerifier(t *testing.T) {
	for _, tt := range []struct {
		name   string
		reload func(n *native) *Verifier
	}{
		{"CA no longer trusted", func(n *native) *Verifier {
			return &Verifier{CAs: []ssh.PublicKey{newCA(t).PublicKey()}, Revocations: []RevocationChecker{n.revoked}}
		}},
		{"clock past the validity window", func(n *native) *Verifier {
			return &Verifier{CAs: []ssh.PublicKey{n.ca.PublicKey()}, Revocations: []RevocationChecker{n.revoked},
				Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := startNative(t, func(o *ServerOptions) { o.RecheckInterval = 50 * time.Millisecond })
			u := n.newUser("held", time.Hour, "git:read:demo/app:*")
			n.startAgent(u)
			done, stop := n.holdUploadPack(u)
			defer stop()
			n.verifier.Store(tt.reload(n))
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("connection still open 10s after the verifier stopped accepting its certificate")
			}
		})
	}
}
