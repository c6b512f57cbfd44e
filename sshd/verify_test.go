package sshd

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca/krl"
)

type failingChecker struct{}

func (failingChecker) Revoked(*ssh.Certificate) (bool, error) {
	return false, errors.New("revocation list unavailable")
}

func TestVerify(t *testing.T) {
	trusted := newCA(t)
	other := newCA(t)
	now := time.Now()
	from := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40000}
	revoked := &SerialSet{}
	revoked.Revoke(trusted.PublicKey(), 666)

	tampered := signCert(t, trusted, certOpts{})
	tampered.ValidPrincipals = []string{"git:force:demo/app:*"}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaSigner, err := ssh.NewSignerFromKey(rsaKey)
	require.NoError(t, err)
	sha1Signer, err := ssh.NewSignerWithAlgorithms(rsaSigner.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	require.NoError(t, err)
	sha512Signer, err := ssh.NewSignerWithAlgorithms(rsaSigner.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA512})
	require.NoError(t, err)

	plain := signCert(t, trusted, certOpts{}).Key

	tests := []struct {
		name    string
		key     ssh.PublicKey
		remote  net.Addr
		checker RevocationChecker
		want    error
	}{
		{name: "valid", key: signCert(t, trusted, certOpts{})},
		{name: "plain key", key: plain, want: ErrNotCertificate},
		{name: "host certificate", key: signCert(t, trusted, certOpts{certType: ssh.HostCert}), want: ErrHostCertificate},
		{name: "other CA", key: signCert(t, other, certOpts{}), want: ErrUntrustedCA},
		{name: "tampered after signing", key: tampered, want: ErrBadSignature},
		{name: "expired", key: signCert(t, trusted, certOpts{after: now.Add(-2 * time.Hour), before: now.Add(-time.Second)}), want: ErrExpired},
		{name: "expires this second", key: signCert(t, trusted, certOpts{before: now.Add(-10 * time.Millisecond)}), want: ErrExpired},
		{name: "never expires", key: signCert(t, trusted, certOpts{forever: true}), want: ErrNoExpiry},
		{name: "not yet valid", key: signCert(t, trusted, certOpts{after: now.Add(time.Hour), before: now.Add(2 * time.Hour)}), want: ErrNotYetValid},
		{name: "valid within skew", key: signCert(t, trusted, certOpts{after: now.Add(10 * time.Second)})},
		{name: "unknown critical option", key: signCert(t, trusted, certOpts{critical: map[string]string{"force-command": "sh"}}), want: ErrCriticalOption},
		{name: "verify-required refused", key: signCert(t, trusted, certOpts{critical: map[string]string{"verify-required": ""}}), want: ErrCriticalOption},
		{name: "source address allowed", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "10.0.0.0/8,127.0.0.1/32"}}), remote: from},
		{name: "source address plain IP allowed", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "127.0.0.1"}}), remote: from},
		{name: "source address refused", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "10.0.0.0/8"}}), remote: from, want: ErrSourceAddress},
		{name: "source address malformed entry", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "127.0.0.1/32,bogus"}}), remote: from, want: ErrSourceAddress},
		// OpenSSH refuses these lists outright; so must both front-ends,
		// even though the client's address is inside the network meant.
		{name: "source address host bits set", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "127.0.0.1/8"}}), remote: from, want: ErrSourceAddress},
		{name: "source address with a space", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "10.0.0.0/8, 127.0.0.1"}}), remote: from, want: ErrSourceAddress},
		{name: "source address without remote", key: signCert(t, trusted, certOpts{critical: map[string]string{"source-address": "127.0.0.1/32"}}), want: ErrSourceAddress},
		{name: "revoked serial", key: signCert(t, trusted, certOpts{serial: 666}), checker: revoked, want: ErrRevoked},
		{name: "same serial other CA not revoked", key: signCert(t, trusted, certOpts{serial: 667}), checker: revoked},
		{name: "revocation unknown", key: signCert(t, trusted, certOpts{}), checker: failingChecker{}, want: ErrRevocationUnknown},
		{name: "bare user name only", key: signCert(t, trusted, certOpts{principals: []string{"alice"}}), want: ErrNoGrants},
		{name: "malformed grants only", key: signCert(t, trusted, certOpts{principals: []string{"git:admin:demo/app:*", "git:read:../x:*"}}), want: ErrNoGrants},
		{name: "SHA-1 RSA CA signature", key: signCert(t, sha1Signer, certOpts{}), want: ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{CAs: []ssh.PublicKey{trusted.PublicKey(), rsaSigner.PublicKey()}, Now: time.Now}
			if tt.checker != nil {
				v.Revocations = []RevocationChecker{tt.checker}
			}
			id, err := v.Verify(tt.key, tt.remote)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				assert.Nil(t, id)
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, id.Grants)
		})
	}

	t.Run("rsa-sha2-512 CA signature accepted", func(t *testing.T) {
		v := &Verifier{CAs: []ssh.PublicKey{rsaSigner.PublicKey()}}
		_, err := v.Verify(signCert(t, sha512Signer, certOpts{}), nil)
		require.NoError(t, err)
	})
	t.Run("rotation: either trusted CA", func(t *testing.T) {
		v := &Verifier{CAs: []ssh.PublicKey{other.PublicKey(), trusted.PublicKey()}}
		for _, s := range []ssh.Signer{trusted, other} {
			_, err := v.Verify(signCert(t, s, certOpts{}), nil)
			require.NoError(t, err)
		}
	})
	t.Run("bare name beside grants grants nothing extra", func(t *testing.T) {
		v := &Verifier{CAs: []ssh.PublicKey{trusted.PublicKey()}}
		id, err := v.Verify(signCert(t, trusted, certOpts{principals: []string{"root", "git:read:demo/app:refs/heads/main"}}), nil)
		require.NoError(t, err)
		require.Len(t, id.Grants, 1)
		assert.Equal(t, "git:read:demo/app:refs/heads/main", id.Grants[0].String())
	})
	t.Run("certificate as CA key", func(t *testing.T) {
		v := &Verifier{CAs: []ssh.PublicKey{trusted.PublicKey()}}
		inner := signCert(t, trusted, certOpts{})
		assert.False(t, v.trusts(inner))
	})
}

