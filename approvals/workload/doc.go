// Package workload verifies the identity tokens that CI/CD platforms hand
// their jobs (OpenID Connect ID tokens from GitHub Actions, GitLab CI and
// the like) against the issuers the daemon is configured to trust, and
// returns the claims a token vouches for. It does nothing else: which
// claims a rule wants, and whether a token was seen before, are the
// caller's to decide.
//
// What Verify promises of a token it accepts:
//
//   - It is a compact JWS with one signature, made with an asymmetric
//     algorithm (RS256, RS384, RS512, ES256, ES384, EdDSA). "alg": "none"
//     and every HMAC algorithm are refused before any key is looked at, so
//     an issuer's public key can never serve as an HMAC secret. A header
//     that marks parameters critical ("crit") is refused.
//   - Its signature verifies with a public key from the key set of the
//     issuer its "iss" names, compared exactly; a key embedded in or
//     pointed to by the token is never used. A "kid" the cached key set
//     lacks makes Verify fetch the set again, at most once per refresh
//     interval per issuer, so forged kids cannot make it hammer the issuer.
//   - Its "aud" holds the configured audience, compared exactly.
//   - "exp" is present and not passed, "nbf" and "iat" are not in the
//     future, each within a small skew; it expires at most MaxLifetime
//     after the time of the check; "sub" is present.
//
// Keys come from a JWKS URL, a JWKS file, or, when neither is configured,
// the jwks_uri of the issuer's OpenID discovery document. They are cached
// and fetched again when older than the maximum key age.
package workload
