package workload

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// checkClaims checks a verified payload's claims at now.
func (v *Verifier) checkClaims(iss Issuer, payload []byte, raw string, now time.Time) (*Identity, error) {
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
		Iat *float64        `json:"iat"`
		Jti *string         `json:"jti"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, refuse(ErrMalformed, nil, "token claims: %v", err)
	}
	texts, err := claimTexts(payload)
	if err != nil {
		return nil, refuse(ErrMalformed, nil, "token claims: %v", err)
	}
	id := &Identity{Issuer: iss.Name, URL: c.Iss, Audience: iss.Audience, Subject: c.Sub, Claims: texts}
	signed := func(err error, format string, args ...any) error {
		return &Refusal{Err: err, Msg: fmt.Sprintf(format, args...), Signed: id}
	}
	if c.Iss != iss.Issuer {
		// Keys were chosen by the unverified iss; the verified one must
		// be the same.
		return nil, refuse(ErrIssuer, texts, "token issuer %q is not %q", truncate(c.Iss, 200), iss.Issuer)
	}
	if c.Exp == nil {
		return nil, signed(ErrMissingClaim, "token has no expiry (exp)")
	}
	exp, err := numericDate(*c.Exp)
	if err != nil {
		return nil, signed(ErrMalformed, "token exp: %v", err)
	}
	id.Expiry = exp
	if !audienceHolds(c.Aud, iss.Audience) {
		return nil, signed(ErrAudience, "token audience %s is not %q", truncate(string(c.Aud), 200), iss.Audience)
	}
	skew := v.opts.Skew
	if !now.Before(exp.Add(skew)) {
		return nil, signed(ErrExpired, "token expired at %s", exp.Format(time.RFC3339))
	}
	for _, t := range []struct {
		name string
		val  *float64
	}{{"nbf", c.Nbf}, {"iat", c.Iat}} {
		if t.val == nil {
			continue
		}
		at, err := numericDate(*t.val)
		if err != nil {
			return nil, signed(ErrMalformed, "token %s: %v", t.name, err)
		}
		if now.Add(skew).Before(at) {
			return nil, signed(ErrNotYetValid, "token not valid before %s (%s), and it is %s", at.Format(time.RFC3339), t.name, now.UTC().Format(time.RFC3339))
		}
	}
	if exp.Sub(now) > MaxLifetime {
		return nil, signed(ErrLifetime, "token is valid until %s, more than %v ahead", exp.Format(time.RFC3339), MaxLifetime)
	}
	if c.Sub == "" {
		return nil, signed(ErrMissingClaim, "token has no subject (sub)")
	}
	if c.Jti != nil {
		id.ID = ReplayID(iss.Issuer, *c.Jti, "")
	} else {
		id.ID = ReplayID(iss.Issuer, "", raw)
	}
	return id, nil
}

// ReplayID is what identifies a token for the once-only check: its issuer
// and jti, or, for a token without one, the hash of the whole token. A
// long or unprintable jti is hashed, so the ID stays short and printable.
func ReplayID(issuer, jti, raw string) string {
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	switch {
	case jti == "" && raw != "":
		return issuer + "#token-sha256:" + h(raw)
	case len(jti) <= 128 && printable(jti):
		return issuer + "#jti:" + jti
	}
	return issuer + "#jti-sha256:" + h(jti)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// audienceHolds reports whether an "aud" claim, a string or an array of
// strings, holds want exactly.
func audienceHolds(aud json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(aud, &many) != nil {
		return false
	}
	for _, a := range many {
		if a == want {
			return true
		}
	}
	return false
}

// numericDate reads a JWT NumericDate: seconds since the epoch.
func numericDate(f float64) (time.Time, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%v is not a date", f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// claimTexts returns every top-level claim of a JSON object: strings as
// they are, anything else as its compact JSON text.
func claimTexts(payload []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("not a JSON object")
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) == nil {
			out[k] = s
			continue
		}
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			return nil, err
		}
		out[k] = b.String()
	}
	return out, nil
}
