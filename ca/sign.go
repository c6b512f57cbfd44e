package ca

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/principals"
)

// MaxKeyIDLen bounds a certificate's key ID, which OpenSSH writes into its
// logs.
const MaxKeyIDLen = 256

// minUserRSABits is the smallest RSA key Sign certifies for a user.
const minUserRSABits = 2048

// SourceAddressOption is the one critical option jitssh certificates carry.
const SourceAddressOption = "source-address"

// MaxGrants is the most grants one certificate carries: OpenSSH refuses to
// load a certificate with more than 256 principals.
const MaxGrants = 256

// Errors returned by Sign, wrapped with context; callers branch on them with
// errors.Is. Every one of them except ErrBadSerial is returned before a
// serial is taken.
var (
	ErrBadTTL           = errors.New("bad TTL")
	ErrNoGrants         = errors.New("no grants")
	ErrTooManyGrants    = errors.New("too many grants")
	ErrBadGrant         = errors.New("bad grant")
	ErrBadKeyID         = errors.New("bad key ID")
	ErrBadPublicKey     = errors.New("public key not accepted")
	ErrBadSourceAddress = errors.New("bad source address")
	ErrNoSerialSource   = errors.New("no serial source")
	ErrBadSerial        = errors.New("bad serial")
)

// SerialSource hands out certificate serials. The caller owns durability
// and uniqueness: NextSerial must never return the same value twice, across
// restarts and crashes, and must record the value before returning it. The
// approval daemon's serials are below 2^63; see SerialFile for break-glass
// serials.
type SerialSource interface {
	NextSerial() (uint64, error)
}

// CertRequest is what a certificate is made from.
type CertRequest struct {
	// Profile is the certificate's shape; empty means ProfileGrant.
	Profile Profile
	// PublicKey is the requester's fresh key, the key being certified.
	PublicKey ssh.PublicKey
	// KeyID names the user and the request, e.g. "alice/req-01J...";
	// printable ASCII without spaces, at most MaxKeyIDLen bytes. A
	// profile whose host reads the key ID as the account (gitlab) sets it
	// to Account: leave it empty or equal to Account.
	KeyID string
	// Grants become a grant certificate's principals, in order,
	// duplicates dropped. At least one is required; a host profile takes
	// none.
	Grants []principals.Grant
	// Account is the Git host account a host profile certificate is for:
	// a GitHub username, a GitLab username, a Gitea principal. See
	// CheckAccount.
	Account string
	// Host is, for the github profile, the GitHub Enterprise Server
	// host name; empty means github.com.
	Host string
	// TTL is the granted lifetime: ValidBefore is the issue time plus TTL.
	// At least MinTTL and at most the Authority's MaxTTL.
	TTL time.Duration
	// SourceAddress, when not empty, restricts the certificate to clients
	// from these addresses: a comma-separated list of IP addresses and
	// CIDR prefixes, as in OpenSSH's source-address option.
	SourceAddress string
}

// Sign checks req completely, then takes a serial from serials and signs a
// user certificate of req's profile, as the package documentation
// describes. A request that fails a check consumes no serial.
func (a *Authority) Sign(req CertRequest, serials SerialSource) (*ssh.Certificate, error) {
	cert, err := a.build(req)
	if err == nil && serials == nil {
		err = ErrNoSerialSource
	}
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", req.KeyID, err)
	}
	serial, err := serials.NextSerial()
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: take serial: %w", req.KeyID, err)
	}
	if serial == 0 {
		// OpenSSH treats serial 0 as "no serial": it cannot be revoked by
		// serial in a KRL.
		return nil, fmt.Errorf("sign certificate for %q: %w: serial source returned 0", req.KeyID, ErrBadSerial)
	}
	cert.Serial = serial
	if err := cert.SignCert(rand.Reader, a.signer); err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", req.KeyID, err)
	}
	return cert, nil
}

