package ca

import (
	"fmt"
	"net/netip"
	"strings"
)

// SourceAddress is a parsed source-address critical option: the networks a
// certificate may be used from. One parser serves the signer, the policy
// loader and the Git front-ends, so a list is accepted by all three or by
// none.
type SourceAddress []netip.Prefix

// ParseSourceAddress parses list as OpenSSH's source-address option does:
// comma-separated IP addresses and CIDR prefixes, no spaces, no empty
// entries, no zones, no host bits set below a prefix length. OpenSSH
// refuses a certificate whose list it cannot parse, so a list accepted here
// and not there would issue a certificate that works nowhere. An empty list
// is an error: a present option with no entries allows no one.
func ParseSourceAddress(list string) (SourceAddress, error) {
	entries := strings.Split(list, ",")
	nets := make(SourceAddress, 0, len(entries))
	for _, entry := range entries {
		p, err := parseSourceEntry(entry)
		if err != nil {
			return nil, sourceAddressError{err}
		}
		nets = append(nets, p)
	}
	return nets, nil
}

func parseSourceEntry(entry string) (netip.Prefix, error) {
	if entry == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry")
	}
	if strings.Contains(entry, "/") {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", entry)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (want %s)", entry, p.Masked())
		}
		return p, nil
	}
	addr, err := netip.ParseAddr(entry)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", entry)
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", entry)
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// sourceAddressError says which entry is wrong and is ErrBadSourceAddress
// to errors.Is, so a config loader can name the field without the
// sentinel's words repeating it.
type sourceAddressError struct{ err error }

func (e sourceAddressError) Error() string        { return e.err.Error() }
func (e sourceAddressError) Is(target error) bool { return target == ErrBadSourceAddress }

// Allows reports whether a client at addr may use the certificate. An
// IPv4 client seen through an IPv6 socket matches IPv4 entries.
func (s SourceAddress) Allows(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range s {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
