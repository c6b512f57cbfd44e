package workload

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

// now is the time every check in these tests runs at.
var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testIssuer   = "https://ci.example"
	testAudience = "jitssh"
)

var (
	keysOnce         sync.Once
	rsaKey, otherRSA *rsa.PrivateKey
	ecKey            *ecdsa.PrivateKey
)

// testKeys returns the issuer's RSA key, another RSA key nobody trusts,
// and an EC key, generated once per test binary.
func testKeys(tb testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey, *ecdsa.PrivateKey) {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return rsaKey, otherRSA, ecKey
}

// jwks returns the JSON key set of the public keys, each with its kid.
func jwks(tb testing.TB, keys map[string]crypto.Signer) []byte {
	tb.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	require.NoError(tb, err)
	return b
}

// claims are a GitHub Actions token's claims, valid at now.
func claims() map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "repo:demo/app:ref:refs/heads/main",
		"jti": "3f1b", "iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "repository": "demo/app", "ref": "refs/heads/main",
		"run_id": "42", "ref_protected": true,
	}
}

// mint signs claims with key under alg, naming kid in the header.
func mint(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	var sk jose.SigningKey
	if kid != "" {
		sk = jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}
	} else {
		sk = jose.SigningKey{Algorithm: alg, Key: key}
	}
	signer, err := jose.NewSigner(sk, opts)
	require.NoError(tb, err)
	payload, err := json.Marshal(c)
	require.NoError(tb, err)
	obj, err := signer.Sign(payload)
	require.NoError(tb, err)
	tok, err := obj.CompactSerialize()
	require.NoError(tb, err)
	return tok
}

// unsigned is an "alg": "none" token over c.
func unsigned(tb testing.TB, c map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(c)
	require.NoError(tb, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// publicPEM is the issuer's public key as PEM, the "secret" of the
// classic HS256 key-confusion attack.
func publicPEM(tb testing.TB, k *rsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(tb, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// fileVerifier trusts testIssuer with the given key set in a file, and
// returns the file so that a test can rotate keys.
func fileVerifier(tb testing.TB, set []byte) (*Verifier, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "jwks.json")
	require.NoError(tb, os.WriteFile(path, set, 0o600))
	v, err := New([]Issuer{{Name: "ci", Issuer: testIssuer, Audience: testAudience, JWKSFile: path}}, Options{})
	require.NoError(tb, err)
	return v, path
}

var ctx = context.Background()

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	require.NoError(tb, err)
	return b
}
