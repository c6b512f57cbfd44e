package ca_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

func TestSignHostProfiles(t *testing.T) {
	tests := []struct {
		name       string
		req        ca.CertRequest
		principals []string
		extensions map[string]string
		keyID      string
	}{
		{
			name:       "github.com",
			req:        ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh", KeyID: "alice/req-1"},
			principals: []string{"alice-gh"},
			extensions: map[string]string{"login@github.com": "alice-gh"},
			keyID:      "alice/req-1",
		},
		{
			name:       "github.com named",
			req:        ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh", Host: "github.com", KeyID: "alice/req-1"},
			principals: []string{"alice-gh"},
			extensions: map[string]string{"login@github.com": "alice-gh"},
			keyID:      "alice/req-1",
		},
		{
			name:       "GitHub Enterprise Server",
			req:        ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice_acme", Host: "ghe.example.com", KeyID: "alice/req-2"},
			principals: []string{"alice_acme"},
			extensions: map[string]string{"login@ghe.example.com": "alice_acme"},
			keyID:      "alice/req-2",
		},
		{
			name:       "gitlab key ID is the username",
			req:        ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice.smith"},
			principals: []string{"alice.smith"},
			extensions: map[string]string{},
			keyID:      "alice.smith",
		},
		{
			name:       "gitlab key ID given as the username",
			req:        ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice", KeyID: "alice"},
			principals: []string{"alice"},
			extensions: map[string]string{},
			keyID:      "alice",
		},
		{
			name:       "gitea principal",
			req:        ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice@example.com", KeyID: "alice/req-3"},
			principals: []string{"alice@example.com"},
			extensions: map[string]string{},
			keyID:      "alice/req-3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newCA(t, ca.Ed25519, issued)
			tt.req.PublicKey = userKey(t)
			tt.req.TTL = 5 * time.Minute
			cert, err := a.Sign(tt.req, &counter{next: 6})
			require.NoError(t, err)
			assert.Equal(t, uint32(ssh.UserCert), cert.CertType)
			assert.Equal(t, tt.principals, cert.ValidPrincipals)
			assert.Equal(t, tt.extensions, cert.Extensions)
			assert.Empty(t, cert.CriticalOptions)
			assert.Equal(t, tt.keyID, cert.KeyId)
			assert.Equal(t, uint64(7), cert.Serial)
			assert.Equal(t, uint64(issued.Add(-ca.DefaultBackdate).Unix()), cert.ValidAfter)
			assert.Equal(t, uint64(issued.Add(5*time.Minute).Unix()), cert.ValidBefore)
			for _, p := range cert.ValidPrincipals {
				_, err := principals.Parse(p)
				assert.Error(t, err, "a host certificate holds no grant a jitssh server would read")
			}
			assert.NoError(t, checker(a.PublicKey(), issued).CheckCert(tt.principals[0], cert))
		})
	}
}

