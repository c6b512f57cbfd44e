package ca_test

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// issued is the test clock: a whole second, so validity bounds are exact.
var issued = time.Unix(1_750_000_000, 0)

// checker verifies certificates against CA key pub as a server would at
// time at.
func checker(pub ssh.PublicKey, at time.Time) *ssh.CertChecker {
	return &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return string(auth.Marshal()) == string(pub.Marshal())
		},
		Clock:                    func() time.Time { return at },
		SupportedCriticalOptions: []string{ca.SourceAddressOption},
	}
}

func TestSignShape(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	key := userKey(t)
	serials := &counter{next: 41}
	req := ca.CertRequest{
		PublicKey: key,
		KeyID:     "alice/req-01J0000000000000000000",
		Grants: []principals.Grant{
			grant(t, "git:write:demo/app:refs/heads/feature/*"),
			grant(t, "git:read:demo/app:refs/heads/main"),
			grant(t, "git:write:demo/app:refs/heads/feature/*"),
		},
		TTL: 90 * time.Minute,
	}
	cert, err := a.Sign(req, serials)
	require.NoError(t, err)

	assert.Equal(t, uint32(ssh.UserCert), cert.CertType)
	assert.Equal(t, key.Marshal(), cert.Key.Marshal())
	assert.Equal(t, req.KeyID, cert.KeyId)
	assert.Equal(t, uint64(42), cert.Serial)
	assert.Equal(t, []string{
		"git:write:demo/app:refs/heads/feature/*",
		"git:read:demo/app:refs/heads/main",
	}, cert.ValidPrincipals, "grants in order, duplicates dropped, nothing else")
	assert.Equal(t, uint64(issued.Add(-ca.DefaultBackdate).Unix()), cert.ValidAfter)
	assert.Equal(t, uint64(issued.Add(90*time.Minute).Unix()), cert.ValidBefore)
	assert.Empty(t, cert.Extensions, "no pty, forwarding, agent, X11 or user rc")
	assert.Empty(t, cert.CriticalOptions)
	assert.Equal(t, a.PublicKey().Marshal(), cert.SignatureKey.Marshal())
	assert.Equal(t, 1, serials.Calls())

	// The certificate survives the wire: what OpenSSH reads is the same.
	back, _, _, _, err := ssh.ParseAuthorizedKey(ssh.MarshalAuthorizedKey(cert))
	require.NoError(t, err)
	assert.Equal(t, cert.Marshal(), back.Marshal())

	for _, p := range cert.ValidPrincipals {
		assert.NoError(t, checker(a.PublicKey(), issued).CheckCert(p, cert))
	}
	assert.Error(t, checker(a.PublicKey(), issued).CheckCert("alice", cert), "no bare user name")
}

func TestSignValidityWindow(t *testing.T) {
	tests := []struct {
		name       string
		skew       time.Duration
		ttl        time.Duration
		now        time.Time
		wantAfter  int64
		wantBefore int64
	}{
		{"default backdate", ca.DefaultBackdate, time.Hour, issued, issued.Unix() - 60, issued.Unix() + 3600},
		{"no skew", 0, 5 * time.Second, issued, issued.Unix(), issued.Unix() + 5},
		{"negative skew counts as none", -time.Hour, time.Second, issued, issued.Unix(), issued.Unix() + 1},
		{"longer skew", 5 * time.Minute, 8 * time.Hour, issued, issued.Unix() - 300, issued.Unix() + 8*3600},
		{"fractional second now", time.Minute, time.Hour, issued.Add(999 * time.Millisecond), issued.Unix() - 60, issued.Unix() + 3600},
		{"max TTL", time.Minute, ca.DefaultMaxTTL, issued, issued.Unix() - 60, issued.Add(ca.DefaultMaxTTL).Unix()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newCA(t, ca.Ed25519, tt.now)
			a.Backdate = tt.skew
			cert, err := a.Sign(ca.CertRequest{
				PublicKey: userKey(t), KeyID: "alice/req-1",
				Grants: []principals.Grant{grant(t, "git:read:demo/app:*")}, TTL: tt.ttl,
			}, &counter{})
			require.NoError(t, err)
			assert.Equal(t, uint64(tt.wantAfter), cert.ValidAfter)
			assert.Equal(t, uint64(tt.wantBefore), cert.ValidBefore)

			p := cert.ValidPrincipals[0]
			c := checker(a.PublicKey(), time.Unix(tt.wantAfter, 0))
			assert.NoError(t, c.CheckCert(p, cert), "valid from ValidAfter")
			c.Clock = func() time.Time { return time.Unix(tt.wantAfter-1, 0) }
			assert.Error(t, c.CheckCert(p, cert), "not valid before ValidAfter")
			c.Clock = func() time.Time { return time.Unix(tt.wantBefore-1, 0) }
			assert.NoError(t, c.CheckCert(p, cert), "valid until ValidBefore")
			c.Clock = func() time.Time { return time.Unix(tt.wantBefore, 0) }
			assert.Error(t, c.CheckCert(p, cert), "expired at ValidBefore")
		})
	}
}

