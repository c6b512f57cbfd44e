package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

// TestMain lets git run this test binary as jitssh's hooks, and as the
// remote end of an ext:: transport, so tests drive real git through Serve
// without an SSH server in between.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "hook" {
		os.Exit(RunHook(os.Args[2], os.Args[3:], os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv("JITSSH_TEST_SERVE") == "1" {
		os.Exit(serveForTest())
	}
	os.Exit(runTests(m))
}

// hookCommand runs jitssh's hooks during pushes: the real jitssh binary
// when it can be built (as in production, and quicker to start than a
// race-instrumented test binary), else this test binary.
var hookCommand = []string{os.Args[0], "hook"}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jitssh-sshd-test-")
	if err == nil {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "jitssh")
		build := exec.Command("go", "build", "-o", bin, "github.com/jitssh/jitssh/cmd/jitssh")
		if out, err := build.CombinedOutput(); err == nil {
			hookCommand = []string{bin, "hook"}
		} else {
			os.Stderr.WriteString("building jitssh for hooks failed, using the test binary: " + string(out) + "\n")
		}
	}
	return m.Run()
}

// serveForTest is the ext:: remote: argv is "SERVICE PATH"; grants and root
// come from the environment the test set.
func serveForTest() int {
	grants, errs := principals.ParseSet(strings.Fields(os.Getenv("JITSSH_TEST_GRANTS")))
	if len(errs) > 0 {
		os.Stderr.WriteString(errs[0].Error() + "\n")
		return 1
	}
	repos, err := NewRepos(os.Getenv("JITSSH_TEST_ROOT"))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	id := &Identity{Cert: &ssh.Certificate{}, Grants: grants}
	d := Decide(repos, id, os.Args[1]+" '"+os.Args[2]+"'")
	if !d.Allowed() {
		os.Stderr.WriteString(ClientMessage(d.Err) + "\n")
		return 1
	}
	g, err := NewGit(GitOptions{HookCommand: strings.Fields(os.Getenv("JITSSH_TEST_HOOK"))})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	defer g.Close()
	_, err = g.Serve(context.Background(), d, os.Getenv("JITSSH_TEST_PROTOCOL"), Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, nil)
	if err != nil {
		return 1
	}
	return 0
}

func requireGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("git is required under CI: %v", err)
		}
		t.Skip("git not installed; set CI to make this a failure")
	}
}

// git runs git in dir and returns its trimmed stdout, failing the test on
// error.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitErr(dir, nil, args...)
	require.NoError(t, err, "git %s: %s", strings.Join(args, " "), out)
	return out
}

func gitErr(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z")
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// fixture is a repository root holding demo/app.git with three branches
// whose histories share only the first commit: main, feature/a and secret.
type fixture struct {
	root, bare, work string
	tips             map[string]string // branch -> commit
	secretBlob       string
	secretBlobSize   int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	requireGit(t)
	f := &fixture{root: t.TempDir(), work: t.TempDir(), tips: map[string]string{}}
	f.bare = filepath.Join(f.root, "demo", "app.git")
	require.NoError(t, os.MkdirAll(filepath.Dir(f.bare), 0o755))
	git(t, f.root, "init", "-q", "--bare", "-b", "main", f.bare)
	git(t, f.work, "init", "-q", "-b", "main")
	commit := func(file, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(f.work, file), []byte(content), 0o644))
		git(t, f.work, "add", file)
		git(t, f.work, "commit", "-q", "-m", file)
	}
	commit("README", "shared\n")
	commit("main.txt", "main only\n")
	f.tips["main"] = git(t, f.work, "rev-parse", "HEAD")
	git(t, f.work, "checkout", "-q", "-b", "feature/a", "HEAD~1")
	commit("feature.txt", "feature only\n")
	f.tips["feature/a"] = git(t, f.work, "rev-parse", "HEAD")
	git(t, f.work, "checkout", "-q", "-b", "secret", "HEAD~1")
	secret := "the secret payload\n"
	commit("secret.txt", secret)
	f.tips["secret"] = git(t, f.work, "rev-parse", "HEAD")
	f.secretBlob = git(t, f.work, "rev-parse", "HEAD:secret.txt")
	f.secretBlobSize = len(secret)
	git(t, f.work, "push", "-q", f.bare, "main", "feature/a", "secret")
	return f
}

// newCA returns a CA signer and its public key.
func newCA(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// certOpts shape a test certificate; the zero value is a valid grant for
// read on demo/app main, valid for an hour around now.
type certOpts struct {
	forever    bool // ValidBefore is CertTimeInfinity, as ssh-keygen -V always:forever
	principals []string
	certType   uint32
	after      time.Time
	before     time.Time
	critical   map[string]string
	serial     uint64
}

func signCert(t testing.TB, caSigner ssh.Signer, o certOpts) *ssh.Certificate {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	now := time.Now()
	if o.principals == nil {
		o.principals = []string{"git:read:demo/app:refs/heads/main"}
	}
	if o.certType == 0 {
		o.certType = ssh.UserCert
	}
	if o.after.IsZero() {
		o.after = now.Add(-time.Minute)
	}
	if o.before.IsZero() {
		o.before = now.Add(time.Hour)
	}
	if o.serial == 0 {
		o.serial = 42
	}
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          o.serial,
		CertType:        o.certType,
		KeyId:           "alice/req-1",
		ValidPrincipals: o.principals,
		ValidAfter:      uint64(o.after.Unix()),
		ValidBefore:     uint64(o.before.Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: o.critical},
	}
	if o.forever {
		cert.ValidAfter, cert.ValidBefore = 0, ssh.CertTimeInfinity
	}
	require.NoError(t, cert.SignCert(rand.Reader, caSigner))
	return cert
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

func renameFile(from, to string) error { return os.Rename(from, to) }

func gitCmd(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func osReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

func osWriteFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
