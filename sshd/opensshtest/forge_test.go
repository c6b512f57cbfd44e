package opensshtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/sshd/opensshtest"
)

// TestForgeReadsCertificatesAsEachHost signs certificates with ssh-keygen
// itself, with the flags each host's documentation gives, and checks that
// the forge logs each into the account that host would, and nobody else:
// GitLab by key ID, GitHub by the login extension, Gitea by registered
// principal.
func TestForgeReadsCertificatesAsEachHost(t *testing.T) {
	keygen := opensshtest.NeedTool(t, "ssh-keygen")
	gitBin := opensshtest.NeedTool(t, "git")
	caDir := t.TempDir()
	caKey := filepath.Join(caDir, "ca")
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", caKey).CombinedOutput()
	require.NoError(t, err, "%s", out)
	caPub, err := os.ReadFile(caKey + ".pub")
	require.NoError(t, err)

	tests := []struct {
		name    string
		profile string
		host    string
		sign    []string // ssh-keygen -s flags
		account string   // the login it gets; "" when refused
	}{
		{"gitlab key ID", "gitlab", "", []string{"-I", "alice", "-n", "alice"}, "alice"},
		{"gitlab key ID of nobody", "gitlab", "", []string{"-I", "alice/req-1", "-n", "alice"}, ""},
		{"gitlab principal without the key ID", "gitlab", "", []string{"-I", "alice", "-n", "bob"}, ""},
		{"github login", "github", "", []string{"-I", "anything/req-1", "-n", "alice", "-O", "extension:login@github.com=alice"}, "alice"},
		{"github login on Enterprise Server", "github", "ghe.example.com", []string{"-I", "k", "-n", "alice", "-O", "extension:login@ghe.example.com=alice"}, "alice"},
		{"github login for another host", "github", "ghe.example.com", []string{"-I", "k", "-n", "alice", "-O", "extension:login@github.com=alice"}, ""},
		{"github without login", "github", "", []string{"-I", "alice", "-n", "alice"}, ""},
		{"github login of nobody", "github", "", []string{"-I", "k", "-n", "mallory", "-O", "extension:login@github.com=mallory"}, ""},
		{"gitea principal", "gitea", "", []string{"-I", "alice/req-1", "-n", "alice"}, "alice"},
		{"gitea principal nobody registered", "gitea", "", []string{"-I", "alice", "-n", "mallory"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Each forge gets its own repositories: starting one installs
			// its hook in them.
			root := t.TempDir()
			out, err := exec.Command(gitBin, "init", "-q", "--bare", filepath.Join(root, "demo", "app.git")).CombinedOutput()
			require.NoError(t, err, "%s", out)
			f := opensshtest.StartForge(t, opensshtest.ForgeConfig{
				Profile: tt.profile, Host: tt.host, CAPublicKey: string(caPub), Root: root, Accounts: []string{"alice", "bob"},
			})
			dir := t.TempDir()
			key, _ := userKey(t, dir, "id")
			args := append([]string{"-q", "-s", caKey, "-V", "+10m", "-O", "clear"}, tt.sign...)
			out, err = exec.Command(keygen, append(args, key+".pub")...).CombinedOutput()
			require.NoError(t, err, "%s", out)

			cmd := f.SSH(t, "-i", key, "-o", "CertificateFile="+key+"-cert.pub", "git-upload-pack 'demo/app.git'")
			cmd.Stdin = strings.NewReader("0000")
			out, err = cmd.CombinedOutput()
			if tt.account == "" {
				require.Error(t, err, "%s", out)
				assert.Contains(t, string(out), "Permission denied")
				assert.Empty(t, f.Logins(t))
				return
			}
			require.NoError(t, err, "%s\nsshd log:\n%s", out, f.Log())
			assert.Equal(t, []string{tt.account + "\tgit-upload-pack 'demo/app.git'"}, f.Logins(t))
		})
	}
}
