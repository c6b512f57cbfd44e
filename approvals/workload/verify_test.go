package workload

import (
	"crypto"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

func TestVerify(t *testing.T) {
	key, other, ec := testKeys(t)
	v, _ := fileVerifier(t, jwks(t, map[string]crypto.Signer{"k1": key, "ec": ec}))
	with := func(change map[string]any) map[string]any {
		c := claims()
		for k, val := range change {
			if val == nil {
				delete(c, k)
			} else {
				c[k] = val
			}
		}
		return c
	}
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	for _, tc := range []struct {
		name  string
		token string
		want  error // nil: accepted
		// signed: a refusal whose claims are the issuer's word.
		signed bool
	}{
		{"RS256", mint(t, jose.RS256, key, "k1", claims()), nil, false},
		{"ES256", mint(t, jose.ES256, ec, "ec", claims()), nil, false},
		{"no kid: every key is tried", mint(t, jose.RS256, key, "", claims()), nil, false},
		{"audience in a list", mint(t, jose.RS256, key, "k1", with(map[string]any{"aud": []string{"other", testAudience}})), nil, false},
		{"expired within the skew", mint(t, jose.RS256, key, "k1", with(map[string]any{"exp": at(-20 * time.Second)})), nil, false},
		{"expired", mint(t, jose.RS256, key, "k1", with(map[string]any{"exp": at(-31 * time.Second)})), ErrExpired, true},
		{"not yet valid within the skew", mint(t, jose.RS256, key, "k1", with(map[string]any{"nbf": at(20 * time.Second)})), nil, false},
		{"not yet valid", mint(t, jose.RS256, key, "k1", with(map[string]any{"nbf": at(time.Minute)})), ErrNotYetValid, true},
		{"issued in the future", mint(t, jose.RS256, key, "k1", with(map[string]any{"iat": at(time.Minute)})), ErrNotYetValid, true},
		{"no expiry", mint(t, jose.RS256, key, "k1", with(map[string]any{"exp": nil})), ErrMissingClaim, true},
		{"valid for too long", mint(t, jose.RS256, key, "k1", with(map[string]any{"exp": at(25 * time.Hour)})), ErrLifetime, true},
		{"no subject", mint(t, jose.RS256, key, "k1", with(map[string]any{"sub": nil})), ErrMissingClaim, true},
		{"wrong audience", mint(t, jose.RS256, key, "k1", with(map[string]any{"aud": "https://github.com/demo"})), ErrAudience, true},
		{"audience prefix is not the audience", mint(t, jose.RS256, key, "k1", with(map[string]any{"aud": testAudience + "x"})), ErrAudience, true},
		{"wrong issuer", mint(t, jose.RS256, key, "k1", with(map[string]any{"iss": "https://evil.example"})), ErrIssuer, false},
		{"issuer with a trailing slash", mint(t, jose.RS256, key, "k1", with(map[string]any{"iss": testIssuer + "/"})), ErrIssuer, false},
		{"unknown key", mint(t, jose.RS256, other, "k9", claims()), ErrUnknownKey, false},
		{"other signing key under a known kid", mint(t, jose.RS256, other, "k1", claims()), ErrSignature, false},
		{"other signing key without kid", mint(t, jose.RS256, other, "", claims()), ErrSignature, false},
		{"alg none", unsigned(t, claims()), ErrAlgorithm, false},
		{"HS256 with the public key as secret", mint(t, jose.HS256, publicPEM(t, key), "k1", claims()), ErrAlgorithm, false},
		{"HS256 with the modulus as secret", mint(t, jose.HS256, key.N.Bytes(), "k1", claims()), ErrAlgorithm, false},
		{"PS256 is not on the list", mint(t, jose.PS256, key, "k1", claims()), ErrAlgorithm, false},
		{"not a JWT", "hello", ErrMalformed, false},
		{"JSON serialization", `{"payload":"e30","signatures":[]}`, ErrMalformed, false},
		{"tampered claims", tamper(t, mint(t, jose.RS256, key, "k1", claims())), ErrSignature, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(ctx, tc.token, now)
			if tc.want == nil {
				require.NoError(t, err)
				require.Equal(t, "ci", id.Issuer)
				require.Equal(t, "demo/app", id.Claims["repository"])
				require.Equal(t, "true", id.Claims["ref_protected"], "non-string claims read as their JSON text")
				require.Equal(t, testIssuer+"#jti:3f1b", id.ID)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, id)
			var r *Refusal
			require.True(t, errors.As(err, &r))
			require.Equal(t, tc.signed, r.Signed != nil, "signed: %v", err)
			if r.Signed != nil {
				require.Equal(t, "demo/app", r.Signed.Claims["repository"])
			}
		})
	}
}

