package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// TestCASignHostProfiles signs each Git host's certificate from the
// command line and reads it back with ssh-keygen -L.
func TestCASignHostProfiles(t *testing.T) {
	keygen := needTool(t, "ssh-keygen")
	tests := []struct {
		name       string
		flags      []string
		keyID      string
		principals []string
		extensions map[string]string
		listing    string // a line ssh-keygen -L prints
	}{
		{
			name:       "github",
			flags:      []string{"--profile", "github", "--account", "alice-gh", "--key-id", "alice/incident-7"},
			keyID:      "alice/incident-7",
			principals: []string{"alice-gh"},
			extensions: map[string]string{"login@github.com": "alice-gh"},
			listing:    "login@github.com UNKNOWN OPTION: 00000008616c6963652d6768 (len 12)",
		},
		{
			name:       "GitHub Enterprise Server",
			flags:      []string{"--profile", "github", "--account", "alice-gh", "--host", "ghe.example.com", "--key-id", "alice/incident-7"},
			keyID:      "alice/incident-7",
			principals: []string{"alice-gh"},
			extensions: map[string]string{"login@ghe.example.com": "alice-gh"},
			listing:    "login@ghe.example.com UNKNOWN OPTION",
		},
		{
			name:       "gitlab without key ID",
			flags:      []string{"--profile", "gitlab", "--account", "alice"},
			keyID:      "alice",
			principals: []string{"alice"},
			listing:    "Extensions: (none)",
		},
		{
			name:       "gitlab with the username as key ID",
			flags:      []string{"--profile", "gitlab", "--account", "alice", "--key-id", "alice"},
			keyID:      "alice",
			principals: []string{"alice"},
			listing:    `Key ID: "alice"`,
		},
		{
			name:       "gitea",
			flags:      []string{"--profile", "gitea", "--account", "alice-gitea", "--key-id", "alice/incident-7"},
			keyID:      "alice/incident-7",
			principals: []string{"alice-gitea"},
			listing:    "Extensions: (none)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			args := append([]string{"ca", "sign", "--dir", w.ca, "--pubkey", w.userPub, "--ttl", "10m", "--json"}, tt.flags...)
			r := runJitssh(t, nil, args...)
			require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
			var got struct {
				Certificate string            `json:"certificate"`
				KeyID       string            `json:"key_id"`
				Principals  []string          `json:"principals"`
				Extensions  map[string]string `json:"extensions"`
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
			assert.Equal(t, tt.keyID, got.KeyID)
			assert.Equal(t, tt.principals, got.Principals)
			if tt.extensions == nil {
				assert.Empty(t, got.Extensions)
			} else {
				assert.Equal(t, tt.extensions, got.Extensions)
				assert.Contains(t, r.stderr, `"extensions":`, "the break-glass record names the account's extension")
			}
			key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(got.Certificate))
			require.NoError(t, err)
			cert := key.(*ssh.Certificate)
			assert.Equal(t, ca.BreakGlassBit|2, cert.Serial)

			file := filepath.Join(w.root, "host-cert.pub")
			require.NoError(t, os.WriteFile(file, []byte(got.Certificate+"\n"), 0o644))
			out, err := exec.Command(keygen, "-L", "-f", file).CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), tt.listing)
			assert.NotContains(t, string(out), "permit-", "no pty, forwarding, agent, X11 or user rc")
			assert.NotContains(t, string(out), "git:", "no grant in a host certificate")
		})
	}
}

func TestCASignHostProfileFailures(t *testing.T) {
	base := func(extra ...string) func(w caWorkspace) []string {
		return func(w caWorkspace) []string {
			return append([]string{"--dir", w.ca, "--pubkey", w.userPub, "--ttl", "10m"}, extra...)
		}
	}
	tests := []struct {
		name    string
		args    func(w caWorkspace) []string
		wantMsg string
	}{
		{"grant and profile mixed", base("--profile", "github", "--account", "alice", "--key-id", "a/1", "--grant", "git:read:demo/app:*"), "--grant and --profile github do not mix"},
		{"account without profile", base("--grant", "git:read:demo/app:*", "--key-id", "a/1", "--account", "alice"), "--account needs --profile"},
		{"host without profile", base("--grant", "git:read:demo/app:*", "--key-id", "a/1", "--host", "ghe.example.com"), "--host needs --profile"},
		{"profile without account", base("--profile", "gitea", "--key-id", "a/1"), "missing --account"},
		{"unknown profile", base("--profile", "bitbucket", "--account", "alice", "--key-id", "a/1"), "--profile"},
		{"github without key ID", base("--profile", "github", "--account", "alice"), "missing --key-id"},
		{"gitlab key ID other than the username", base("--profile", "gitlab", "--account", "alice", "--key-id", "alice/1"), "reads the key ID as the username"},
		{"bad GitHub login", base("--profile", "github", "--account", "alice.smith", "--key-id", "a/1"), "not a GitHub username"},
		{"account that reads as a grant", base("--profile", "gitea", "--account", "git:force:demo/app:*", "--key-id", "a/1"), "reads as a jitssh grant"},
		{"host for gitea", base("--profile", "gitea", "--account", "alice", "--key-id", "a/1", "--host", "gitea.example.com"), "takes no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newCAWorkspace(t)
			before := caSnapshot(t, w.root)
			r := runJitssh(t, nil, append([]string{"ca", "sign"}, tt.args(w)...)...)
			assertOneLineError(t, r, exitUsage, tt.wantMsg)
			assert.Equal(t, before, caSnapshot(t, w.root), "nothing written, serial file untouched")
		})
	}
}
