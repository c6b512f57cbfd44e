package workload

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults for Options.
const (
	DefaultSkew            = 30 * time.Second
	DefaultRefreshInterval = time.Minute
	DefaultMaxKeyAge       = time.Hour
	DefaultFetchTimeout    = 10 * time.Second
	// MaxLifetime is the longest a token may still be valid for when it
	// is checked: a token is remembered until it expires, so that it is
	// used once, and one valid for years would be remembered for years.
	MaxLifetime = 24 * time.Hour
	// MaxTokenLen bounds a token; CI platforms' tokens are 1-2 KiB.
	MaxTokenLen = 16 << 10
)

// Algorithms are the signature algorithms a token may use: asymmetric
// ones only.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.EdDSA}

// Errors Verify wraps, each in a *Refusal. Callers branch on them; the
// message says what exactly was wrong.
var (
	ErrMalformed      = errors.New("not a signed JWT")
	ErrAlgorithm      = errors.New("signature algorithm not accepted")
	ErrIssuer         = errors.New("issuer not trusted")
	ErrUnknownKey     = errors.New("signing key unknown")
	ErrSignature      = errors.New("bad signature")
	ErrAudience       = errors.New("wrong audience")
	ErrExpired        = errors.New("token expired")
	ErrNotYetValid    = errors.New("token not yet valid")
	ErrLifetime       = errors.New("token valid for too long")
	ErrMissingClaim   = errors.New("required claim missing")
	ErrKeySet         = errors.New("issuer key set unavailable")
	errNotInitialized = errors.New("workload: verifier not initialized")
)

// Refusal is the error of a token Verify refuses.
type Refusal struct {
	Err error  // one of the sentinels above
	Msg string // what exactly, for the caller and the log
	// Signed is the token's identity when its signature verified with
	// a key of the issuer it names and only its claims are refused
	// (expired, other audience): the claims are the issuer's word. Nil
	// otherwise.
	Signed *Identity
	// Claimed is what the token claims, unverified, when its signature did
	// not verify or was never checked: for the log, never to be trusted.
	Claimed map[string]string
}

func (r *Refusal) Error() string { return r.Msg }
func (r *Refusal) Unwrap() error { return r.Err }

// Identity is what a verified token vouches for.
type Identity struct {
	Issuer   string    // the configured issuer's Name
	URL      string    // the token's "iss"
	Audience string    // the configured audience the token holds
	Subject  string    // "sub"
	ID       string    // the token's identity for replay checks, see ReplayID
	Expiry   time.Time // "exp"
	// Claims holds every top-level claim: strings as they are, other
	// values as their compact JSON text (true, 42, ["a","b"]).
	Claims map[string]string
}

// Options tune a Verifier; zero values take the defaults.
type Options struct {
	Skew            time.Duration // allowed clock difference for exp, nbf and iat
	RefreshInterval time.Duration // at most one fetch of an issuer's keys per interval
	MaxKeyAge       time.Duration // keys older than this are fetched again
	FetchTimeout    time.Duration
	HTTPClient      *http.Client // nil: a client with FetchTimeout
}

// Verifier checks tokens against a fixed list of issuers, caching their
// keys. It is safe for concurrent use.
type Verifier struct {
	opts   Options
	byURL  map[string]*keySet
	byName map[string]*keySet
}

// New returns a Verifier for issuers, which must each pass Check and have
// distinct names and issuer URLs. It reads nothing until the first token.
func New(issuers []Issuer, o Options) (*Verifier, error) {
	if o.Skew <= 0 {
		o.Skew = DefaultSkew
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.MaxKeyAge <= 0 {
		o.MaxKeyAge = DefaultMaxKeyAge
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.FetchTimeout}
	}
	v := &Verifier{opts: o, byURL: map[string]*keySet{}, byName: map[string]*keySet{}}
	for _, iss := range issuers {
		if probs := iss.Check(); len(probs) > 0 {
			return nil, fmt.Errorf("oidc issuer %q: %s", iss.Name, strings.Join(probs, "; "))
		}
		if v.byName[iss.Name] != nil || v.byURL[iss.Issuer] != nil {
			return nil, fmt.Errorf("oidc issuer %q: name or issuer listed twice", iss.Name)
		}
		ks := &keySet{iss: iss, client: o.HTTPClient, opts: &v.opts}
		v.byName[iss.Name], v.byURL[iss.Issuer] = ks, ks
	}
	return v, nil
}