func TestSignHostProfileRefusals(t *testing.T) {
	g := grant(t, "git:read:demo/app:*")
	tests := []struct {
		name string
		req  ca.CertRequest
		want error
	}{
		{"unknown profile", ca.CertRequest{Profile: "bitbucket", Account: "alice", KeyID: "k"}, ca.ErrBadProfile},
		{"host profile with grants", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice", KeyID: "k", Grants: []principals.Grant{g}}, ca.ErrBadProfile},
		{"grant profile with an account", ca.CertRequest{Account: "alice", KeyID: "k", Grants: []principals.Grant{g}}, ca.ErrBadProfile},
		{"grant profile with a host", ca.CertRequest{Host: "ghe.example.com", KeyID: "k", Grants: []principals.Grant{g}}, ca.ErrBadProfile},
		{"no account", ca.CertRequest{Profile: ca.ProfileGitea, KeyID: "k"}, ca.ErrBadAccount},
		{"github name with a dot", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice.smith", KeyID: "k"}, ca.ErrBadAccount},
		{"github name with a double hyphen", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "al--ice", KeyID: "k"}, ca.ErrBadAccount},
		{"github name too long", ca.CertRequest{Profile: ca.ProfileGitHub, Account: strings.Repeat("a", 49), KeyID: "k"}, ca.ErrBadAccount},
		{"gitlab name ending in .git", ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice.git"}, ca.ErrBadAccount},
		{"gitlab name starting with a hyphen", ca.CertRequest{Profile: ca.ProfileGitLab, Account: "-alice"}, ca.ErrBadAccount},
		{"gitea principal with a comma", ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice,root", KeyID: "k"}, ca.ErrBadAccount},
		{"gitea principal with a space", ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice root", KeyID: "k"}, ca.ErrBadAccount},
		{"gitea principal that reads as a grant", ca.CertRequest{Profile: ca.ProfileGitea, Account: "git:force:demo/app:*", KeyID: "k"}, ca.ErrBadAccount},
		{"gitlab key ID other than the username", ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice", KeyID: "alice/req-1"}, ca.ErrBadKeyID},
		{"github without key ID", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice"}, ca.ErrBadKeyID},
		{"host for gitlab", ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice", Host: "gitlab.example.com"}, ca.ErrBadHost},
		{"host with a port", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice", Host: "ghe.example.com:22", KeyID: "k"}, ca.ErrBadHost},
		{"host in capitals", ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice", Host: "GHE.example.com", KeyID: "k"}, ca.ErrBadHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newCA(t, ca.Ed25519, issued)
			tt.req.PublicKey = userKey(t)
			tt.req.TTL = time.Hour
			serials := &counter{}
			_, err := a.Sign(tt.req, serials)
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, 0, serials.Calls(), "a refused request takes no serial")
		})
	}
}

func TestSignGitHubValidityUnderAYear(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	a.MaxTTL = 2 * 365 * 24 * time.Hour
	year := 365 * 24 * time.Hour
	tests := []struct {
		profile ca.Profile
		ttl     time.Duration
		ok      bool
	}{
		{ca.ProfileGitHub, year - ca.DefaultBackdate - time.Second, true},
		{ca.ProfileGitHub, year - ca.DefaultBackdate, false},
		{ca.ProfileGitHub, year, false},
		// Other hosts set no such limit; the Authority's cap still holds.
		{ca.ProfileGitea, year, true},
		{ca.ProfileGitLab, year, true},
	}
	for _, tt := range tests {
		_, err := a.Sign(ca.CertRequest{Profile: tt.profile, PublicKey: userKey(t), Account: "alice", KeyID: "alice", TTL: tt.ttl}, &counter{})
		if tt.ok {
			assert.NoError(t, err, "%s %v", tt.profile, tt.ttl)
		} else {
			assert.ErrorIs(t, err, ca.ErrBadTTL, "%s %v", tt.profile, tt.ttl)
		}
	}
}

func TestParseProfile(t *testing.T) {
	for in, want := range map[string]ca.Profile{"": ca.ProfileGrant, "grant": ca.ProfileGrant, "github": ca.ProfileGitHub, "gitlab": ca.ProfileGitLab, "gitea": ca.ProfileGitea} {
		p, err := ca.ParseProfile(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, p)
	}
	for _, in := range []string{"GitHub", "forgejo", " github"} {
		_, err := ca.ParseProfile(in)
		assert.ErrorIs(t, err, ca.ErrBadProfile, in)
	}
	_, err := ca.ParseHostProfile("grant")
	assert.ErrorIs(t, err, ca.ErrBadProfile)
}

// TestHostProfilesAsOpenSSHReadsThem checks each profile's certificate
// with the real ssh-keygen -L against a certificate ssh-keygen itself signs
// with the flags each host documents (GitHub: -O extension:login@...=USER;
// GitLab: -I USER; Gitea: -n PRINCIPAL), all with -O clear.
func TestHostProfilesAsOpenSSHReadsThem(t *testing.T) {
	keygen := lookPath(t, "ssh-keygen")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ref_ca")
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", caFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	tests := []struct {
		req     ca.CertRequest
		keygen  []string // ssh-keygen -s flags of the reference certificate
		extLine string   // the extension line ssh-keygen -L prints, if any
	}{
		{
			req:     ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh", KeyID: "alice/req-01J"},
			keygen:  []string{"-I", "alice/req-01J", "-n", "alice-gh", "-O", "clear", "-O", "extension:login@github.com=alice-gh"},
			extLine: "login@github.com UNKNOWN OPTION: 00000008616c6963652d6768 (len 12)",
		},
		{
			req:     ca.CertRequest{Profile: ca.ProfileGitHub, Account: "alice-gh", Host: "ghe.example.com", KeyID: "alice/req-01J"},
			keygen:  []string{"-I", "alice/req-01J", "-n", "alice-gh", "-O", "clear", "-O", "extension:login@ghe.example.com=alice-gh"},
			extLine: "login@ghe.example.com UNKNOWN OPTION: 00000008616c6963652d6768 (len 12)",
		},
		{
			req:    ca.CertRequest{Profile: ca.ProfileGitLab, Account: "alice"},
			keygen: []string{"-I", "alice", "-n", "alice", "-O", "clear"},
		},
		{
			req:    ca.CertRequest{Profile: ca.ProfileGitea, Account: "alice-gitea", KeyID: "alice/req-01J"},
			keygen: []string{"-I", "alice/req-01J", "-n", "alice-gitea", "-O", "clear"},
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.req.Profile)+tt.req.Host, func(t *testing.T) {
			a := newCA(t, ca.Ed25519, time.Now())
			tt.req.PublicKey = userKey(t)
			tt.req.TTL = 10 * time.Minute
			cert, err := a.Sign(tt.req, &counter{next: 11})
			require.NoError(t, err)
			sub := t.TempDir()
			ours := filepath.Join(sub, "ours-cert.pub")
			require.NoError(t, os.WriteFile(ours, ssh.MarshalAuthorizedKey(cert), 0o644))
			refKey := filepath.Join(sub, "ref")
			require.NoError(t, os.WriteFile(refKey+".pub", ssh.MarshalAuthorizedKey(userKey(t)), 0o644))
			args := append([]string{"-q", "-s", caFile, "-V", "+10m"}, tt.keygen...)
			out, err := exec.Command(keygen, append(args, refKey+".pub")...).CombinedOutput()
			require.NoError(t, err, "%s", out)

			got := keygenList(t, keygen, ours)
			want := keygenList(t, keygen, refKey+"-cert.pub")
			for _, section := range []string{"Key ID", "Principals", "Critical Options", "Extensions"} {
				assert.Equal(t, want[section], got[section], "%s, as ssh-keygen -L prints it", section)
			}
			assert.Equal(t, []string{"12"}, got["Serial"])
			if tt.extLine != "" {
				assert.Equal(t, []string{tt.extLine}, got["Extensions"])
			} else {
				assert.Equal(t, []string{"(none)"}, got["Extensions"], "no pty, forwarding, agent, X11 or user rc")
			}
		})
	}
}

// keygenList runs ssh-keygen -L on a certificate file and returns each
// field with its value, or with the lines indented below it.
func keygenList(t *testing.T, keygen, path string) map[string][]string {
	t.Helper()
	out, err := exec.Command(keygen, "-L", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	fields := map[string][]string{}
	field := ""
	for _, line := range strings.Split(string(out), "\n")[1:] {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if strings.HasPrefix(line, "        ") && !strings.HasPrefix(line, "                ") {
			name, value, _ := strings.Cut(trimmed, ":")
			field = name
			fields[field] = nil
			if v := strings.TrimSpace(value); v != "" {
				fields[field] = append(fields[field], v)
			}
			continue
		}
		fields[field] = append(fields[field], trimmed)
	}
	return fields
}

func TestCheckAccountTable(t *testing.T) {
	tests := []struct {
		profile ca.Profile
		name    string
		ok      bool
	}{
		{ca.ProfileGitHub, "octocat", true},
		{ca.ProfileGitHub, "a-b-c", true},
		{ca.ProfileGitHub, "alice_acme", true},
		{ca.ProfileGitHub, "-alice", false},
		{ca.ProfileGitHub, "alice-", false},
		{ca.ProfileGitHub, "alice_", false},
		{ca.ProfileGitLab, "alice.smith", true},
		{ca.ProfileGitLab, "_bot", true},
		{ca.ProfileGitLab, "alice.atom", false},
		{ca.ProfileGitLab, "al ice", false},
		{ca.ProfileGitea, "alice", true},
		{ca.ProfileGitea, "alice+ci@example.com", true},
		{ca.ProfileGitea, "alice\n", false},
		{ca.ProfileGitea, "*", false},
		{ca.ProfileGrant, "alice", false},
	}
	for _, tt := range tests {
		err := ca.CheckAccount(tt.profile, tt.name)
		if tt.ok {
			assert.NoError(t, err, "%s %q", tt.profile, tt.name)
		} else {
			assert.True(t, errors.Is(err, ca.ErrBadAccount) || errors.Is(err, ca.ErrBadProfile), "%s %q: %v", tt.profile, tt.name, err)
		}
	}
}
