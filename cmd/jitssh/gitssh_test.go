package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

func TestRemoteGitCommand(t *testing.T) {
	up := sshd.Command{Service: sshd.UploadPack, Repo: "demo/app"}
	recv := sshd.Command{Service: sshd.ReceivePack, Repo: "demo/app"}
	tests := []struct {
		name string
		args []string
		want sshd.Command
		ok   bool
	}{
		{"what git runs for v2", []string{"-o", "SendEnv=GIT_PROTOCOL", "-p", "2222", "git@h", "git-upload-pack '/demo/app.git'"}, up, true},
		{"push", []string{"-p", "22", "git@h", "git-receive-pack 'demo/app'"}, recv, true},
		{"user options first", []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=/k", "-oBatchMode=yes", "-p22", "git@h", "git-upload-pack 'demo/app'"}, up, true},
		{"clustered flags with an argument", []string{"-4vp", "22", "h", "git-receive-pack 'demo/app.git'"}, recv, true},
		{"options after the destination", []string{"h", "-p", "22", "-v", "git-upload-pack 'demo/app'"}, up, true},
		{"command in several words", []string{"h", "git-upload-pack", "'demo/app'"}, up, true},
		{"double dash", []string{"-p", "22", "--", "h", "git-upload-pack 'demo/app'"}, up, true},
		{"archive", []string{"h", "git-upload-archive '/demo/app.git'"}, sshd.Command{Service: sshd.UploadArchive, Repo: "demo/app"}, true},
		{"no command: git's -G probe", []string{"-G", "-p", "22", "h"}, sshd.Command{}, false},
		{"no destination", []string{"-p", "22"}, sshd.Command{}, false},
		{"option argument is not the destination", []string{"-l", "git-upload-pack 'demo/app'", "h"}, sshd.Command{}, false},
		{"not a git command", []string{"h", "ls"}, sshd.Command{}, false},
		{"a git command with more after it", []string{"h", "git-upload-pack 'demo/app'; id"}, sshd.Command{}, false},
		{"path tricks", []string{"h", "git-upload-pack '../demo/app'"}, sshd.Command{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := remoteGitCommand(tt.args)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

// testCert is an unsigned certificate: certForCommand only reads
// principals and validity.
func testCert(id string, after, before time.Time, grants ...string) *ssh.Certificate {
	return &ssh.Certificate{CertType: ssh.UserCert, KeyId: id, ValidPrincipals: grants,
		ValidAfter: uint64(after.Unix()), ValidBefore: uint64(before.Unix())}
}

func TestCertForCommand(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old, newer, later := now.Add(-time.Hour), now.Add(-time.Minute), now.Add(time.Hour)
	readAll := testCert("read-all", old, later, "git:read:demo/app:*")
	readMain := testCert("read-main", newer, later, "git:read:demo/app:refs/heads/main")
	writeFeature := testCert("write-feature", newer, later, "git:write:demo/app:refs/heads/feature/*")
	forceOld := testCert("force-old", old, later, "git:force:demo/app:refs/heads/main")
	tool := testCert("tool", newer, later, "git:write:team/tool:*")
	expired := testCert("expired", old, now, "git:write:demo/app:*")
	future := testCert("future", later, later.Add(time.Hour), "git:write:demo/app:*")
	multi := testCert("multi", old, later, "git:read:team/tool:*", "git:write:demo/app:refs/heads/main")
	// Two grants issued in the same second: the later serial is newer.
	sameSecondA := testCert("same-second-a", newer, later, "git:write:demo/app:refs/heads/feature/*")
	sameSecondA.Serial = 7
	sameSecondB := testCert("same-second-b", newer, later, "git:write:demo/app:refs/heads/main")
	sameSecondB.Serial = 8

	fetch := sshd.Command{Service: sshd.UploadPack, Repo: "demo/app"}
	push := sshd.Command{Service: sshd.ReceivePack, Repo: "demo/app"}
	tests := []struct {
		name  string
		certs []*ssh.Certificate
		cmd   sshd.Command
		want  string // key ID, "" for none
	}{
		{"the only one", []*ssh.Certificate{readAll}, fetch, "read-all"},
		{"read: a '*' grant before a newer narrow one", []*ssh.Certificate{readMain, readAll, writeFeature}, fetch, "read-all"},
		{"read: newest when none is '*'", []*ssh.Certificate{forceOld, readMain}, fetch, "read-main"},
		{"push: only a writer will do", []*ssh.Certificate{readAll, writeFeature, readMain}, push, "write-feature"},
		{"push: newest writer", []*ssh.Certificate{forceOld, writeFeature}, push, "write-feature"},
		{"push: the same second, the later serial", []*ssh.Certificate{sameSecondB, sameSecondA}, push, "same-second-b"},
		{"push: the same second, the later serial, either order", []*ssh.Certificate{sameSecondA, sameSecondB}, push, "same-second-b"},
		{"push with only a reader: the reader, so the server says why", []*ssh.Certificate{tool, readMain}, push, "read-main"},
		{"another repository only", []*ssh.Certificate{tool}, fetch, ""},
		{"expired and not yet valid are never offered", []*ssh.Certificate{expired, future}, push, ""},
		{"expired loses to a live reader", []*ssh.Certificate{expired, readAll}, push, "read-all"},
		{"a grant among several", []*ssh.Certificate{tool, multi}, push, "multi"},
		{"the other repository of a multi-grant certificate", []*ssh.Certificate{multi, readAll}, sshd.Command{Service: sshd.UploadPack, Repo: "team/tool"}, "multi"},
		{"no certificates", nil, fetch, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := certForCommand(tt.certs, tt.cmd, now)
			if tt.want == "" {
				assert.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tt.want, got.KeyId)
		})
	}
}

// FuzzRemoteGitCommand: any ssh command line either yields a Git service
// on a well-formed repository name or nothing.
func FuzzRemoteGitCommand(f *testing.F) {
	for _, s := range []string{"-p\x0022\x00git@h\x00git-upload-pack 'demo/app'", "-G\x00h", "h\x00-v\x00git-receive-pack\x00'a/b.git'", "--\x00h\x00ls", "-oX\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		cmd, ok := remoteGitCommand(strings.Split(joined, "\x00"))
		if !ok {
			return
		}
		if err := principals.CheckRepo(cmd.Repo); err != nil {
			t.Fatalf("accepted repository %q: %v", cmd.Repo, err)
		}
		if cmd.Service != sshd.UploadPack && cmd.Service != sshd.ReceivePack && cmd.Service != sshd.UploadArchive {
			t.Fatalf("accepted service %q", cmd.Service)
		}
	})
}

func TestGitSSHArgs(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		direct bool
		rest   []string
	}{
		{"a fetch", []string{"jitssh", "git-ssh", "-p", "22", "h", "git-upload-pack 'a/b'"}, true, []string{"-p", "22", "h", "git-upload-pack 'a/b'"}},
		{"no arguments", []string{"jitssh", "git-ssh"}, true, []string{}},
		{"-h with more is ssh's", []string{"jitssh", "git-ssh", "-h", "x"}, true, []string{"-h", "x"}},
		{"help", []string{"jitssh", "git-ssh", "--help"}, false, nil},
		{"short help", []string{"jitssh", "git-ssh", "-h"}, false, nil},
		{"shell completion", []string{"jitssh", "git-ssh", "h", "--generate-bash-completion"}, false, nil},
		{"another command", []string{"jitssh", "request", "git-ssh"}, false, nil},
		{"nothing", []string{"jitssh"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rest, ok := gitSSHArgs(tt.args)
			assert.Equal(t, tt.direct, ok)
			assert.Equal(t, tt.rest, rest)
		})
	}
}

// TestGitSSHDirectMatchesCommandTree runs git-ssh both ways run can take,
// straight and through the command tree, with a stand-in ssh that records
// what it was given (the certificate file's content in place of its
// temporary name), and expects the same ssh command line and exit code.
func TestGitSSHDirectMatchesCommandTree(t *testing.T) {
	needTool(t, "ssh-agent")
	dir := t.TempDir()
	conn, err := net.Dial("unix", newAgent(t))
	require.NoError(t, err)
	defer conn.Close()
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	caSigner, err := ssh.NewSignerFromKey(caPriv)
	require.NoError(t, err)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	cert := testCert("alice/req-1", time.Now().Add(-time.Minute), time.Now().Add(time.Hour), "git:read:demo/app:*")
	cert.Key = sshPub
	require.NoError(t, cert.SignCert(rand.Reader, caSigner))
	require.NoError(t, agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: priv, Certificate: cert}))

	fakeSSH := filepath.Join(dir, "ssh")
	require.NoError(t, os.WriteFile(fakeSSH, []byte(`#!/bin/sh
for a; do
	case $a in IdentityFile=*) cat "${a#IdentityFile=}" ;; *) printf '%s\n' "$a" ;; esac
done >"$GITSSH_TEST_OUT"
exit "$GITSSH_TEST_CODE"
`), 0o755))
	tmp := t.TempDir()
	t.Setenv("SSH_AUTH_SOCK", conn.RemoteAddr().String())
	t.Setenv("JITSSH_SSH", fakeSSH)
	t.Setenv("TMPDIR", tmp)

	runBoth := func(t *testing.T, code string, args ...string) (direct, tree string, directCode, treeCode int) {
		t.Helper()
		t.Setenv("GITSSH_TEST_CODE", code)
		argv := append([]string{"jitssh", "git-ssh"}, args...)
		out := filepath.Join(dir, "out")
		t.Setenv("GITSSH_TEST_OUT", out)
		_, ok := gitSSHArgs(argv)
		require.True(t, ok, "not a direct run")
		directCode = run(argv)
		data, err := os.ReadFile(out)
		require.NoError(t, err)
		direct = string(data)
		require.NoError(t, os.Remove(out))
		app := newApp()
		treeCode = exitCode(app.Run(argv), app.ErrWriter)
		data, err = os.ReadFile(out)
		require.NoError(t, err)
		tree = string(data)
		left, err := os.ReadDir(tmp)
		require.NoError(t, err)
		assert.Empty(t, left, "certificate files left behind")
		return direct, tree, directCode, treeCode
	}
	for _, tt := range []struct {
		name string
		code string
		args []string
		cert bool
	}{
		{"a fetch the certificate covers", "0", []string{"-o", "SendEnv=GIT_PROTOCOL", "-p", "22", "git@h", "git-upload-pack '/demo/app.git'"}, true},
		{"ssh's exit code", "3", []string{"-p", "22", "git@h", "git-upload-pack 'demo/app'"}, true},
		{"another repository", "0", []string{"h", "git-upload-pack 'team/tool'"}, false},
		{"not git", "0", []string{"-G", "-p", "22", "h"}, false},
		{"ssh's own -h", "255", []string{"-h", "x"}, false},
		{"double dash", "0", []string{"--", "h", "ls", "--generate-bash-completion", "x"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			direct, tree, directCode, treeCode := runBoth(t, tt.code, tt.args...)
			assert.Equal(t, tree, direct)
			assert.Equal(t, treeCode, directCode)
			assert.Equal(t, tt.code, strconv.Itoa(directCode))
			assert.Equal(t, tt.cert, strings.Contains(direct, string(ssh.MarshalAuthorizedKey(cert))), "certificate offered:\n%s", direct)
		})
	}
}
