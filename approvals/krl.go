package approvals

import (
	"fmt"
	"slices"
	"time"

	"github.com/jitssh/jitssh/ca/krl"
)

// krlKeep is how long after its expiry a revoked certificate stays on the
// published KRL. An expired certificate is refused anyway, and sshd parses
// the whole KRL on every authentication, so the list is kept short; the
// margin covers a Git server whose clock runs behind.
const krlKeep = time.Hour

// revoked returns the serials of every revoked certificate that is not
// yet expired before since (all when since is zero), sorted, with how many
// there are in all and when the latest was revoked.
func (s *Service) revoked(since time.Time) ([]uint64, int, time.Time, error) {
	st := s.fsm.State()
	reqs, err := st.revokedRequests(nil)
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	// Revoked certificates that left the state had expired before the
	// list stopped carrying them; they still count in its version.
	pruned, err := st.pruned()
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	var (
		serials []uint64
		total   = pruned.Revoked
		latest  = pruned.LastRevoked
	)
	for _, r := range reqs {
		// A request revoked before its certificate was stored has no
		// certificate out there to refuse.
		if !r.HasCertificate() {
			continue
		}
		total++
		if r.Revoked.At.After(latest) {
			latest = r.Revoked.At
		}
		if !since.IsZero() && r.ValidBefore.Before(since) {
			continue
		}
		serials = append(serials, r.Serial)
	}
	slices.Sort(serials)
	return serials, total, latest, nil
}

// RevokedSerials returns the serials of every certificate the Service
// issued and then revoked, in increasing order.
func (s *Service) RevokedSerials() []uint64 {
	serials, _, _, err := s.revoked(time.Time{})
	if err != nil {
		s.logger.Error("read revoked serials", "err", err)
		return nil
	}
	return serials
}

// KRL returns an OpenSSH key revocation list of this CA's revoked
// certificates, for sshd's RevokedKeys and jitssh's Git front-ends.
// Certificates that expired more than krlKeep ago are left out. Its
// version is the number of certificates ever revoked, so it only grows,
// and its date the time of the latest revocation.
func (s *Service) KRL() ([]byte, error) {
	serials, total, latest, err := s.revoked(s.clock().Add(-krlKeep))
	if err != nil {
		return nil, fmt.Errorf("build KRL: %w", err)
	}
	k := &krl.List{
		Version:       uint64(total),
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