// tamper changes the repository claim of a signed token, keeping its
// signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := splitToken(tok)
	c := claims()
	c["repository"] = "evil/app"
	forged := unsigned(t, c)
	return parts[0] + "." + splitToken(forged)[1] + "." + parts[2]
}

func splitToken(tok string) []string {
	var out []string
	start := 0
	for i := range len(tok) {
		if tok[i] == '.' {
			out = append(out, tok[start:i])
			start = i + 1
		}
	}
	return append(out, tok[start:])
}

func TestReplayID(t *testing.T) {
	key, _, _ := testKeys(t)
	v, _ := fileVerifier(t, jwks(t, map[string]crypto.Signer{"k1": key}))
	c := claims()
	delete(c, "jti")
	a := mint(t, jose.RS256, key, "k1", c)
	c["run_id"] = "43"
	b := mint(t, jose.RS256, key, "k1", c)
	ida, err := v.Verify(ctx, a, now)
	require.NoError(t, err)
	idb, err := v.Verify(ctx, b, now)
	require.NoError(t, err)
	require.NotEqual(t, ida.ID, idb.ID, "tokens without jti are told apart by their hash")
	require.Contains(t, ida.ID, "#token-sha256:")
	require.Equal(t, testIssuer+"#jti-sha256:", ReplayID(testIssuer, "a b", "")[:len(testIssuer)+12])
}

// An unknown kid refreshes the key set at most once per interval, and a
// key added to the set is found on the refresh after that.
func TestUnknownKIDRefreshesOncePerInterval(t *testing.T) {
	key, other, _ := testKeys(t)
	v, path := fileVerifier(t, jwks(t, map[string]crypto.Signer{"k1": key}))
	ks := v.byName["ci"]
	_, err := v.Verify(ctx, mint(t, jose.RS256, key, "k1", claims()), now)
	require.NoError(t, err)
	require.Equal(t, 1, ks.fetches)

	rotated := mint(t, jose.RS256, other, "k2", claims())
	_, err = v.Verify(ctx, rotated, now.Add(DefaultRefreshInterval-time.Second))
	require.ErrorIs(t, err, ErrUnknownKey)
	require.Equal(t, 1, ks.fetches, "the keys were fetched less than an interval ago")
	later := now.Add(DefaultRefreshInterval)
	for range 5 {
		_, err = v.Verify(ctx, rotated, later)
		require.ErrorIs(t, err, ErrUnknownKey)
	}
	require.Equal(t, 2, ks.fetches, "five tokens with an unknown kid, one refresh")

	require.NoError(t, os.WriteFile(path, jwks(t, map[string]crypto.Signer{"k1": key, "k2": other}), 0o600))
	_, err = v.Verify(ctx, rotated, later.Add(DefaultRefreshInterval-time.Second))
	require.ErrorIs(t, err, ErrUnknownKey, "still within the interval")
	require.Equal(t, 2, ks.fetches)
	_, err = v.Verify(ctx, rotated, later.Add(DefaultRefreshInterval))
	require.NoError(t, err, "the interval passed: the rotated key is fetched")
	require.Equal(t, 3, ks.fetches)
}

// Keys older than the maximum age are fetched again even for a known kid,
// so a key the issuer withdrew stops working.
func TestKeysExpireFromTheCache(t *testing.T) {
	key, other, _ := testKeys(t)
	v, path := fileVerifier(t, jwks(t, map[string]crypto.Signer{"k1": key}))
	tok := mint(t, jose.RS256, key, "k1", claims())
	_, err := v.Verify(ctx, tok, now)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, jwks(t, map[string]crypto.Signer{"k2": other}), 0o600))
	later := now.Add(DefaultMaxKeyAge)
	c := claims()
	c["exp"], c["iat"], c["nbf"] = later.Add(time.Minute).Unix(), later.Unix(), later.Unix()
	_, err = v.Verify(ctx, mint(t, jose.RS256, key, "k1", c), later)
	require.ErrorIs(t, err, ErrUnknownKey)
}

