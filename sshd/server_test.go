package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// native is a running in-process git-server and the real OpenSSH client
// side that talks to it.
type native struct {
	*fixture
	t          *testing.T
	addr       *net.TCPAddr
	ca         *ca.Authority
	serials    atomic.Uint64
	revoked    *SerialSet
	verifier   atomic.Pointer[Verifier]
	srv        *Server
	events     *eventLog
	dir        string
	knownHosts string
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Record(_ context.Context, e Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	return nil
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not installed; set CI to make this a failure", name)
	}
	return p
}

func startNative(t *testing.T, mod func(*ServerOptions)) *native {
	t.Helper()
	requireTool(t, "ssh")
	requireTool(t, "ssh-agent")
	n := &native{fixture: newFixture(t), t: t, revoked: &SerialSet{}, events: &eventLog{}, dir: t.TempDir()}
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	n.ca, err = ca.New(caKey)
	require.NoError(t, err)
	n.verifier.Store(&Verifier{CAs: []ssh.PublicKey{n.ca.PublicKey()}, Revocations: []RevocationChecker{n.revoked}})

	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	repos, err := NewRepos(n.root)
	require.NoError(t, err)
	opts := ServerOptions{
		HostKeys: []ssh.Signer{hostKey},
		Verifier: n.verifier.Load,
		Repos:    repos,
		Git:      newTestGit(t),
		Recorder: n.events,
	}
	if mod != nil {
		mod(&opts)
	}
	n.srv, err = NewServer(opts)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n.addr = l.Addr().(*net.TCPAddr)
	go n.srv.Serve(l)
	t.Cleanup(func() { n.srv.Close() })
	n.knownHosts = filepath.Join(n.dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", n.addr.Port, ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	require.NoError(t, os.WriteFile(n.knownHosts, []byte(line), 0o600))
	return n
}

func (n *native) nextSerial() (uint64, error) { return n.serials.Add(1), nil }

type serialFunc func() (uint64, error)

func (f serialFunc) NextSerial() (uint64, error) { return f() }

// user is a key pair on disk, optionally with a certificate, and an
// ssh-agent holding them.
type user struct {
	keyFile  string
	certFile string
	cert     *ssh.Certificate
	agent    string
}

// newUser writes a fresh key and a certificate for grants with ttl.
func (n *native) newUser(name string, ttl time.Duration, grants ...string) *user {
	t := n.t
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	u := &user{keyFile: filepath.Join(n.dir, name)}
	block, err := ssh.MarshalPrivateKey(priv, name)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(u.keyFile, pem.EncodeToMemory(block), 0o600))
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(u.keyFile+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644))
	if len(grants) == 0 {
		return u
	}
	var gs []principals.Grant
	for _, g := range grants {
		pg, err := principals.Parse(g)
		require.NoError(t, err)
		gs = append(gs, pg)
	}
	u.cert, err = n.ca.Sign(ca.CertRequest{PublicKey: sshPub, KeyID: name + "/req-1", Grants: gs, TTL: ttl}, serialFunc(n.nextSerial))
	require.NoError(t, err)
	u.certFile = u.keyFile + "-cert.pub"
	require.NoError(t, os.WriteFile(u.certFile, ssh.MarshalAuthorizedKey(u.cert), 0o644))
	return u
}

// startAgent runs a real ssh-agent holding the user's key and certificate.
func (n *native) startAgent(u *user) {
	u.agent = n.startSharedAgent(u)
}