// Skew is the clock difference the Verifier allows.
func (v *Verifier) Skew() time.Duration { return v.opts.Skew }

// Verify checks raw at now and returns the identity it vouches for, or a
// *Refusal saying why not (see the package documentation).
func (v *Verifier) Verify(ctx context.Context, raw string, now time.Time) (*Identity, error) {
	if v == nil {
		return nil, errNotInitialized
	}
	if len(raw) > MaxTokenLen {
		return nil, refuse(ErrMalformed, nil, "token is %d bytes; at most %d", len(raw), MaxTokenLen)
	}
	raw = strings.TrimSpace(raw)
	header, claimed, err := peek(raw)
	if err != nil {
		return nil, refuse(ErrMalformed, nil, "%v", err)
	}
	switch {
	case header.Alg == "none" || header.Alg == "":
		return nil, refuse(ErrAlgorithm, claimed, "token is unsigned (alg %q); only RS256, ES256 and other asymmetric signatures are accepted", header.Alg)
	case strings.HasPrefix(header.Alg, "HS"):
		return nil, refuse(ErrAlgorithm, claimed, "token is signed with %s, a shared-secret algorithm; only RS256, ES256 and other asymmetric signatures are accepted", truncate(header.Alg, 16))
	case header.Crit != nil:
		return nil, refuse(ErrMalformed, claimed, "token header marks parameters critical (crit); not accepted")
	}
	jws, err := jose.ParseSignedCompact(raw, Algorithms)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, refuse(ErrAlgorithm, claimed, "token is signed with %s; only RS256, ES256 and other asymmetric signatures are accepted", truncate(string(alg.Got), 16))
		}
		return nil, refuse(ErrMalformed, claimed, "%v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(ErrMalformed, claimed, "token has %d signatures; want one", len(jws.Signatures))
	}
	iss := claimed["iss"]
	ks := v.byURL[iss]
	if ks == nil {
		return nil, refuse(ErrIssuer, claimed, "token issuer %q is not one this daemon trusts", truncate(iss, 200))
	}
	keys, err := ks.lookup(ctx, header.Kid, now)
	if err != nil {
		if errors.Is(err, ErrKeySet) {
			return nil, refuse(ErrKeySet, claimed, "%v", err)
		}
		return nil, refuse(ErrUnknownKey, claimed, "token signed with a key issuer %s does not publish: %v", ks.iss.Name, err)
	}
	var payload []byte
	for i := range keys {
		if keys[i].Algorithm != "" && keys[i].Algorithm != header.Alg {
			continue
		}
		if p, err := jws.Verify(&keys[i]); err == nil {
			payload = p
			break
		}
	}
	if payload == nil {
		return nil, refuse(ErrSignature, claimed, "token signature does not verify with the keys of issuer %s", ks.iss.Name)
	}
	return v.checkClaims(ks.iss, payload, raw, now)
}

// tokenHeader is the part of a JOSE header read before verification.
type tokenHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// peek decodes header and claims without verifying anything: to choose
// the issuer and key, and to say in the log what a refused token claimed.
func peek(raw string) (tokenHeader, map[string]string, error) {
	var h tokenHeader
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, nil, fmt.Errorf("want header.payload.signature, found %d parts", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, nil, fmt.Errorf("header: %v", err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, fmt.Errorf("header: %v", err)
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, nil, fmt.Errorf("payload: %v", err)
	}
	claims, err := claimTexts(pb)
	if err != nil {
		return h, nil, fmt.Errorf("payload: %v", err)
	}
	return h, claims, nil
}

func refuse(err error, claimed map[string]string, format string, args ...any) *Refusal {
	return &Refusal{Err: err, Msg: fmt.Sprintf(format, args...), Claimed: claimed}
}
