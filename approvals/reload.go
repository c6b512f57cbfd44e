package approvals

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/crypto/ssh"
)

// SetPolicy replaces the policy, as on SIGHUP. Anyone the new policy
// drops, or who lost one of their keys, is offboarded first: their pending
// requests are cancelled and their live certificates revoked, in the one
// command that records the new policy's digest, and each is audited as
// "offboard", followed by one "policy.reload" entry. A key that was removed may
// be a key that leaked, and any of the person's requests may have been
// made with it, so losing one key offboards the whole person; they may
// request again under the new policy. Requests in flight keep the steps
// they were submitted with.
//
// If the offboarding cannot be applied, the old policy stays and the error
// says why.
func (s *Service) SetPolicy(p *Policy) error {
	if p == nil {
		return fmt.Errorf("set policy: %w: no policy", ErrInvalidConfig)
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	gone := offboarded(s.policy, p)
	now := s.clock()
	if recorded, behind := s.outOfStep(); behind {
		if recorded == p.Digest() {
			// This node's file now matches the cluster's: nothing changes
			// but what this node decides under.
			s.policy = p
			s.logger.Info("policy matches the cluster's again")
			return nil
		}
		// This node's old policy was not the cluster's, so what p drops
		// from the cluster's is unknown here: offboard whoever the state
		// holds that p does not have.
		var err error
		if gone, err = goneFrom(s.fsm.State(), p, now); err != nil {
			return fmt.Errorf("set policy: %w; the old policy stays", err)
		}
	}
	cmd := setPolicyCmd{Digest: p.Digest(), People: len(p.cfg.People), Rules: len(p.cfg.Rules), At: now}
	if len(gone) > 0 {
		cmd.Offboard = gone
	}
	// The policy is swapped only once its record and the offboarding are
	// durable: a decision under the new policy never precedes them.
	res, err := s.commit(msgSetPolicy, cmd)
	if err != nil {
		return fmt.Errorf("set policy: offboard %d %s: %w; the old policy stays",
			len(gone), plural(len(gone), "person", "people"), err)
	}
	s.policy = p
	s.logOffboarded(gone, res)
	return nil
}

// logOffboarded tells the operator who lost access with a policy change
// and what it ended for each, so that removing a person from the file is
// never silent. The audit log has the same, entry by entry.
func (s *Service) logOffboarded(gone map[string]string, res *applyResult) {
	if len(gone) == 0 {
		return
	}
	type ended struct{ cancelled, revoked []string }
	byPerson := make(map[string]*ended, len(gone))
	for name := range gone {
		byPerson[name] = &ended{}
	}
	if res != nil {
		for _, r := range res.requests {
			e := byPerson[r.Requester]
			if e == nil {
				continue
			}
			if r.State == StateCancelled {
				e.cancelled = append(e.cancelled, r.ID)
			} else {
				e.revoked = append(e.revoked, fmt.Sprintf("%s (serial %d)", r.ID, r.Serial))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(gone)) {
		e := byPerson[name]
		s.logger.Warn("offboarded by policy change", "event", "offboard", "person", name, "reason", gone[name],
			"cancelled", e.cancelled, "revoked", e.revoked)
	}
}

// offboarded returns the people of old whom p drops or who lost a key in
// p, each with the reason.
func offboarded(old, p *Policy) map[string]string {
	out := map[string]string{}
	for name, m := range old.people {
		n, ok := p.people[name]
		if !ok {
			out[name] = "removed from the policy"
			continue
		}
		for _, key := range m.keys {
			if !slices.ContainsFunc(n.keys, func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), key.Marshal()) }) {
				out[name] = "key " + ssh.FingerprintSHA256(key) + " removed from the policy"
				break
			}
		}
	}
	return out
}