// jwksServer serves a discovery document and a key set over TLS on
// loopback, counting the key set fetches.
func jwksServer(t *testing.T, set []byte, issuer *string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var fetches atomic.Int32
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"` + *issuer + `","jwks_uri":"` + srv.URL + `/keys"}`))
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write(set)
	})
	return srv, &fetches
}

func TestDiscoveryAndJWKSURL(t *testing.T) {
	key, _, _ := testKeys(t)
	set := jwks(t, map[string]crypto.Signer{"k1": key})
	var issuer string
	srv, fetches := jwksServer(t, set, &issuer)
	issuer = srv.URL
	c := claims()
	c["iss"] = srv.URL
	tok := mint(t, jose.RS256, key, "k1", c)

	for _, tc := range []struct {
		name string
		iss  Issuer
	}{
		{"discovery", Issuer{Name: "ci", Issuer: srv.URL, Audience: testAudience}},
		{"jwks_url", Issuer{Name: "ci", Issuer: srv.URL, Audience: testAudience, JWKSURL: srv.URL + "/keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fetches.Load()
			v, err := New([]Issuer{tc.iss}, Options{HTTPClient: srv.Client()})
			require.NoError(t, err)
			id, err := v.Verify(ctx, tok, now)
			require.NoError(t, err)
			require.Equal(t, "demo/app", id.Claims["repository"])
			_, err = v.Verify(ctx, tok, now.Add(time.Second))
			require.NoError(t, err)
			require.Equal(t, before+1, fetches.Load(), "keys are cached")
		})
	}

	t.Run("discovery naming another issuer", func(t *testing.T) {
		issuer = "https://evil.example"
		defer func() { issuer = srv.URL }()
		v, err := New([]Issuer{{Name: "ci", Issuer: srv.URL, Audience: testAudience}}, Options{HTTPClient: srv.Client()})
		require.NoError(t, err)
		_, err = v.Verify(ctx, tok, now)
		require.ErrorIs(t, err, ErrKeySet)
		require.ErrorContains(t, err, "names issuer")
	})
}

func TestIssuerCheck(t *testing.T) {
	ok := Issuer{Name: "github", Issuer: "https://token.actions.githubusercontent.com", Audience: "jitssh"}
	require.Empty(t, ok.Check())
	for _, tc := range []struct {
		name   string
		change func(*Issuer)
		want   string
	}{
		{"bad name", func(i *Issuer) { i.Name = "git hub" }, "name"},
		{"http issuer", func(i *Issuer) { i.Issuer = "http://ci.example" }, "https://"},
		{"no audience", func(i *Issuer) { i.Audience = "" }, "audience"},
		{"both key sources", func(i *Issuer) { i.JWKSURL, i.JWKSFile = "https://x.example/k", "k.json" }, "not both"},
		{"http jwks_url", func(i *Issuer) { i.JWKSURL = "http://x.example/k" }, "jwks_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := ok
			tc.change(&i)
			require.Contains(t, joined(i.Check()), tc.want)
		})
	}
}

func joined(s []string) string {
	out := ""
	for _, x := range s {
		out += x + "\n"
	}
	return out
}

func TestParseJWKSSkipsWhatCannotSign(t *testing.T) {
	key, _, ec := testKeys(t)
	good := jwks(t, map[string]crypto.Signer{"k1": key, "ec": ec})
	var set map[string][]map[string]any
	require.NoError(t, jsonUnmarshal(good, &set))
	set["keys"] = append(set["keys"],
		map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
		map[string]any{"kty": "RSA", "use": "enc", "kid": "enc", "n": set["keys"][0]["n"], "e": "AQAB"},
		map[string]any{"kty": "OKP", "crv": "Ed448", "kid": "x", "x": "AAAA"},
	)
	keys, err := ParseJWKS(mustJSON(t, set))
	require.NoError(t, err)
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KeyID)
	}
	require.ElementsMatch(t, []string{"k1", "ec"}, kids)
	_, err = ParseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	require.Error(t, err)
}
