package sshd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

func testIdentity(t testing.TB, grants ...string) *Identity {
	t.Helper()
	set, errs := principals.ParseSet(grants)
	require.Empty(t, errs)
	return &Identity{Cert: &ssh.Certificate{ValidPrincipals: grants}, Grants: set}
}

func TestDecide(t *testing.T) {
	f := newFixture(t)
	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	reader := testIdentity(t, "git:read:demo/app:refs/heads/main")
	writer := testIdentity(t, "git:write:demo/app:refs/heads/feature/*", "git:read:demo/app:refs/heads/main")
	other := testIdentity(t, "git:force:demo/other:*")

	tests := []struct {
		name string
		id   *Identity
		cmd  string
		want error
	}{
		{"read fetch", reader, "git-upload-pack 'demo/app.git'", nil},
		{"read archive", reader, "git-upload-archive 'demo/app'", nil},
		{"read push refused", reader, "git-receive-pack 'demo/app'", ErrNotGranted},
		{"write push", writer, "git-receive-pack '/demo/app'", nil},
		{"other repo", other, "git-upload-pack 'demo/app'", ErrNotGranted},
		{"granted but missing", other, "git-upload-pack 'demo/other'", ErrRepoNotFound},
		{"bad command", writer, "sh -c id", ErrCommand},
		{"path trick", writer, "git-upload-pack '../demo/app'", ErrCommand},
		{"no identity", nil, "git-upload-pack 'demo/app'", ErrNoGrants},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(repos, tt.id, tt.cmd)
			if tt.want == nil {
				require.NoError(t, d.Err)
				assert.True(t, d.Allowed())
				assert.NotEmpty(t, d.Path)
				return
			}
			require.ErrorIs(t, d.Err, tt.want)
			assert.False(t, d.Allowed())
			assert.Empty(t, d.Path)
		})
	}

}

// TestClientMessage: each refusal says what was missing, in terms of the
// client's own request and certificate.
func TestClientMessage(t *testing.T) {
	f := newFixture(t)
	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	reader := testIdentity(t, "git:read:demo/app:refs/heads/main")
	other := testIdentity(t, "git:force:demo/other:*")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no grant names the repository", Decide(repos, other, "git-upload-pack 'demo/app'").Err,
			"jitssh: not granted: your certificate has no grant on demo/app"},
		{"a push with a read grant", Decide(repos, reader, "git-receive-pack 'demo/app'").Err,
			"jitssh: not granted: a push needs write access on demo/app; your grant there gives read"},
		{"a granted repository that is missing", Decide(repos, other, "git-upload-pack 'demo/other'").Err,
			"jitssh: repository not found"},
		{"a path no repository can have", Decide(repos, other, "git-upload-pack 'demo//app'").Err,
			"jitssh: repository not found"},
		{"not a Git command", Decide(repos, other, "git-upload-pack 'demo/app'; id").Err,
			"jitssh: only git-upload-pack, git-receive-pack and git-upload-archive on a repository are allowed"},
		{"an expired certificate", fmt.Errorf("%w: valid before 1", ErrExpired),
			"jitssh: not granted: your certificate has expired; request a new grant"},
		{"a revoked certificate", fmt.Errorf("%w: serial 3", ErrRevoked),
			"jitssh: refused: your certificate has been revoked"},
		{"a certificate from the future", fmt.Errorf("%w: valid after 1", ErrNotYetValid),
			"jitssh: refused: your certificate is not valid yet (is this machine's clock right?)"},
		{"the audit log is down", ErrAuditUnavailable,
			"jitssh: refused: the audit log cannot be written, so nothing was done"},
		{"a plain key", ErrNotCertificate, "jitssh: permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ClientMessage(tt.err))
		})
	}
	// A refusal for want of a grant is marked as one for clients to
	// act on; others are not.
	for _, tt := range tests {
		assert.Equal(t, strings.Contains(tt.want, "not granted"), strings.HasPrefix(ClientMessage(tt.err), GrantRefusal), tt.name)
	}
}

// TestClientMessageHidesExistence: to a holder whose grants do not name
// it, a repository that exists and one that does not read the same, and
// the log's reason is the client's alone too.
func TestClientMessageHidesExistence(t *testing.T) {
	f := newFixture(t)
	repos, err := NewRepos(f.root)
	require.NoError(t, err)
	for _, id := range []*Identity{
		testIdentity(t, "git:force:demo/other:*"),
		testIdentity(t, "git:read:other/x:*", "git:write:other/y:refs/heads/*"),
	} {
		for _, svc := range []Service{UploadPack, ReceivePack, UploadArchive} {
			exists := Decide(repos, id, string(svc)+" 'demo/app'").Err
			missing := Decide(repos, id, string(svc)+" 'demo/nope'").Err
			require.ErrorIs(t, exists, ErrNotGranted)
			require.ErrorIs(t, missing, ErrNotGranted)
			assert.Equal(t, ClientMessage(exists), strings.ReplaceAll(ClientMessage(missing), "demo/nope", "demo/app"), svc)
			assert.Equal(t, exists.Error(), strings.ReplaceAll(missing.Error(), "demo/nope", "demo/app"), svc)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	root := b.TempDir()
	requireGit(b)
	git(b, root, "init", "-q", "--bare", "demo/app.git")
	repos, err := NewRepos(root)
	require.NoError(b, err)
	id := testIdentity(b, "git:read:demo/app:refs/heads/main", "git:write:demo/app:refs/heads/feature/*")
	b.ReportAllocs()
	for b.Loop() {
		if d := Decide(repos, id, "git-upload-pack '/demo/app.git'"); !d.Allowed() {
			b.Fatal(d.Err)
		}
	}
}
