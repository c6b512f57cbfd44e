package sshd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// forge is a Git host played by stock OpenSSH sshd (opensshtest.Forge),
// trusting a CA of its own.
type forge struct {
	*opensshtest.Forge
	ca *ca.Authority
}

// startForge serves the repositories under root to accounts, reading
// certificates as the host of profile does (host: the GitHub Enterprise
// Server name of the github profile's login extension).
func startForge(t *testing.T, root string, profile ca.Profile, host string, accounts ...string) *forge {
	t.Helper()
	requireGit(t)
	caDir := filepath.Join(t.TempDir(), "forge-ca")
	_, err := ca.Init(caDir, ca.Ed25519)
	require.NoError(t, err)
	authority, err := ca.Load(caDir)
	require.NoError(t, err)
	fg := opensshtest.StartForge(t, opensshtest.ForgeConfig{
		Profile: string(profile), Host: host, CAPublicKey: authority.AuthorizedKey(), Root: root, Accounts: accounts,
	})
	return &forge{Forge: fg, ca: authority}
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
func (fg *forge) loginsSoFar(t *testing.T) []string { return fg.Logins(t) }

// hookRuns returns what the forge's pre-receive hooks recorded.
func (fg *forge) hookRuns(t *testing.T) string { return fg.HookRuns(t) }

// presented returns the certificates the forge was shown, as files.
func (fg *forge) presented(t *testing.T) []string { return fg.Presented(t) }

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