// build checks req and returns the certificate it describes, without serial
// or signature.
func (a *Authority) build(req CertRequest) (*ssh.Certificate, error) {
	maxTTL := a.MaxTTL
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	if req.TTL < MinTTL || req.TTL > maxTTL {
		return nil, fmt.Errorf("%w: %v (want %v to %v)", ErrBadTTL, req.TTL, MinTTL, maxTTL)
	}
	profile, err := ParseProfile(string(req.Profile))
	if err != nil {
		return nil, err
	}
	req.Profile = profile
	backdate := max(a.Backdate, 0)
	if limit := profile.maxValidity(); limit > 0 && req.TTL+backdate >= limit {
		return nil, fmt.Errorf("%w: %v and %v of backdating make a certificate valid for %v; %s accepts less than %v",
			ErrBadTTL, req.TTL, backdate, req.TTL+backdate, profile, limit)
	}
	// Extensions is never nil: a grant certificate grants no pty, no
	// forwarding, no agent, no X11 and no user rc, whatever the client
	// asks, and a host certificate only what its host reads.
	var names []string
	ext := map[string]string{}
	keyID := req.KeyID
	if profile.IsHost() {
		names, ext, keyID, err = checkHostRequest(req)
	} else {
		err = checkGrantRequest(req)
		if err == nil {
			err = checkKeyID(keyID)
		}
		if err == nil {
			names, err = grantPrincipals(req.Grants)
		}
	}
	if err != nil {
		return nil, err
	}
	key, err := a.checkUserKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	if req.SourceAddress != "" {
		if _, err := ParseSourceAddress(req.SourceAddress); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadSourceAddress, err)
		}
	}

	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	issued := now()
	after, before := issued.Add(-backdate).Unix(), issued.Add(req.TTL).Unix()
	if after < 0 {
		return nil, fmt.Errorf("clock reads %v, before 1970", issued)
	}

	perms := ssh.Permissions{Extensions: ext}
	if req.SourceAddress != "" {
		perms.CriticalOptions = map[string]string{SourceAddressOption: req.SourceAddress}
	}
	return &ssh.Certificate{
		Key:             key,
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: names,
		ValidAfter:      uint64(after),
		ValidBefore:     uint64(before),
		Permissions:     perms,
	}, nil
}

// checkKeyID accepts printable ASCII other than space: the key ID lands in
// OpenSSH's log lines, where a newline or a space could forge or blur an
// entry.
func checkKeyID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrBadKeyID)
	}
	if len(id) > MaxKeyIDLen {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrBadKeyID, len(id), MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: %q: byte %#x at %d is not printable ASCII", ErrBadKeyID, id, c, i)
		}
	}
	return nil
}

// grantPrincipals turns grants into principal strings, in order and
// without duplicates. Each string must parse back to the same grant, so a
// principal that no server would read as this grant is never issued.
func grantPrincipals(grants []principals.Grant) ([]string, error) {
	if len(grants) == 0 {
		return nil, ErrNoGrants
	}
	if len(grants) > MaxGrants {
		return nil, fmt.Errorf("%w: %d, OpenSSH reads at most %d principals", ErrTooManyGrants, len(grants), MaxGrants)
	}
	names := make([]string, 0, len(grants))
	seen := make(map[string]bool, len(grants))
	for i, g := range grants {
		if err := g.Validate(); err != nil {
			return nil, fmt.Errorf("%w %d: %w", ErrBadGrant, i+1, err)
		}
		s := g.String()
		back, err := principals.Parse(s)
		if err != nil || back.String() != s {
			return nil, fmt.Errorf("%w %d: %q does not parse back to itself", ErrBadGrant, i+1, s)
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		names = append(names, s)
	}
	return names, nil
}

// checkUserKey returns the key to certify, re-read from its wire form so
// that what is checked is exactly what gets signed.
func (a *Authority) checkUserKey(pub ssh.PublicKey) (ssh.PublicKey, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: missing", ErrBadPublicKey)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("%w: a certificate, not a plain key", ErrBadPublicKey)
	}
	key, err := ssh.ParsePublicKey(pub.Marshal())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPublicKey, err)
	}
	switch key.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
	case ssh.KeyAlgoRSA:
		bits := rsaBits(key)
		if bits < minUserRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits (want at least %d)", ErrBadPublicKey, bits, minUserRSABits)
		}
	default:
		return nil, fmt.Errorf("%w: type %s", ErrBadPublicKey, key.Type())
	}
	// A certificate for the CA's own key would let whoever holds the CA key
	// log in with it directly; the CA key is for signing only.
	if sameKey(key, a.pub) {
		return nil, fmt.Errorf("%w: it is the CA key", ErrBadPublicKey)
	}
	return key, nil
}

func rsaBits(key ssh.PublicKey) int {
	cpk, ok := key.(ssh.CryptoPublicKey)
	if !ok {
		return 0
	}
	if k, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok {
		return k.N.BitLen()
	}
	return 0
}