func TestVerifyKRL(t *testing.T) {
	trusted := newCA(t)
	k := &krl.List{Version: 1}
	k.RevokeSerial(trusted.PublicKey(), 13)
	k.RevokeKeyID(trusted.PublicKey(), "mallory/req-9")
	data, err := k.Marshal()
	require.NoError(t, err)
	path := t.TempDir() + "/revoked.krl"
	writeFile(t, path, data)
	krl, err := OpenKRLFile(path)
	require.NoError(t, err)
	v := &Verifier{CAs: []ssh.PublicKey{trusted.PublicKey()}, Revocations: []RevocationChecker{krl}}

	_, err = v.Verify(signCert(t, trusted, certOpts{serial: 13}), nil)
	require.ErrorIs(t, err, ErrRevoked)
	_, err = v.Verify(signCert(t, trusted, certOpts{serial: 14}), nil)
	require.NoError(t, err)

	// A new KRL takes effect without reopening.
	k.RevokeSerial(trusted.PublicKey(), 14)
	data, err = k.Marshal()
	require.NoError(t, err)
	writeFile(t, path+".new", data)
	require.NoError(t, renameFile(path+".new", path))
	_, err = v.Verify(signCert(t, trusted, certOpts{serial: 14}), nil)
	require.ErrorIs(t, err, ErrRevoked)

	// A KRL that stops parsing fails closed.
	writeFile(t, path+".bad", []byte("not a krl at all"))
	require.NoError(t, renameFile(path+".bad", path))
	_, err = v.Verify(signCert(t, trusted, certOpts{serial: 15}), nil)
	require.ErrorIs(t, err, ErrRevocationUnknown)

	_, err = OpenKRLFile(t.TempDir() + "/missing.krl")
	require.Error(t, err)
}

func BenchmarkVerify(b *testing.B) {
	trusted := newCA(b)
	set := &SerialSet{}
	for i := uint64(1); i <= 100000; i++ {
		set.Revoke(trusted.PublicKey(), i*2)
	}
	v := &Verifier{CAs: []ssh.PublicKey{newCA(b).PublicKey(), trusted.PublicKey()}, Revocations: []RevocationChecker{set}}
	cert := signCert(b, trusted, certOpts{serial: 3, principals: []string{
		"git:read:demo/app:refs/heads/main", "git:write:demo/app:refs/heads/feature/*",
	}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(cert, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawEd25519Verify is the floor Verify is compared against: one
// ed25519 signature check, which every certificate costs.
func BenchmarkRawEd25519Verify(b *testing.B) {
	trusted := newCA(b)
	cert := signCert(b, trusted, certOpts{})
	signed := certSignedBytes(cert)
	b.ReportAllocs()
	for b.Loop() {
		if err := trusted.PublicKey().Verify(signed, cert.Signature); err != nil {
			b.Fatal(err)
		}
	}
}
