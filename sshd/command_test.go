package sshd

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in      string
		service Service
		repo    string
		ok      bool
	}{
		{"git-upload-pack 'demo/app'", UploadPack, "demo/app", true},
		{"git-upload-pack '/demo/app.git'", UploadPack, "demo/app", true},
		{"git-receive-pack 'demo/app.git'", ReceivePack, "demo/app", true},
		{"git-upload-archive '/demo/app'", UploadArchive, "demo/app", true},
		{"git upload-pack 'demo/app'", UploadPack, "demo/app", true},
		{"git-upload-pack demo/app", UploadPack, "demo/app", true},
		{"git-upload-pack '/a/b/c.d_e-f.git'", UploadPack, "a/b/c.d_e-f", true},

		{"", "", "", false},
		{"sh", "", "", false},
		{"git-upload-pack", "", "", false},
		{"git-upload-pack ", "", "", false},
		{"git-upload-pack ''", "", "", false},
		{"git-upload-packx 'demo/app'", "", "", false},
		{"git-upload-pack  'demo/app'", "", "", false},
		{"git-upload-pack 'demo/app' extra", "", "", false},
		{"git-upload-pack 'demo/app' 'other'", "", "", false},
		{"git-upload-pack '--upload-pack=sh' 'x'", "", "", false},
		{"git-upload-pack --help", "", "", false},
		{"git-upload-pack 'demo/app';id", "", "", false},
		{"git-upload-pack 'demo/app'; id", "", "", false},
		{"git-upload-pack '$(id)'", "", "", false},
		{"git-upload-pack '`id`'", "", "", false},
		{"git-upload-pack 'demo/app'\nid", "", "", false},
		{"git-upload-pack 'demo/app\n'", "", "", false},
		{"git-upload-pack 'demo/app'\x00", "", "", false},
		{"git-upload-pack \"demo/app\"", "", "", false},
		{"git-upload-pack 'demo'/'app'", "", "", false},
		{"git-upload-pack 'demo/app", "", "", false},
		{"git-upload-pack '../etc/passwd'", "", "", false},
		{"git-upload-pack '/demo/../../etc'", "", "", false},
		{"git-upload-pack '~root/x'", "", "", false},
		{"git-upload-pack '//demo/app'", "", "", false},
		{"git-upload-pack 'demo//app'", "", "", false},
		{"git-upload-pack 'demo/app/'", "", "", false},
		{"git-upload-pack 'demo/.git'", "", "", false},
		{"git-upload-pack 'demo/app.git.git'", "", "", false},
		{"git-upload-pack '.hidden/app'", "", "", false},
		{"git-upload-pack '-x/app'", "", "", false},
		{"git-shell -c 'git-upload-pack demo/app'", "", "", false},
		{"scp -t /tmp", "", "", false},
		{"git-upload-pack\t'demo/app'", "", "", false},
		{"GIT_DIR=/ git-upload-pack 'demo/app'", "", "", false},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if !tt.ok {
			require.ErrorIs(t, err, ErrCommand, "ParseCommand(%q) = %+v, %v; want ErrCommand", tt.in, got, err)
			continue
		}
		require.NoError(t, err, "ParseCommand(%q)", tt.in)
		assert.Equal(t, tt.service, got.Service, "ParseCommand(%q).Service", tt.in)
		assert.Equal(t, tt.repo, got.Repo, "ParseCommand(%q).Repo", tt.in)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"git-upload-pack 'demo/app'", "git receive-pack '/a.git'", "git-upload-archive 'x/y'", "sh -c id"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if err != nil {
			return
		}
		// Whatever is accepted names a service and a repository path that
		// stays below any root.
		switch c.Service {
		case UploadPack, ReceivePack, UploadArchive:
		default:
			t.Fatalf("ParseCommand(%q) accepted service %q", s, c.Service)
		}
		for _, bad := range []string{"..", "//", "\n", "'", ";", "$", " "} {
			assert.NotContains(t, c.Repo, bad)
		}
		assert.NotEqual(t, byte('/'), c.Repo[0])
	})
}
