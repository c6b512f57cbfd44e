package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// signExpired certifies the public key in pubFile with the CA in caDir,
// for grants, on a clock two hours back with an hour's TTL, so the
// certificate ran out an hour ago: tests of expiry need no waiting. It
// writes the certificate to certFile and returns its serial.
func signExpired(t *testing.T, caDir, pubFile, certFile, keyID string, grants ...string) uint64 {
	t.Helper()
	authority, err := ca.Load(caDir)
	require.NoError(t, err)
	authority.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	pubData, err := os.ReadFile(pubFile)
	require.NoError(t, err)
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubData)
	require.NoError(t, err)
	var gs []principals.Grant
	for _, g := range grants {
		grant, err := principals.Parse(g)
		require.NoError(t, err)
		gs = append(gs, grant)
	}
	serials, err := ca.OpenSerialFile(filepath.Join(caDir, "serial"))
	require.NoError(t, err)
	cert, err := authority.Sign(ca.CertRequest{PublicKey: pub, KeyID: keyID, Grants: gs, TTL: time.Hour}, serials)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, ssh.MarshalAuthorizedKey(cert), 0o644))
	return cert.Serial
}
