package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// caKeys caches one CA private key per type for the whole test binary: RSA
// keys are slow to make, and each one comes from ca.Init so that the
// cached keys are exactly what Init writes.
var caKeys sync.Map // ca.KeyType -> func() (crypto.Signer, error)

func caKey(tb testing.TB, kt ca.KeyType) crypto.Signer {
	tb.Helper()
	f, _ := caKeys.LoadOrStore(kt, sync.OnceValues(func() (crypto.Signer, error) {
		dir, err := os.MkdirTemp("", "jitssh-ca-key-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if _, err := ca.Init(filepath.Join(dir, "ca"), kt); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(filepath.Join(dir, "ca", ca.PrivateKeyFile))
		if err != nil {
			return nil, err
		}
		raw, err := ssh.ParseRawPrivateKey(data)
		if err != nil {
			return nil, err
		}
		return raw.(crypto.Signer), nil
	}))
	key, err := f.(func() (crypto.Signer, error))()
	require.NoError(tb, err)
	return key
}

// newCA returns an Authority of type kt whose clock reads now.
func newCA(tb testing.TB, kt ca.KeyType, now time.Time) *ca.Authority {
	tb.Helper()
	a, err := ca.New(caKey(tb, kt))
	require.NoError(tb, err)
	a.Now = func() time.Time { return now }
	return a
}

// userKey returns a fresh ed25519 public key.
func userKey(tb testing.TB) ssh.PublicKey {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	k, err := ssh.NewPublicKey(pub)
	require.NoError(tb, err)
	return k
}

func ecdsaUserKey(tb testing.TB, c elliptic.Curve) ssh.PublicKey {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(c, rand.Reader)
	require.NoError(tb, err)
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	require.NoError(tb, err)
	return k
}

// rsaKeys caches one RSA key per size, for the same reason as caKeys.
var rsaKeys sync.Map // int -> func() (*rsa.PrivateKey, error)

func rsaKey(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	f, _ := rsaKeys.LoadOrStore(bits, sync.OnceValues(func() (*rsa.PrivateKey, error) {
		return rsa.GenerateKey(rand.Reader, bits)
	}))
	key, err := f.(func() (*rsa.PrivateKey, error))()
	require.NoError(tb, err)
	return key
}

func rsaUserKey(tb testing.TB, bits int) ssh.PublicKey {
	tb.Helper()
	k, err := ssh.NewPublicKey(&rsaKey(tb, bits).PublicKey)
	require.NoError(tb, err)
	return k
}

// skEd25519Key and skECDSAKey build security-key public keys from their
// wire form (PROTOCOL.u2f), as no FIDO token is at hand.
func skEd25519Key(tb testing.TB) ssh.PublicKey {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	k, err := ssh.ParsePublicKey(ssh.Marshal(struct {
		Type, Key, App string
	}{ssh.KeyAlgoSKED25519, string(pub), "ssh:"}))
	require.NoError(tb, err)
	return k
}

func skECDSAKey(tb testing.TB) ssh.PublicKey {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	point, err := priv.PublicKey.ECDH()
	require.NoError(tb, err)
	k, err := ssh.ParsePublicKey(ssh.Marshal(struct {
		Type, Curve, Point, App string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", string(point.Bytes()), "ssh:"}))
	require.NoError(tb, err)
	return k
}

func grant(tb testing.TB, s string) principals.Grant {
	tb.Helper()
	g, err := principals.Parse(s)
	require.NoError(tb, err)
	return g
}

// counter is an in-memory SerialSource that counts how often it was asked.
type counter struct {
	mu    sync.Mutex
	next  uint64
	calls int
	err   error
}

func (c *counter) NextSerial() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return 0, c.err
	}
	c.next++
	return c.next, nil
}

func (c *counter) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// fixed is a SerialSource that always returns the same value.
type fixed uint64

func (f fixed) NextSerial() (uint64, error) { return uint64(f), nil }
