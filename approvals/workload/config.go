package workload

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
)

// Issuer is one token issuer the daemon trusts: the server.yaml `oidc:`
// entry.
type Issuer struct {
	// Name is how rules and records name the issuer, e.g. "github".
	Name string `yaml:"name" json:"name"`
	// Issuer is the "iss" its tokens carry, e.g.
	// https://token.actions.githubusercontent.com; compared exactly.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audience must be among the token's "aud", compared exactly.
	Audience string `yaml:"audience" json:"audience"`
	// At most one of JWKSURL and JWKSFile; with neither, the key set is
	// found through the issuer's discovery document.
	JWKSURL  string `yaml:"jwks_url" json:"jwks_url,omitempty"`
	JWKSFile string `yaml:"jwks_file" json:"jwks_file,omitempty"`
}

// nameRE is what an issuer name looks like: it lands in certificate key
// IDs and requester names, so it needs no quoting anywhere.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

// Check reports what is wrong with the entry, one message each, without
// reading files or the network.
func (i Issuer) Check() []string {
	var out []string
	if !nameRE.MatchString(i.Name) {
		out = append(out, fmt.Sprintf("name %q: use letters, digits, '.', '_' and '-' (at most 32)", i.Name))
	}
	if err := checkURL(i.Issuer); err != nil {
		out = append(out, fmt.Sprintf("issuer: %v", err))
	}
	if i.Audience == "" {
		out = append(out, "audience: missing (the aud your jobs ask their tokens for, e.g. jitssh)")
	}
	switch {
	case i.JWKSURL != "" && i.JWKSFile != "":
		out = append(out, "jwks_url and jwks_file: give one, not both")
	case i.JWKSURL != "":
		if err := checkURL(i.JWKSURL); err != nil {
			out = append(out, fmt.Sprintf("jwks_url: %v", err))
		}
	}
	return out
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want an https:// URL without credentials, query or fragment", s)
	}
	return nil
}
