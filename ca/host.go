package ca

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host certificates let clients trust every jitssh server through one
// known_hosts line, "@cert-authority PATTERNS <CA public key>", instead of
// pinning each host key by hand, as OpenSSH's own host certificates do.
const (
	// DefaultHostValidity is how long a host certificate lasts unless the
	// caller says otherwise; the daemon renews its own well before.
	DefaultHostValidity = 30 * 24 * time.Hour
	// MaxHostValidity caps a host certificate's lifetime: a host CA
	// cannot revoke what it signed except through a KRL clients may not
	// have, so a signed host key must age out.
	MaxHostValidity = 366 * 24 * time.Hour
	// MaxHostNames is the most names one host certificate carries.
	MaxHostNames = 64
)

// ErrBadHostName: a host certificate's name is empty, has characters
// known_hosts or OpenSSH's principal matching would read as something
// else, or there are too many.
var ErrBadHostName = errors.New("bad host name")

// SignHost signs a host certificate for key, valid for names (DNS names or
// IP addresses, as clients dial them) for validity from now. The key ID
// is "host:" and the first name. Host certificates carry serial 0: they
// are not revoked by serial, and no user-certificate serial is spent.
func (a *Authority) SignHost(key ssh.PublicKey, names []string, validity time.Duration) (*ssh.Certificate, error) {
	if err := CheckHostNames(names); err != nil {
		return nil, fmt.Errorf("sign host certificate: %w", err)
	}
	if validity == 0 {
		validity = DefaultHostValidity
	}
	if validity < MinTTL || validity > MaxHostValidity {
		return nil, fmt.Errorf("sign host certificate for %s: %w: validity %v (want %v to %v)", names[0], ErrBadTTL, validity, MinTTL, MaxHostValidity)
	}
	key, err := a.checkUserKey(key)
	if err != nil {
		return nil, fmt.Errorf("sign host certificate for %s: %w", names[0], err)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	issued := now()
	cert := &ssh.Certificate{
		Key:             key,
		CertType:        ssh.HostCert,
		KeyId:           "host:" + names[0],
		ValidPrincipals: append([]string(nil), names...),
		ValidAfter:      uint64(issued.Add(-max(a.Backdate, 0)).Unix()),
		ValidBefore:     uint64(issued.Add(validity).Unix()),
	}
	if err := cert.SignCert(rand.Reader, a.signer); err != nil {
		return nil, fmt.Errorf("sign host certificate for %s: %w", names[0], err)
	}
	return cert, nil
}

// CheckHostNames accepts host names and IP addresses: letters, digits,
// dots, hyphens and colons, nothing that a known_hosts pattern or an
// OpenSSH principal list would take as a wildcard, negation or separator.
func CheckHostNames(names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: none given", ErrBadHostName)
	}
	if len(names) > MaxHostNames {
		return fmt.Errorf("%w: %d names (at most %d)", ErrBadHostName, len(names), MaxHostNames)
	}
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err == nil {
			continue
		}
		if n == "" || len(n) > 253 || strings.HasPrefix(n, "-") || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".") {
			return fmt.Errorf("%w: %q", ErrBadHostName, n)
		}
		for _, c := range n {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
				return fmt.Errorf("%w: %q has %q (want a DNS name or an IP address)", ErrBadHostName, n, c)
			}
		}
	}
	return nil
}
