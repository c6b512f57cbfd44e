package sshd

import (
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

	// Unknown and forbidden repositories read the same to the client.
	unknown := ClientMessage(Decide(repos, other, "git-upload-pack 'demo/other'").Err)
	forbidden := ClientMessage(Decide(repos, other, "git-upload-pack 'demo/app'").Err)
	assert.Equal(t, unknown, forbidden)
	assert.NotContains(t, unknown, "demo")
	// So does a path no repository can have.
	for _, bad := range []string{"demo/app/", "demo//app", "../demo/app", "demo/app.git.git"} {
		assert.Equal(t, unknown, ClientMessage(Decide(repos, other, "git-upload-pack '"+bad+"'").Err), bad)
	}
	assert.NotEqual(t, unknown, ClientMessage(Decide(repos, other, "git-upload-pack 'demo/app'; id").Err), "an injection reads like a bad command")
	assert.True(t, strings.HasPrefix(ClientMessage(ErrExpired), "jitssh: "))
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
