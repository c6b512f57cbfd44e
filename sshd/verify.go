package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// Reasons a certificate is refused. Callers branch on them with errors.Is;
// the wrapped message carries the detail for the log.
var (
	ErrNotCertificate    = errors.New("not a certificate")
	ErrHostCertificate   = errors.New("not a user certificate")
	ErrUntrustedCA       = errors.New("signed by an untrusted CA")
	ErrBadSignature      = errors.New("certificate signature does not verify")
	ErrNotYetValid       = errors.New("certificate is not yet valid")
	ErrExpired           = errors.New("certificate has expired")
	ErrNoExpiry          = errors.New("certificate never expires")
	ErrRevoked           = errors.New("certificate is revoked")
	ErrRevocationUnknown = errors.New("revocation status unknown")
	ErrCriticalOption    = errors.New("unsupported critical option")
	ErrSourceAddress     = errors.New("source address not allowed")
	ErrNoGrants          = errors.New("certificate holds no well-formed grant")
)

// sourceAddressOption is the only critical option jitssh enforces; a
// certificate with any other is refused, as OpenSSH does.
const sourceAddressOption = "source-address"

// DefaultSkew is how far before its ValidAfter a certificate is accepted,
// for clocks that disagree a little. ValidBefore gets no such grace: when
// the window closes, access is gone.
const DefaultSkew = 30 * time.Second

// RevocationChecker answers whether a certificate is revoked. A non-nil
// error means the answer is unknown, and the certificate is refused.
type RevocationChecker interface {
	Revoked(cert *ssh.Certificate) (bool, error)
}

// Verifier checks certificates against the trusted CAs. It is immutable
// once built; a server that reloads its CAs builds a new one.
type Verifier struct {
	// CAs are the trusted CA public keys; several during a rotation.
	CAs []ssh.PublicKey
	// Revocations are consulted in order; any one saying revoked, or
	// failing, refuses the certificate.
	Revocations []RevocationChecker
	// Skew is the grace before ValidAfter; zero means DefaultSkew.
	Skew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// skipSourceAddress is for an SSH server's own callback, which runs
	// before the client address is known to it and after the server has
	// enforced the option itself.
	skipSourceAddress bool
}

// Identity is what a verified certificate establishes.
type Identity struct {
	Cert   *ssh.Certificate
	Serial uint64
	KeyID  string
	// Grants are the certificate's well-formed grant principals.
	Grants principals.Set
	// CA is the SHA-256 fingerprint of the CA that signed it.
	CA          string
	ValidBefore time.Time
}

// Verify checks key, offered by a client at remote, and returns the
// identity it proves. It is the single place a certificate becomes trusted;
// the order of checks follows OpenSSH's: type, CA, signature, validity,
// critical options, source address, revocation, then grants.
func (v *Verifier) Verify(key ssh.PublicKey, remote net.Addr) (*Identity, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%w: %s key", ErrNotCertificate, key.Type())
	}
	if cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("%w: type %d", ErrHostCertificate, cert.CertType)
	}
	if !v.trusts(cert.SignatureKey) {
		return nil, fmt.Errorf("%w: %s", ErrUntrustedCA, ssh.FingerprintSHA256(cert.SignatureKey))
	}
	if err := verifyCertSignature(cert); err != nil {
		return nil, err
	}
	if err := v.checkValidity(cert); err != nil {
		return nil, err
	}
	for name := range cert.CriticalOptions {
		if name != sourceAddressOption {
			return nil, fmt.Errorf("%w: %q", ErrCriticalOption, name)
		}
	}
	if list, ok := cert.CriticalOptions[sourceAddressOption]; ok && !v.skipSourceAddress {
		if err := checkSourceAddress(list, remote); err != nil {
			return nil, err
		}
	}
	for _, rc := range v.Revocations {
		revoked, err := rc.Revoked(cert)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
		}
		if revoked {
			return nil, fmt.Errorf("%w: serial %d", ErrRevoked, cert.Serial)
		}
	}
	grants, _ := principals.ParseSet(cert.ValidPrincipals)
	if len(grants) == 0 {
		return nil, fmt.Errorf("%w: principals %q", ErrNoGrants, cert.ValidPrincipals)
	}
	return &Identity{
		Cert:        cert,
		Serial:      cert.Serial,
		KeyID:       cert.KeyId,
		Grants:      grants,
		CA:          ssh.FingerprintSHA256(cert.SignatureKey),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0),
	}, nil
}

func (v *Verifier) trusts(ca ssh.PublicKey) bool {
	// A certificate cannot itself be a CA key.
	if _, isCert := ca.(*ssh.Certificate); isCert {
		return false
	}
	blob := ca.Marshal()
	for _, k := range v.CAs {
		if bytes.Equal(k.Marshal(), blob) {
			return true
		}
	}
	return false
}

func (v *Verifier) checkValidity(cert *ssh.Certificate) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	t := now()
	// Values past 2^62 seconds are refused rather than converted, so no
	// conversion to time can wrap.
	if cert.ValidAfter > 1<<62 || time.Unix(int64(cert.ValidAfter), 0).After(t.Add(skew)) {
		return fmt.Errorf("%w: valid after %d", ErrNotYetValid, cert.ValidAfter)
	}
	// A grant always ends: a certificate without an end is not one, even
	// from a trusted CA.
	if cert.ValidBefore == ssh.CertTimeInfinity {
		return ErrNoExpiry
	}
	if cert.ValidBefore > 1<<62 || !t.Before(time.Unix(int64(cert.ValidBefore), 0)) {
		return fmt.Errorf("%w: valid before %d", ErrExpired, cert.ValidBefore)
	}
	return nil
}

// verifyCertSignature checks the CA's signature over the certificate. It
// refuses SHA-1 RSA signatures, as OpenSSH does by default.
func verifyCertSignature(cert *ssh.Certificate) error {
	if cert.Signature == nil {
		return ErrBadSignature
	}
	if cert.Signature.Format == ssh.KeyAlgoRSA {
		return fmt.Errorf("%w: ssh-rsa (SHA-1) signatures are refused", ErrBadSignature)
	}
	if err := cert.SignatureKey.Verify(certSignedBytes(cert), cert.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// certSignedBytes is the certificate's wire form up to, not including, the
// signature: what the CA signed.
func certSignedBytes(cert *ssh.Certificate) []byte {
	c := *cert
	c.Signature = nil
	out := c.Marshal()
	// A nil signature marshals as an empty string: drop its length.
	return out[:len(out)-4]
}

// checkSourceAddress applies the source-address critical option with the
// signer's own grammar: a list with any malformed entry refuses every
// client, as OpenSSH does.
func checkSourceAddress(list string, remote net.Addr) error {
	allowed, err := ca.ParseSourceAddress(list)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSourceAddress, err)
	}
	ip, ok := remoteIP(remote)
	if !ok {
		return fmt.Errorf("%w: no client address to check against %q", ErrSourceAddress, list)
	}
	if !allowed.Allows(ip) {
		return fmt.Errorf("%w: %s not in %q", ErrSourceAddress, ip, list)
	}
	return nil
}

// remoteIP is the client's address without port or zone.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
