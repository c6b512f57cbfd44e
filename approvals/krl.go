package approvals

import (
	"fmt"
	"slices"
	"time"

	"github.com/jitssh/jitssh/ca"
)

// revoked returns the serials of every revoked certificate, sorted, and
// when the latest was revoked.
func (s *Service) revoked() ([]uint64, time.Time, error) {
	reqs, err := s.fsm.State().revokedRequests(nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	var (
		serials []uint64
		latest  time.Time
	)
	for _, r := range reqs {
		// A request revoked before its certificate was stored has no
		// certificate out there to refuse.
		if r.Certificate == "" {
			continue
		}
		serials = append(serials, r.Serial)
		if r.Revoked.At.After(latest) {
			latest = r.Revoked.At
		}
	}
	slices.Sort(serials)
	return serials, latest, nil
}

// RevokedSerials returns the serials of every certificate the Service
// issued and then revoked, in increasing order.
func (s *Service) RevokedSerials() []uint64 {
	serials, _, err := s.revoked()
	if err != nil {
		s.logger.Error("read revoked serials", "err", err)
		return nil
	}
	return serials
}

// KRL returns an OpenSSH key revocation list of every revoked certificate
// of this CA, for sshd's RevokedKeys and jitssh's Git front-ends. The same
// state always gives the same bytes: its version is the number of revoked
// serials and its date the time of the latest revocation.
func (s *Service) KRL() ([]byte, error) {
	serials, latest, err := s.revoked()
	if err != nil {
		return nil, fmt.Errorf("build KRL: %w", err)
	}
	k := &ca.KRL{
		Version:       uint64(len(serials)),
		GeneratedDate: latest,
		Comment:       "jitssh revoked certificates",
	}
	k.RevokeSerial(s.authority.PublicKey(), serials...)
	data, err := k.Marshal()
	if err != nil {
		return nil, fmt.Errorf("build KRL: %w", err)
	}
	return data, nil
}