func TestSignSourceAddress(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	for _, list := range []string{
		"127.0.0.1",
		"10.0.0.0/8",
		"10.0.0.0/8,192.168.1.0/24,::1,2001:db8::/32",
		"0.0.0.0/0",
		"192.0.2.7/32",
	} {
		cert, err := a.Sign(ca.CertRequest{
			PublicKey: userKey(t), KeyID: "alice/req-1", TTL: time.Hour,
			Grants: []principals.Grant{grant(t, "git:read:demo/app:*")}, SourceAddress: list,
		}, &counter{})
		require.NoError(t, err, list)
		assert.Equal(t, map[string]string{"source-address": list}, cert.CriticalOptions)
		assert.Empty(t, cert.Extensions)
	}
}

func TestSignEveryKeyType(t *testing.T) {
	wantFormat := map[ca.KeyType]string{
		ca.Ed25519:   ssh.KeyAlgoED25519,
		ca.ECDSAP256: ssh.KeyAlgoECDSA256,
		ca.ECDSAP384: ssh.KeyAlgoECDSA384,
		ca.RSA3072:   ssh.KeyAlgoRSASHA512, // never ssh-rsa (SHA-1), never rsa-sha2-256
		ca.RSA4096:   ssh.KeyAlgoRSASHA512,
	}
	users := map[string]ssh.PublicKey{
		"ed25519":    userKey(t),
		"ecdsa-p256": ecdsaUserKey(t, elliptic.P256()),
		"ecdsa-p384": ecdsaUserKey(t, elliptic.P384()),
		"ecdsa-p521": ecdsaUserKey(t, elliptic.P521()),
		"rsa-2048":   rsaUserKey(t, 2048),
		"sk-ed25519": skEd25519Key(t),
		"sk-ecdsa":   skECDSAKey(t),
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ca.New(otherKey)
	require.NoError(t, err)
	for _, kt := range ca.KeyTypes {
		a := newCA(t, kt, issued)
		for name, key := range users {
			t.Run(string(kt)+"/"+name, func(t *testing.T) {
				cert, err := a.Sign(ca.CertRequest{
					PublicKey: key, KeyID: "alice/req-1", TTL: time.Hour,
					Grants: []principals.Grant{grant(t, "git:read:demo/app:refs/heads/main")},
				}, &counter{})
				require.NoError(t, err)
				assert.Equal(t, wantFormat[kt], cert.Signature.Format)
				assert.Equal(t, key.Marshal(), cert.Key.Marshal())

				p := "git:read:demo/app:refs/heads/main"
				assert.NoError(t, checker(a.PublicKey(), issued).CheckCert(p, cert))
				_, err = checker(other.PublicKey(), issued).Authenticate(connUser(p), cert)
				assert.Error(t, err, "another CA's key does not vouch for it")
				perms, err := checker(a.PublicKey(), issued).Authenticate(connUser(p), cert)
				require.NoError(t, err)
				assert.Empty(t, perms.Extensions)
			})
		}
	}
}

// connUser is the ConnMetadata of a login as user.
type connUser string

func (c connUser) User() string        { return string(c) }
func (connUser) SessionID() []byte     { return nil }
func (connUser) ClientVersion() []byte { return nil }
func (connUser) ServerVersion() []byte { return nil }
func (connUser) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (connUser) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestSignRejects(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	good := func() ca.CertRequest {
		return ca.CertRequest{
			PublicKey: userKey(t),
			KeyID:     "alice/req-1",
			Grants:    []principals.Grant{grant(t, "git:read:demo/app:refs/heads/main")},
			TTL:       time.Hour,
		}
	}
	signed := &ssh.Certificate{Key: userKey(t), CertType: ssh.UserCert, ValidPrincipals: []string{"git:read:demo/app:*"}, ValidBefore: ssh.CertTimeInfinity}
	caSigner, err := ssh.NewSignerFromSigner(caKey(t, ca.ECDSAP256))
	require.NoError(t, err)
	require.NoError(t, signed.SignCert(rand.Reader, caSigner))

	tests := []struct {
		name   string
		modify func(*ca.CertRequest)
		want   error
	}{
		{"zero TTL", func(r *ca.CertRequest) { r.TTL = 0 }, ca.ErrBadTTL},
		{"negative TTL", func(r *ca.CertRequest) { r.TTL = -time.Hour }, ca.ErrBadTTL},
		{"TTL under a second", func(r *ca.CertRequest) { r.TTL = 999 * time.Millisecond }, ca.ErrBadTTL},
		{"TTL over the cap", func(r *ca.CertRequest) { r.TTL = ca.DefaultMaxTTL + time.Second }, ca.ErrBadTTL},
		{"no grants", func(r *ca.CertRequest) { r.Grants = nil }, ca.ErrNoGrants},
		{"empty grants", func(r *ca.CertRequest) { r.Grants = []principals.Grant{} }, ca.ErrNoGrants},
		{"more grants than OpenSSH reads", func(r *ca.CertRequest) {
			r.Grants = nil
			for i := range ca.MaxGrants + 1 {
				r.Grants = append(r.Grants, principals.Grant{Access: principals.Read, Repo: fmt.Sprintf("demo/r%d", i), Ref: "*"})
			}
		}, ca.ErrTooManyGrants},
		{"zero grant", func(r *ca.CertRequest) { r.Grants = append(r.Grants, principals.Grant{}) }, ca.ErrBadGrant},
		{"grant with bad access", func(r *ca.CertRequest) {
			r.Grants = []principals.Grant{{Access: 9, Repo: "demo/app", Ref: "*"}}
		}, ca.ErrBadGrant},
		{"grant with .git repo", func(r *ca.CertRequest) {
			r.Grants = []principals.Grant{{Access: principals.Read, Repo: "demo/app.git", Ref: "*"}}
		}, ca.ErrBadGrant},
		{"grant with traversal", func(r *ca.CertRequest) {
			r.Grants = []principals.Grant{{Access: principals.Read, Repo: "demo/../app", Ref: "*"}}
		}, ca.ErrBadGrant},
		{"grant with colon in ref", func(r *ca.CertRequest) {
			r.Grants = []principals.Grant{{Access: principals.Write, Repo: "demo/app", Ref: "refs/heads/a:b"}}
		}, ca.ErrBadGrant},
		{"grant with bad ref pattern", func(r *ca.CertRequest) {
			r.Grants = []principals.Grant{{Access: principals.Write, Repo: "demo/app", Ref: "refs/heads/feat*"}}
		}, ca.ErrBadGrant},
		{"empty key ID", func(r *ca.CertRequest) { r.KeyID = "" }, ca.ErrBadKeyID},
		{"key ID with space", func(r *ca.CertRequest) { r.KeyID = "alice req-1" }, ca.ErrBadKeyID},
		{"key ID with newline", func(r *ca.CertRequest) { r.KeyID = "alice/req-1\nroot" }, ca.ErrBadKeyID},
		{"key ID with NUL", func(r *ca.CertRequest) { r.KeyID = "alice\x00" }, ca.ErrBadKeyID},
		{"key ID with DEL", func(r *ca.CertRequest) { r.KeyID = "alice\x7f" }, ca.ErrBadKeyID},
		{"key ID not ASCII", func(r *ca.CertRequest) { r.KeyID = "alicé/req-1" }, ca.ErrBadKeyID},
		{"key ID too long", func(r *ca.CertRequest) { r.KeyID = strings.Repeat("a", ca.MaxKeyIDLen+1) }, ca.ErrBadKeyID},
		{"no public key", func(r *ca.CertRequest) { r.PublicKey = nil }, ca.ErrBadPublicKey},
		{"certificate as key", func(r *ca.CertRequest) { r.PublicKey = signed }, ca.ErrBadPublicKey},
		{"RSA 1024", func(r *ca.CertRequest) { r.PublicKey = rsaUserKey(t, 1024) }, ca.ErrBadPublicKey},
		{"RSA 2047", func(r *ca.CertRequest) { r.PublicKey = rsaUserKey(t, 2047) }, ca.ErrBadPublicKey},
		{"the CA key", func(r *ca.CertRequest) { r.PublicKey = a.PublicKey() }, ca.ErrBadPublicKey},
		{"unparsable key", func(r *ca.CertRequest) { r.PublicKey = bogusKey{} }, ca.ErrBadPublicKey},
		{"source address garbage", func(r *ca.CertRequest) { r.SourceAddress = "example.com" }, ca.ErrBadSourceAddress},
		{"source address host bits", func(r *ca.CertRequest) { r.SourceAddress = "10.0.0.1/8" }, ca.ErrBadSourceAddress},
		{"source address bad prefix", func(r *ca.CertRequest) { r.SourceAddress = "10.0.0.0/33" }, ca.ErrBadSourceAddress},
		{"source address empty entry", func(r *ca.CertRequest) { r.SourceAddress = "10.0.0.0/8," }, ca.ErrBadSourceAddress},
		{"source address only comma", func(r *ca.CertRequest) { r.SourceAddress = "," }, ca.ErrBadSourceAddress},
		{"source address space", func(r *ca.CertRequest) { r.SourceAddress = "10.0.0.0/8, 127.0.0.1" }, ca.ErrBadSourceAddress},
		{"source address zone", func(r *ca.CertRequest) { r.SourceAddress = "fe80::1%eth0" }, ca.ErrBadSourceAddress},
		{"source address leading zero", func(r *ca.CertRequest) { r.SourceAddress = "010.0.0.1" }, ca.ErrBadSourceAddress},
		{"source address wildcard", func(r *ca.CertRequest) { r.SourceAddress = "10.0.0.*" }, ca.ErrBadSourceAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := good()
			tt.modify(&req)
			serials := &counter{}
			cert, err := a.Sign(req, serials)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, cert)
			assert.Equal(t, 0, serials.Calls(), "a refused request takes no serial")
			assert.True(t, strings.HasPrefix(err.Error(), "sign certificate for "), err.Error())
		})
	}

	t.Run("good request passes", func(t *testing.T) {
		_, err := a.Sign(good(), &counter{})
		require.NoError(t, err)
	})
}

