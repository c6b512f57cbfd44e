package ca

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for the Authority's signing limits.
const (
	// DefaultBackdate is how far before its issue time a certificate
	// becomes valid, so that a server whose clock is a little behind the
	// CA's still accepts a fresh certificate. (A server's own grace for
	// clocks ahead of it is its configuration, not the signer's.)
	DefaultBackdate = time.Minute
	// DefaultMaxTTL is the absolute cap on a certificate's lifetime. Policy
	// grants far shorter windows; the cap only stops a bug or a typo (8000h
	// for 8h) from issuing a credential that outlives any reasonable task.
	DefaultMaxTTL = 7 * 24 * time.Hour
	// MinTTL is the shortest lifetime Sign accepts: certificate validity is
	// counted in whole seconds.
	MinTTL = time.Second
)

// Authority signs user certificates with one CA key. Its exported fields
// may be changed after New and before the first Sign; they are not guarded
// for concurrent modification. Sign itself is safe for concurrent use.
type Authority struct {
	// Now is the clock Sign reads; New sets it to time.Now.
	Now func() time.Time
	// Backdate is how far ValidAfter lies before the issue time. New sets
	// DefaultBackdate; a negative value counts as zero.
	Backdate time.Duration
	// MaxTTL caps CertRequest.TTL. New sets DefaultMaxTTL; zero or a
	// negative value also means DefaultMaxTTL.
	MaxTTL time.Duration

	signer ssh.Signer // restricted to one signature algorithm
	pub    ssh.PublicKey
}

// New returns an Authority for a CA private key held in memory, for callers
// that keep the key themselves (the approval daemon, tests). The key must be
// of a type listed in KeyTypes; an RSA key signs with rsa-sha2-512 only.
func New(key crypto.Signer) (*Authority, error) {
	if key == nil {
		return nil, fmt.Errorf("new CA: %w: no key", ErrBadCAKey)
	}
	if err := checkCAKey(key.Public()); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	s, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("new CA: %w: signer cannot choose its algorithm", ErrBadCAKey)
	}
	// SignCert uses the first algorithm of a MultiAlgorithmSigner. Pinning
	// the list to exactly one keeps SHA-1 (ssh-rsa) and rsa-sha2-256 out
	// whatever the library's defaults become.
	algo := s.PublicKey().Type()
	if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
		algo = ssh.KeyAlgoRSASHA512
	}
	signer, err := ssh.NewSignerWithAlgorithms(as, []string{algo})
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	return &Authority{
		Now:      time.Now,
		Backdate: DefaultBackdate,
		MaxTTL:   DefaultMaxTTL,
		signer:   signer,
		pub:      s.PublicKey(),
	}, nil
}

// PublicKey returns the CA's public key.
func (a *Authority) PublicKey() ssh.PublicKey { return a.pub }

// AuthorizedKey returns the CA's line for sshd's TrustedUserCAKeys (and for
// jitssh's --ca files): "<type> <base64> jitssh-ca", without a newline.
func (a *Authority) AuthorizedKey() string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(a.pub)), "\n")
	return line + " " + PublicKeyComment
}

// SignatureAlgorithm names the algorithm the CA signs certificates with,
// e.g. "ssh-ed25519" or "rsa-sha2-512".
func (a *Authority) SignatureAlgorithm() string {
	return a.signer.(ssh.MultiAlgorithmSigner).Algorithms()[0]
}

// sameKey reports whether two public keys are the same key.
func sameKey(a, b ssh.PublicKey) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}
