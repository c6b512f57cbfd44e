package ca_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

func TestSignHostIsAHostCertificateOpenSSHReads(t *testing.T) {
	keygen := lookPath(t, "ssh-keygen")
	a, err := ca.New(caKey(t, ca.Ed25519))
	require.NoError(t, err)
	issued := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a.Now = func() time.Time { return issued }
	host := userKey(t)

	cert, err := a.SignHost(host, []string{"git.example.com", "127.0.0.1"}, 0)
	require.NoError(t, err)
	assert.Equal(t, uint32(ssh.HostCert), cert.CertType)
	assert.Equal(t, "host:git.example.com", cert.KeyId)
	assert.Equal(t, uint64(issued.Add(ca.DefaultHostValidity).Unix()), cert.ValidBefore)
	assert.Zero(t, cert.Serial)

	// The client's own check: a host certificate for this name, by this CA.
	checker := ssh.CertChecker{IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
		return string(auth.Marshal()) == string(a.PublicKey().Marshal())
	}, Clock: func() time.Time { return issued }}
	require.NoError(t, checker.CheckCert("git.example.com", cert))
	require.Error(t, checker.CheckCert("other.example.com", cert), "a name the certificate does not carry")

	path := filepath.Join(t.TempDir(), "host-cert.pub")
	require.NoError(t, os.WriteFile(path, ssh.MarshalAuthorizedKey(cert), 0o644))
	out, err := exec.Command(keygen, "-L", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "ssh-ed25519-cert-v01@openssh.com host certificate")
	assert.Contains(t, string(out), "Key ID: \"host:git.example.com\"")
	assert.Regexp(t, `Principals:\s+git\.example\.com\s+127\.0\.0\.1`, string(out))
}

func TestSignHostRefuses(t *testing.T) {
	a, err := ca.New(caKey(t, ca.Ed25519))
	require.NoError(t, err)
	tests := []struct {
		name     string
		names    []string
		validity time.Duration
		want     error
	}{
		{"no names", nil, 0, ca.ErrBadHostName},
		{"wildcard", []string{"*.example.com"}, 0, ca.ErrBadHostName},
		{"negation", []string{"!git.example.com"}, 0, ca.ErrBadHostName},
		{"list in one name", []string{"a.example.com,b.example.com"}, 0, ca.ErrBadHostName},
		{"bracketed port", []string{"[git.example.com]:2222"}, 0, ca.ErrBadHostName},
		{"leading hyphen", []string{"-oProxyCommand"}, 0, ca.ErrBadHostName},
		{"too long", []string{"git.example.com"}, ca.MaxHostValidity + time.Second, ca.ErrBadTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.SignHost(userKey(t), tt.names, tt.validity)
			require.ErrorIs(t, err, tt.want)
		})
	}
}
