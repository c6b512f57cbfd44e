package workload

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/fuzz")

// fuzzKey is the issuer key the fuzz seeds are signed with.
func fuzzKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	data, err := os.ReadFile("testdata/issuer.pem")
	require.NoError(tb, err)
	block, _ := pem.Decode(data)
	require.NotNil(tb, block)
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	require.NoError(tb, err)
	return k
}

// TestFuzzSeeds writes, with -update, the seed tokens of FuzzVerify: one
// the verifier accepts and one of each kind of forgery it refuses.
func TestFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seeds")
	}
	key := fuzzKey(t)
	_, other, _ := testKeys(t)
	seeds := map[string]string{
		"valid":        mint(t, jose.RS256, key, "k1", claims()),
		"alg_none":     unsigned(t, claims()),
		"hs256_pubkey": mint(t, jose.HS256, publicPEM(t, key), "k1", claims()),
		"other_key":    mint(t, jose.RS256, other, "k1", claims()),
		"unknown_kid":  mint(t, jose.RS256, key, "k9", claims()),
		"garbage":      "eyJhbGciOiJSUzI1NiJ9.e30",
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, tok := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", tok)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
}

// FuzzVerify feeds Verify arbitrary tokens: it must never panic, and must
// accept only a token signed with an asymmetric algorithm by the issuer's
// key, for the configured issuer and audience.
func FuzzVerify(f *testing.F) {
	key := fuzzKey(f)
	v, _ := fileVerifier(f, jwks(f, map[string]crypto.Signer{"k1": key}))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(ctx, tok, now)
		if err != nil {
			var r *Refusal
			require.ErrorAs(t, err, &r)
			require.Nil(t, id)
			return
		}
		h, _, perr := peek(strings.TrimSpace(tok))
		require.NoError(t, perr)
		require.True(t, slices.Contains(Algorithms, jose.SignatureAlgorithm(h.Alg)), "accepted alg %q", h.Alg)
		require.Equal(t, testIssuer, id.URL)
		require.True(t, id.Expiry.After(now.Add(-DefaultSkew)))
		jws, err := jose.ParseSignedCompact(strings.TrimSpace(tok), Algorithms)
		require.NoError(t, err)
		_, err = jws.Verify(&key.PublicKey)
		require.NoError(t, err, "accepted a token the issuer's key did not sign")
	})
}

// FuzzParseJWKS: whatever a key set holds, only public asymmetric signing
// keys come out.
func FuzzParseJWKS(f *testing.F) {
	key := fuzzKey(f)
	f.Add(jwks(f, map[string]crypto.Signer{"k1": key}))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err != nil {
			return
		}
		require.NotEmpty(t, keys)
		for _, k := range keys {
			require.True(t, k.IsPublic(), "a private key came out")
			_, symmetric := k.Key.([]byte)
			require.False(t, symmetric)
		}
	})
}
