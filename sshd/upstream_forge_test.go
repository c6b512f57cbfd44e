package sshd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// forge is a Git host played by stock OpenSSH sshd, the way GitLab
// self-managed runs behind it: TrustedUserCAKeys is the forge's CA, and
// an AuthorizedPrincipalsFile maps each account's principal to a forced
// command, a git-shell-like wrapper that records who came and with which
// certificate, then runs plain git-upload-pack or git-receive-pack on a
// bare repository under root. Every repository has a pre-receive hook
// that records each invocation, so a test can tell that nothing arrived.
type forge struct {
	*opensshtest.Server
	ca      *ca.Authority
	root    string // the bare repositories
	dir     string
	logins  string // one line per session: account and command
	certs   string // the certificate each session presented
	hookLog string // every pre-receive invocation, with its updates
}

// startForge serves the repositories under root to accounts.
func startForge(t *testing.T, root string, accounts ...string) *forge {
	t.Helper()
	requireGit(t)
	dir := t.TempDir()
	fg := &forge{root: root, dir: dir, logins: filepath.Join(dir, "logins"), certs: filepath.Join(dir, "certs"), hookLog: filepath.Join(dir, "pre-receive.log")}
	require.NoError(t, os.Mkdir(fg.certs, 0o755))
	caDir := filepath.Join(dir, "forge-ca")
	_, err := ca.Init(caDir, ca.Ed25519)
	require.NoError(t, err)
	fg.ca, err = ca.Load(caDir)
	require.NoError(t, err)
	caPub := filepath.Join(dir, "ca.pub")
	writeFile(t, caPub, []byte(fg.ca.AuthorizedKey()+"\n"))

	shell := filepath.Join(dir, "forge-shell")
	script := `#!/bin/sh
account="$1"
cp "$SSH_USER_AUTH" "` + fg.certs + `/$account.$$"
printf '%s\t%s\n' "$account" "$SSH_ORIGINAL_COMMAND" >>"` + fg.logins + `"
case "$SSH_ORIGINAL_COMMAND" in
"git-upload-pack '"*"'") service=upload-pack ;;
"git-receive-pack '"*"'") service=receive-pack ;;
*) echo "forge: only Git here" >&2; exit 1 ;;
esac
path=${SSH_ORIGINAL_COMMAND#*\'}
path=${path%\'}
case "$path" in *..*) echo "forge: no such repository" >&2; exit 1 ;; esac
exec git "$service" "` + root + `/$path"
`
	require.NoError(t, os.WriteFile(shell, []byte(script), 0o755))
	var principalsFile strings.Builder
	for _, a := range accounts {
		fmt.Fprintf(&principalsFile, "restrict,command=\"%s %s\" %s\n", shell, a, a)
	}
	principals := filepath.Join(dir, "principals")
	writeFile(t, principals, []byte(principalsFile.String()))

	hook := "#!/bin/sh\necho invoked >>\"" + fg.hookLog + "\"\ncat >>\"" + fg.hookLog + "\"\n"
	err = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() || !strings.HasSuffix(path, ".git") {
			return err
		}
		require.NoError(t, os.WriteFile(filepath.Join(path, "hooks", "pre-receive"), []byte(hook), 0o755))
		git(t, path, "config", "uploadpack.allowFilter", "true")
		return filepath.SkipDir
	})
	require.NoError(t, err)

	fg.Server = opensshtest.Start(t, opensshtest.Config{
		TrustedUserCAKeys:        caPub,
		AuthorizedPrincipalsFile: principals,
		ExposeAuthInfo:           true,
	})
	return fg
}

// hostKey is the forge's pinned host key.
func (fg *forge) hostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(fg.HostKeyPub))
	require.NoError(t, err)
	return k
}

// upstream returns a proxy to the forge for people, in profile.
func (fg *forge) upstream(t *testing.T, profile ca.Profile, people map[string]string, mod func(*UpstreamOptions)) *Upstream {
	t.Helper()
	opts := UpstreamOptions{
		Address:   fg.Addr,
		User:      fg.User,
		HostKeys:  []ssh.PublicKey{fg.hostKey(t)},
		Authority: fg.ca,
		Profile:   profile,
		TTL:       time.Minute,
		Accounts:  people,
	}
	if mod != nil {
		mod(&opts)
	}
	u, err := NewUpstream(opts)
	require.NoError(t, err)
	return u
}

// loginsSoFar returns the forge's login lines.
func (fg *forge) loginsSoFar(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(fg.logins)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// hookRuns returns what the forge's pre-receive hooks recorded.
func (fg *forge) hookRuns(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(fg.hookLog)
	if os.IsNotExist(err) {
		return ""
	}
	require.NoError(t, err)
	return string(data)
}

// presented returns the certificates the forge was shown, as files.
func (fg *forge) presented(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(fg.certs)
	require.NoError(t, err)
	var files []string
	for _, e := range entries {
		files = append(files, filepath.Join(fg.certs, e.Name()))
	}
	sort.Strings(files)
	return files
}

// presentedCert reads the certificate from an SSH_USER_AUTH file.
func presentedCert(t *testing.T, file string) *ssh.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	line, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "publickey ")
	require.True(t, ok, "SSH_USER_AUTH: %s", data)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	require.NoError(t, err)
	cert, ok := key.(*ssh.Certificate)
	require.True(t, ok, "not a certificate: %s", line)
	return cert
}

// objects lists every object in a bare repository.
func objects(t *testing.T, bare string) string {
	t.Helper()
	return git(t, bare, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
}

// refsOf lists a bare repository's refs and their values.
func refsOf(t *testing.T, bare string) string {
	t.Helper()
	return git(t, bare, "for-each-ref", "--format=%(objectname) %(refname)")
}

// rawUpstreamPush speaks receive-pack's protocol to the proxy directly,
// with command (and its capabilities) and pack, and returns the report.
func rawUpstreamPush(t *testing.T, u *Upstream, d Decision, command string, pack []byte) (string, Result, error) {
	t.Helper()
	clientIn, serverOut := io.Pipe()
	serverIn, clientOut := io.Pipe()
	type served struct {
		res Result
		err error
	}
	done := make(chan served, 1)
	go func() {
		res, err := u.Serve(context.Background(), d, "", Stdio{In: serverIn, Out: serverOut, Err: io.Discard}, nil)
		serverOut.CloseWithError(err)
		done <- served{res, err}
	}()
	r := bufio.NewReader(clientIn)
	for {
		if _, err := readPkt(r); err != nil {
			require.ErrorIs(t, err, errFlush)
			break
		}
	}
	var req bytes.Buffer
	require.NoError(t, writePkt(&req, []byte(command+"\n")))
	require.NoError(t, writeFlush(&req))
	req.Write(pack)
	go func() {
		clientOut.Write(req.Bytes())
	}()
	var report strings.Builder
	for {
		p, err := readPkt(r)
		if err != nil {
			break
		}
		report.Write(p)
	}
	s := <-done
	clientOut.Close()
	return report.String(), s.res, s.err
}