// bogusKey claims a good type but its wire form does not parse.
type bogusKey struct{}

func (bogusKey) Type() string                        { return ssh.KeyAlgoED25519 }
func (bogusKey) Marshal() []byte                     { return []byte("\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x01x") }
func (bogusKey) Verify([]byte, *ssh.Signature) error { return errors.New("bogus") }

func TestSignMaxTTL(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	req := ca.CertRequest{
		PublicKey: userKey(t), KeyID: "alice/req-1", TTL: 2 * time.Hour,
		Grants: []principals.Grant{grant(t, "git:read:demo/app:*")},
	}
	a.MaxTTL = time.Hour
	_, err := a.Sign(req, &counter{})
	require.ErrorIs(t, err, ca.ErrBadTTL)

	a.MaxTTL = 2 * time.Hour
	_, err = a.Sign(req, &counter{})
	require.NoError(t, err, "TTL equal to the cap")

	a.MaxTTL = 0 // the default cap
	req.TTL = ca.DefaultMaxTTL + time.Second
	_, err = a.Sign(req, &counter{})
	require.ErrorIs(t, err, ca.ErrBadTTL)
}

func TestSignSerialSource(t *testing.T) {
	a := newCA(t, ca.Ed25519, issued)
	req := ca.CertRequest{
		PublicKey: userKey(t), KeyID: "alice/req-1", TTL: time.Hour,
		Grants: []principals.Grant{grant(t, "git:read:demo/app:*")},
	}
	boom := errors.New("disk full")

	_, err := a.Sign(req, &counter{err: boom})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), `sign certificate for "alice/req-1"`)

	_, err = a.Sign(req, fixed(0))
	require.ErrorIs(t, err, ca.ErrBadSerial)

	_, err = a.Sign(req, nil)
	require.ErrorIs(t, err, ca.ErrNoSerialSource)

	cert, err := a.Sign(req, fixed(ca.BreakGlassBit|7))
	require.NoError(t, err)
	assert.Equal(t, ca.BreakGlassBit|7, cert.Serial)
}

func TestSignConcurrently(t *testing.T) {
	a := newCA(t, ca.ECDSAP256, issued)
	serials := &counter{}
	var wg sync.WaitGroup
	got := make([]uint64, 16)
	req := ca.CertRequest{
		PublicKey: userKey(t), KeyID: "alice/req-1", TTL: time.Hour,
		Grants: []principals.Grant{grant(t, "git:read:demo/app:*")},
	}
	for i := range got {
		wg.Go(func() {
			cert, err := a.Sign(req, serials)
			if assert.NoError(t, err) {
				got[i] = cert.Serial
			}
		})
	}
	wg.Wait()
	assert.ElementsMatch(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, got)
}