// startSharedAgent runs a real ssh-agent holding the keys and
// certificates of users, and returns its socket.
func (n *native) startSharedAgent(users ...*user) string {
	t := n.t
	dir, err := os.MkdirTemp("", "agent") // short: a socket path has a length limit
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	require.NoError(t, agent.Start())
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	// The socket exists a moment before the agent listens on it; ssh-add
	// -l exits 2 until it can connect.
	require.Eventually(t, func() bool {
		list := exec.Command("ssh-add", "-l")
		list.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		err := list.Run()
		var exit *exec.ExitError
		return err == nil || errors.As(err, &exit) && exit.ExitCode() == 1
	}, 10*time.Second, 20*time.Millisecond, "ssh-agent did not start")
	for _, u := range users {
		add := exec.Command("ssh-add", u.keyFile)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		out, err := add.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	return sock
}

// sshCommand is the GIT_SSH_COMMAND for u: host key pinned, keys only
// from u's agent.
func (n *native) sshCommand(u *user, extra ...string) string {
	args := []string{"ssh", "-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + n.knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentityAgent=" + u.agent, "-o", "IdentitiesOnly=no",
		"-o", "PreferredAuthentications=publickey", "-o", "LogLevel=ERROR"}
	args = append(args, extra...)
	return strings.Join(args, " ")
}

func (n *native) url(repo string) string {
	return fmt.Sprintf("ssh://git@127.0.0.1:%d/%s", n.addr.Port, repo)
}

// gitAs runs git as u against the native server.
func (n *native) gitAs(u *user, dir string, args ...string) (string, error) {
	return gitErr(dir, []string{"GIT_SSH_COMMAND=" + n.sshCommand(u), "SSH_AUTH_SOCK=" + u.agent}, args...)
}

func TestNativeGitOperations(t *testing.T) {
	n := startNative(t, nil)
	alice := n.newUser("alice", time.Hour, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	n.startAgent(alice)

	for _, proto := range []string{"0", "1", "2"} {
		t.Run("protocol v"+proto, func(t *testing.T) {
			dir := t.TempDir()
			out, err := n.gitAs(alice, dir, "-c", "protocol.version="+proto, "clone", "-q", n.url("demo/app"), "c")
			require.NoError(t, err, out)
			c := filepath.Join(dir, "c")
			assert.Equal(t, f(n).tips["main"], git(t, c, "rev-parse", "HEAD"))

			out, err = n.gitAs(alice, c, "-c", "protocol.version="+proto, "ls-remote", "origin")
			require.NoError(t, err, out)
			assert.Contains(t, out, "refs/heads/main")
			assert.Contains(t, out, "refs/heads/feature/a")
			assert.NotContains(t, out, "secret")

			out, err = n.gitAs(alice, c, "-c", "protocol.version="+proto, "fetch", "-q", "origin", f(n).tips["secret"])
			require.Error(t, err, out)

			git(t, c, "checkout", "-q", "-b", "feature/v"+proto)
			git(t, c, "commit", "-q", "--allow-empty", "-m", "work")
			out, err = n.gitAs(alice, c, "-c", "protocol.version="+proto, "push", "-q", "origin", "feature/v"+proto)
			require.NoError(t, err, out)
			out, err = n.gitAs(alice, c, "-c", "protocol.version="+proto, "push", "origin", "HEAD:refs/heads/main")
			require.Error(t, err)
			assert.Contains(t, out, "[remote rejected]")

			out, err = n.gitAs(alice, dir, "-c", "protocol.version="+proto, "archive", "--remote="+n.url("demo/app.git"), "main")
			require.NoError(t, err)
			assert.Contains(t, out, "main.txt")
			out, err = n.gitAs(alice, dir, "-c", "protocol.version="+proto, "archive", "--remote="+n.url("demo/app"), "secret")
			require.Error(t, err)
			assert.NotContains(t, out, "secret payload")
		})
	}

	// Every operation left an event with the serial and key ID.
	events := n.events.all()
	require.NotEmpty(t, events)
	var pushed bool
	for _, e := range events {
		assert.Equal(t, alice.cert.Serial, e.Serial)
		assert.Equal(t, "alice/req-1", e.KeyID)
		for _, u := range e.Updates {
			if u.Result == "updated" && strings.HasPrefix(u.Ref, "refs/heads/feature/v") {
				pushed = true
				assert.Equal(t, zeroOID, u.Old)
			}
		}
	}
	assert.True(t, pushed, "no push update recorded in %+v", events)
}

func f(n *native) *fixture { return n.fixture }

func TestNativeRefusesBadCredentials(t *testing.T) {
	n := startNative(t, nil)
	other, err := ca.New(mustEd25519(t))
	require.NoError(t, err)

	good := n.newUser("good", time.Hour, "git:read:demo/app:*")
	n.ca.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired := n.newUser("expired", time.Hour, "git:read:demo/app:*")
	n.ca.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	future := n.newUser("future", time.Hour, "git:read:demo/app:*")
	n.ca.Now = time.Now
	revoked := n.newUser("revoked", time.Hour, "git:read:demo/app:*")
	n.revoked.Revoke(n.ca.PublicKey(), revoked.cert.Serial)
	plain := n.newUser("plain", 0)
	otherRepo := n.newUser("otherrepo", time.Hour, "git:force:demo/other:*")
	wrongCA := n.newUser("wrongca", 0)
	wrongCA.cert = signWith(t, other, wrongCA, "git:read:demo/app:*")

	tests := []struct {
		name string
		u    *user
		ok   bool
	}{
		{"valid", good, true},
		{"expired", expired, false},
		{"not yet valid", future, false},
		{"revoked", revoked, false},
		{"plain key", plain, false},
		{"another CA", wrongCA, false},
		{"another repo", otherRepo, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n.startAgent(tt.u)
			out, err := n.gitAs(tt.u, t.TempDir(), "ls-remote", n.url("demo/app"))
			if tt.ok {
				require.NoError(t, err, out)
				assert.Contains(t, out, "refs/heads/secret")
				return
			}
			require.Error(t, err)
			assert.NotContains(t, out, "refs/heads")
		})
	}

	// Given a key file and its certificate, ssh offers the certificate and
	// then the plain key; the audit event names the certificate and why it
	// was refused.
	for name, reason := range map[string]string{"expired": "expired", "future": "not yet valid", "revoked": "revoked"} {
		u := map[string]*user{"expired": expired, "future": future, "revoked": revoked}[name]
		sshCmd := strings.Join([]string{"ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile=" + n.knownHosts,
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes",
			"-i", u.keyFile, "-o", "CertificateFile=" + u.certFile}, " ")
		before := len(n.events.all())
		out, err := gitErr(t.TempDir(), []string{"GIT_SSH_COMMAND=" + sshCmd}, "ls-remote", n.url("demo/app"))
		require.Error(t, err, out)
		assert.Eventually(t, func() bool {
			for _, e := range n.events.all()[before:] {
				if e.Command == "auth" && e.KeyID == name+"/req-1" && strings.Contains(e.Reason, reason) {
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, "no auth event names %s's certificate: %+v", name, n.events.all())
	}
}

// TestNativeRefusalMessages: the native server's refusals say what was
// missing, to plain ssh, without telling whether a repository or ref the
// grants do not cover exists.
func TestNativeRefusalMessages(t *testing.T) {
	n := startNative(t, nil)
	git(t, n.root, "init", "-q", "--bare", "demo/other.git")
	reader := n.newUser("reader", time.Hour, "git:read:demo/app:*")
	feature := n.newUser("feature", time.Hour, "git:write:demo/app:refs/heads/feature/*")
	n.startAgent(reader)
	n.startAgent(feature)
	work := t.TempDir()
	out, err := n.gitAs(reader, work, "clone", "-q", n.url("demo/app"), "c")
	require.NoError(t, err, out)
	clone := filepath.Join(work, "c")
	git(t, clone, "commit", "-q", "--allow-empty", "-m", "work")

	tests := []struct {
		name string
		u    *user
		args []string
		want string
	}{
		{"a push with a read grant", reader, []string{"push", n.url("demo/app"), "HEAD:refs/heads/feature/x"},
			"jitssh: not granted: a push needs write access on demo/app; your grant there gives read"},
		{"a repository no grant names", feature, []string{"ls-remote", n.url("demo/other")},
			"jitssh: not granted: your certificate has no grant on demo/other"},
		{"a ref the grant hides", feature, []string{"push", n.url("demo/app"), "HEAD:refs/heads/main"},
			"! [remote rejected] HEAD -> main (not in your grant: creating refs/heads/main needs write access on demo/app)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := n.gitAs(tt.u, clone, tt.args...)
			require.Error(t, err, out)
			assert.Contains(t, out, tt.want)
		})
	}

	// What exists and what does not read the same.
	there, err := n.gitAs(feature, clone, "ls-remote", n.url("demo/other"))
	require.Error(t, err, there)
	missing, err := n.gitAs(feature, clone, "ls-remote", n.url("demo/nope"))
	require.Error(t, err, missing)
	assert.Equal(t, there, strings.ReplaceAll(missing, "nope", "other"))
	there, err = n.gitAs(feature, clone, "push", n.url("demo/app"), "HEAD:refs/heads/secret")
	require.Error(t, err, there)
	missing, err = n.gitAs(feature, clone, "push", n.url("demo/app"), "HEAD:refs/heads/nope")
	require.Error(t, err, missing)
	assert.Equal(t, there, strings.ReplaceAll(missing, "nope", "secret"))
}

// TestNativeExplainsRefusedCertificate: a certificate of the trusted CA
// refused for its validity or revocation is told why, in a banner plain
// ssh prints; any other refused key is told nothing more than SSH says.
func TestNativeExplainsRefusedCertificate(t *testing.T) {
	n := startNative(t, nil)
	other, err := ca.New(mustEd25519(t))
	require.NoError(t, err)
	n.ca.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired := n.newUser("expired", time.Hour, "git:write:demo/app:refs/heads/feature/*")
	n.ca.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	future := n.newUser("future", time.Hour, "git:read:demo/app:*")
	n.ca.Now = time.Now
	revoked := n.newUser("revoked", time.Hour, "git:read:demo/app:*")
	n.revoked.Revoke(n.ca.PublicKey(), revoked.cert.Serial)
	wrongCA := n.newUser("wrongca", 0)
	wrongCA.cert = signWith(t, other, wrongCA, "git:read:demo/app:*")

	tests := []struct {
		name string
		u    *user
		want string // "": no jitssh banner at all
	}{
		{"expired", expired, fmt.Sprintf(`jitssh: not granted: certificate serial %d \(git:write:demo/app:refs/heads/feature/\*\) expired 1h0m\d+s ago, at \S+; request a new grant`, expired.cert.Serial)},
		{"not yet valid", future, fmt.Sprintf(`jitssh: refused: certificate serial %d \(git:read:demo/app:\*\) is valid only from \S+; is this machine's clock right\?`, future.cert.Serial)},
		{"revoked", revoked, fmt.Sprintf(`jitssh: refused: certificate serial %d \(git:read:demo/app:\*\) has been revoked`, revoked.cert.Serial)},
		{"another CA", wrongCA, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Plain ssh, as git runs it: LogLevel at its default.
			sshCmd := strings.Join([]string{"ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile=" + n.knownHosts,
				"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes",
				"-i", tt.u.keyFile, "-o", "CertificateFile=" + tt.u.certFile}, " ")
			out, err := gitErr(t.TempDir(), []string{"GIT_SSH_COMMAND=" + sshCmd}, "ls-remote", n.url("demo/app"))
			require.Error(t, err, out)
			assert.Contains(t, out, "Permission denied (publickey)")
			if tt.want == "" {
				assert.NotContains(t, out, "jitssh")
				return
			}
			assert.Regexp(t, tt.want, out)
			assert.Equal(t, 1, strings.Count(out, "jitssh:"), "one banner for one certificate: %s", out)
		})
	}
}

func mustEd25519(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

// signWith certifies u's existing key with authority a.
func signWith(t *testing.T, a *ca.Authority, u *user, grants ...string) *ssh.Certificate {
	t.Helper()
	data, err := os.ReadFile(u.keyFile + ".pub")
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	require.NoError(t, err)
	var gs []principals.Grant
	for _, g := range grants {
		pg, err := principals.Parse(g)
		require.NoError(t, err)
		gs = append(gs, pg)
	}
	cert, err := a.Sign(ca.CertRequest{PublicKey: pub, KeyID: "x/req", Grants: gs, TTL: time.Hour}, serialFunc(func() (uint64, error) { return 99, nil }))
	require.NoError(t, err)
	u.certFile = u.keyFile + "-cert.pub"
	require.NoError(t, os.WriteFile(u.certFile, ssh.MarshalAuthorizedKey(cert), 0o644))
	return cert
}

// TestNativeOfferedKeyIsNotIdentity has the real ssh client offer Bob's
// certificate, whose private key it does not hold, before Alice's own.
// The server accepts the offer (it is a valid certificate), but Alice
// signs with her key: the connection must carry Alice's grants only.
func TestNativeOfferedKeyIsNotIdentity(t *testing.T) {
	n := startNative(t, nil)
	git(t, n.root, "init", "-q", "--bare", "demo/bobs.git")
	alice := n.newUser("alice", time.Hour, "git:read:demo/app:refs/heads/main")
	bob := n.newUser("bob", time.Hour, "git:read:demo/bobs:*", "git:read:demo/app:*")
	n.startAgent(alice)
	// Only Bob's public half is on disk where ssh can offer it.
	bobPubOnly := filepath.Join(n.dir, "bob-offer")
	require.NoError(t, os.Rename(bob.keyFile+".pub", bobPubOnly+".pub"))
	require.NoError(t, os.Rename(bob.certFile, bobPubOnly+"-cert.pub"))
	require.NoError(t, os.Remove(bob.keyFile))

	ssh := n.sshCommand(alice, "-o", "IdentityFile="+bobPubOnly+".pub", "-o", "CertificateFile="+bobPubOnly+"-cert.pub", "-v")
	env := []string{"GIT_SSH_COMMAND=" + ssh, "SSH_AUTH_SOCK=" + alice.agent}
	out, err := gitErr(t.TempDir(), env, "ls-remote", n.url("demo/app"))
	require.NoError(t, err, out)
	assert.Contains(t, out, "Server accepts key: "+bobPubOnly, "the client did not offer Bob's certificate first:\n%s", out)
	assert.NotContains(t, out, "refs/heads/secret", "Bob's grants were applied")
	assert.Contains(t, out, "refs/heads/main")

	out, err = gitErr(t.TempDir(), env, "ls-remote", n.url("demo/bobs"))
	require.Error(t, err, "Alice reached Bob's repository: %s", out)
	for _, e := range n.events.all() {
		if e.Decision == Allow {
			assert.Equal(t, alice.cert.Serial, e.Serial)
		}
	}
}

func caRequest(t *testing.T, pub ssh.PublicKey, sourceAddress string, grants ...string) ca.CertRequest {
	t.Helper()
	var gs []principals.Grant
	for _, g := range grants {
		pg, err := principals.Parse(g)
		require.NoError(t, err)
		gs = append(gs, pg)
	}
	return ca.CertRequest{PublicKey: pub, KeyID: "bound/req-1", Grants: gs, TTL: time.Hour, SourceAddress: sourceAddress}
}

// TestNativeEndsSessionWhenGitStops: when git ends a fetch early with an
// error while the client still holds its side open, the session ends with
// it, rather than when the client gives up or the idle timeout fires.
func TestNativeEndsSessionWhenGitStops(t *testing.T) {
	n := startNative(t, func(o *ServerOptions) { o.IdleTimeout = 10 * time.Minute })
	alice := n.newUser("alice", time.Hour, "git:read:demo/app:*")
	n.startAgent(alice)
	for _, proto := range []string{"0", "2"} {
		t.Run("protocol v"+proto, func(t *testing.T) {
			dir := t.TempDir()
			git(t, dir, "init", "-q")
			// A guard against a hang, not a measure of speed.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "git", "-c", "protocol.version="+proto, "fetch", "--shallow-exclude=no-such-ref", n.url("demo/app"), "main")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
				"GIT_SSH_COMMAND="+n.sshCommand(alice), "SSH_AUTH_SOCK="+alice.agent)
			out, err := cmd.CombinedOutput()
			require.NoError(t, ctx.Err(), "the fetch hung after git refused it:\n%s", out)
			require.Error(t, err, "%s", out)
			assert.Contains(t, string(out), "deepen-not")
		})
	}
}

// TestNativeRecordsRefusalsGitMakes: git refuses a push to a ref hidden
// from the pusher before jitssh's per-ref hook sees it; the audit event
// records that refusal all the same, alone or beside a ref that landed.
func TestNativeRecordsRefusalsGitMakes(t *testing.T) {
	n := startNative(t, nil)
	bob := n.newUser("bob", time.Hour, "git:write:demo/app:refs/heads/feature/*")
	n.startAgent(bob)
	dir := t.TempDir()
	out, err := n.gitAs(bob, dir, "clone", "-q", n.url("demo/app"), "c")
	require.NoError(t, err, out)
	c := filepath.Join(dir, "c")
	git(t, c, "checkout", "-q", "feature/a")
	git(t, c, "commit", "-q", "--allow-empty", "-m", "work")

	refused := func(e Event) map[string]string {
		m := map[string]string{}
		for _, u := range e.Updates {
			m[u.Ref] = u.Result + ": " + u.Reason
		}
		return m
	}
	for _, tt := range []struct {
		name     string
		refspecs []string
		want     map[string]string
	}{
		// main is hidden from bob, so his client asks to create it.
		{"hidden ref alone", []string{"HEAD:refs/heads/main"},
			map[string]string{"refs/heads/main": "refused: not in your grant: creating refs/heads/main needs write access on demo/app"}},
		{"hidden ref beside a granted one", []string{"HEAD:refs/heads/feature/a", "HEAD:refs/tags/v1"},
			map[string]string{"refs/heads/feature/a": "updated: ", "refs/tags/v1": "refused: not in your grant: creating refs/tags/v1 needs write access on demo/app"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(n.events.all())
			out, err := n.gitAs(bob, c, append([]string{"push", "origin"}, tt.refspecs...)...)
			require.Error(t, err, out)
			assert.Contains(t, out, "[remote rejected]")
			// The gate records what it allows before git acts; the push's
			// own event, with what became of each ref, comes after it.
			final := func() (Event, bool) {
				events := n.events.all()
				for i := len(events) - 1; i >= before; i-- {
					if !slices.ContainsFunc(events[i].Updates, func(u RefUpdate) bool { return u.Result == "allowed" }) {
						return events[i], true
					}
				}
				return Event{}, false
			}
			require.Eventually(t, func() bool { _, ok := final(); return ok }, 10*time.Second, 20*time.Millisecond)
			e, _ := final()
			assert.Equal(t, tt.want, refused(e))
		})
	}
}

// revocationUnknownFor fails for one serial, as a revocation source that
// cannot answer does.
type revocationUnknownFor uint64

func (s revocationUnknownFor) Revoked(cert *ssh.Certificate) (bool, error) {
	if cert.Serial == uint64(s) {
		return false, errors.New("revocation list is stale")
	}
	return false, nil
}

// TestNativeRecordsEveryRefusedCertificate: one connection offers, from
// the real ssh client's agent, a certificate bound to another source
// address, one whose revocation status is unknown and one from an
// untrusted CA. Each is on the record under its own serial and key ID,
// with its own reason, whether or not a good certificate gets in after
// them.
func TestNativeRecordsEveryRefusedCertificate(t *testing.T) {
	n := startNative(t, nil)
	bound := n.newUser("bound", time.Hour)
	pub := userPub(t, bound)
	var err error
	bound.cert, err = n.ca.Sign(caRequest(t, pub, "127.0.0.2/32", "git:read:demo/app:*"), serialFunc(n.nextSerial))
	require.NoError(t, err)
	bound.certFile = bound.keyFile + "-cert.pub"
	require.NoError(t, os.WriteFile(bound.certFile, ssh.MarshalAuthorizedKey(bound.cert), 0o644))
	stale := n.newUser("stale", time.Hour, "git:read:demo/app:*")
	other, err := ca.New(mustEd25519(t))
	require.NoError(t, err)
	foreign := n.newUser("foreign", 0)
	foreign.cert = signWith(t, other, foreign, "git:read:demo/app:*")
	good := n.newUser("good", time.Hour, "git:read:demo/app:*")

	n.verifier.Store(&Verifier{CAs: []ssh.PublicKey{n.ca.PublicKey()}, Revocations: []RevocationChecker{n.revoked, revocationUnknownFor(stale.cert.Serial)}})
	want := map[string]string{
		"bound/req-1": "source address not allowed",
		"stale/req-1": "revocation status unknown",
		"x/req":       "signed by an untrusted CA",
	}
	for _, tt := range []struct {
		name  string
		users []*user
		ok    bool
	}{
		{"all refused", []*user{bound, stale, foreign}, false},
		{"refused, then one that gets in", []*user{bound, stale, foreign, good}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			agentUser := &user{agent: n.startSharedAgent(tt.users...)}
			before := len(n.events.all())
			out, err := n.gitAs(agentUser, t.TempDir(), "ls-remote", n.url("demo/app"))
			if tt.ok {
				require.NoError(t, err, out)
			} else {
				require.Error(t, err, out)
			}
			var got map[string]string
			require.Eventually(t, func() bool {
				got = map[string]string{}
				for _, e := range n.events.all()[before:] {
					if e.Command == "auth" {
						got[e.KeyID] = e.Reason
					}
				}
				return len(got) >= len(want)
			}, 10*time.Second, 20*time.Millisecond, "auth events: %+v", n.events.all()[before:])
			require.Len(t, got, len(want), "%+v", got)
			for keyID, reason := range want {
				assert.True(t, strings.HasPrefix(got[keyID], reason), "%s refused for %q, want %q", keyID, got[keyID], reason)
			}
		})
	}
}

func userPub(t *testing.T, u *user) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(u.keyFile + ".pub")
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	require.NoError(t, err)
	return pub
}
