package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSSize bounds a key set or discovery document.
const maxJWKSSize = 1 << 20

// minRSABits is the smallest RSA key a key set may hold.
const minRSABits = 2048

// keySet is one issuer's public keys, as last fetched.
type keySet struct {
	iss    Issuer
	client *http.Client
	opts   *Options

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	loaded  time.Time // when keys were last fetched successfully
	tried   time.Time // when a fetch was last attempted
	fetches int       // fetches attempted, for tests
	lastErr error
}

// lookup returns the keys that may have signed a token with this kid
// (every key when kid is empty). It fetches the set when it has none yet
// or it is older than MaxKeyAge, and when kid is not among the keys, but
// never twice within RefreshInterval.
func (k *keySet) lookup(ctx context.Context, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	stale := k.loaded.IsZero() || now.Sub(k.loaded) >= k.opts.MaxKeyAge
	if stale && k.mayFetch(now) {
		k.fetch(ctx, now)
	}
	if match := withKID(k.keys, kid); len(match) > 0 {
		return match, nil
	}
	if !k.loaded.IsZero() && k.mayFetch(now) {
		k.fetch(ctx, now)
		if match := withKID(k.keys, kid); len(match) > 0 {
			return match, nil
		}
	}
	if k.loaded.IsZero() && k.lastErr != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeySet, k.iss.Name, k.lastErr)
	}
	if kid == "" {
		return nil, fmt.Errorf("%w: issuer %s has no usable key", ErrUnknownKey, k.iss.Name)
	}
	return nil, fmt.Errorf("%w: issuer %s has no key %q", ErrUnknownKey, k.iss.Name, truncate(kid, 64))
}

func (k *keySet) mayFetch(now time.Time) bool {
	return k.tried.IsZero() || now.Sub(k.tried) >= k.opts.RefreshInterval || now.Before(k.tried)
}

// fetch replaces the keys with a fresh copy; on failure the old ones stay.
func (k *keySet) fetch(ctx context.Context, now time.Time) {
	k.tried = now
	k.fetches++
	keys, err := k.read(ctx)
	if err != nil {
		k.lastErr = err
		return
	}
	k.keys, k.loaded, k.lastErr = keys, now, nil
}

func (k *keySet) read(ctx context.Context) ([]jose.JSONWebKey, error) {
	var data []byte
	var err error
	switch {
	case k.iss.JWKSFile != "":
		data, err = readFile(k.iss.JWKSFile)
	case k.iss.JWKSURL != "":
		data, err = k.get(ctx, k.iss.JWKSURL)
	default:
		var uri string
		if uri, err = k.discover(ctx); err == nil {
			data, err = k.get(ctx, uri)
		}
	}
	if err != nil {
		return nil, err
	}
	return ParseJWKS(data)
}

// discover reads the jwks_uri of the issuer's discovery document, which
// must name the issuer exactly.
func (k *keySet) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(k.iss.Issuer, "/") + "/.well-known/openid-configuration"
	data, err := k.get(ctx, u)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("discovery document %s: %w", u, err)
	}
	if doc.Issuer != k.iss.Issuer {
		return "", fmt.Errorf("discovery document %s names issuer %q, not %q", u, truncate(doc.Issuer, 200), k.iss.Issuer)
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

func (k *keySet) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("get %s: larger than %d bytes", u, maxJWKSSize)
	}
	return data, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxJWKSSize)
	}
	return data, nil
}

// ParseJWKS reads a JSON Web Key Set and returns its public signing keys.
// Keys of a type or curve it does not know, keys for encryption ("use":
// "enc"), symmetric keys and RSA keys under 2048 bits are left out, so one
// odd key does not take the others down; private keys are reduced to their
// public part. A set left with no key is an error.
func ParseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var out []jose.JSONWebKey
	for _, msg := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(msg, &k); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		switch key := pub.Key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default: // symmetric keys, or none
			continue
		}
		if !pub.Valid() {
			continue
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("key set: no usable public signing key")
	}
	return out, nil
}

// withKID returns the keys a token with this kid may be checked against.
func withKID(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
