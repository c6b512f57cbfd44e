package approvals

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/ssh"
)

// Actor is who makes a call: a person of the policy, known by the key that
// authenticated them. A front-end gets one from Authenticate once per
// connection; every Service call checks it again against the policy in
// force, so a key a reload removed stops working at once, on connections
// opened before the reload too, and a person's groups are always the
// current ones.
//
// Who may see a request and who may act on it is one model, applied by
// the Service itself: people see their own requests; members of a group
// that approves under some rule, or of an auditor group (auditor_groups),
// see every request. A request someone may not see is refused exactly as
// an unknown one, whatever the call.
type Actor struct {
	Person string
	Groups []string      // as of the last check against the policy
	Key    ssh.PublicKey // the plain key that completed authentication
	// Workload is set for a CI/CD job, known by the token its platform
	// signed rather than by a listed key: Person is then its requester
	// name (audit.WorkloadRequester) and Groups is empty. A workload may
	// only request (SubmitWorkload) and follow its request (WaitWorkload);
	// every other call refuses it, as it refuses anyone the policy does
	// not list.
	Workload *WorkloadIdentity
}

// Authenticate returns the actor the current policy knows by key: a plain
// key listed for a person. Certificates identify nobody.
func (s *Service) Authenticate(key ssh.PublicKey) (Actor, error) {
	return s.Policy().resolve(Actor{Key: key})
}

// fingerprint names a key in a message, or says there was none.
func fingerprint(key ssh.PublicKey) string {
	if key == nil {
		return "(none)"
	}
	return ssh.FingerprintSHA256(key)
}

// resolve checks that a's key identifies a person in p, the same person a
// names when it names one, and returns the actor as p knows them.
func (p *Policy) resolve(a Actor) (Actor, error) {
	name, groups, ok := p.Identify(a.Key)
	switch {
	case ok && (a.Person == "" || a.Person == name):
		return Actor{Person: name, Groups: groups, Key: a.Key}, nil
	case a.Person == "":
		return Actor{}, fmt.Errorf("%w: the key %s is not listed for anyone in the policy: ask an admin to add it to your entry under people", ErrForbidden, fingerprint(a.Key))
	}
	if _, err := actor(p, a.Person); err != nil {
		return Actor{}, err
	}
	if a.Key == nil {
		return Actor{}, fmt.Errorf("%w: %s did not authenticate with a key", ErrForbidden, a.Person)
	}
	return Actor{}, fmt.Errorf("%w: the key %s is no longer one of %s's keys in the policy",
		ErrForbidden, ssh.FingerprintSHA256(a.Key), a.Person)
}

// AuditorGroups returns the groups whose members see every request.
func (p *Policy) AuditorGroups() []string { return slices.Clone(p.cfg.AuditorGroups) }

// seesAll reports whether a may see every request: members of an auditor
// group and of any group that approves under some rule may.
func (p *Policy) seesAll(a Actor) bool {
	approvers := p.approverGroups()
	return slices.ContainsFunc(a.Groups, func(g string) bool {
		return approvers[g] || slices.Contains(p.cfg.AuditorGroups, g)
	})
}

// mayView reports whether a may see r: their own, one that needs their
// group's approval, or any when they see all.
func (p *Policy) mayView(a Actor, r *Request) bool {
	return r.Requester == a.Person || slices.ContainsFunc(a.Groups, r.stepGroup) || p.seesAll(a)
}

// caller checks who against p and returns their name and groups. When id
// is not empty, an unknown request, and one they may not see alike, are
// refused before anything else about the call is checked, so that acting
// on someone else's request tells nobody that it exists or whose it is.
// Other errors looking it up are left for the call itself to report.
func (s *Service) caller(p *Policy, who Actor, id string) (string, []string, error) {
	a, err := p.resolve(who)
	if err != nil {
		return "", nil, err
	}
	if id != "" {
		r, err := s.lookup(id)
		if errors.Is(err, ErrNotFound) || err == nil && !p.mayView(a, r) {
			return "", nil, notFound(id)
		}
	}
	return a.Person, a.Groups, nil
}

// revoker is caller for Revoke, which names a request by ID or, when id
// is empty, its certificate by serial: a certificate of a request the
// caller may not see is refused as an unknown serial.
func (s *Service) revoker(p *Policy, who Actor, id string, serial uint64) (string, []string, error) {
	person, groups, err := s.caller(p, who, id)
	if err != nil || id != "" || serial == 0 {
		return person, groups, err
	}
	r, err := s.fsm.State().requestBySerial(nil, serial)
	if err == nil && (r == nil || !p.mayView(Actor{Person: person, Groups: groups}, r)) {
		return "", nil, fmt.Errorf("%w: no live certificate with serial %d", ErrNotFound, serial)
	}
	return person, groups, nil
}

// CanApprove lists who may still approve r under the current policy:
// members of its steps' groups, other than the requester and those who
// approved already. It is empty for a request that is not pending.
func (s *Service) CanApprove(r *Request) []string {
	if r == nil || r.State != StatePending {
		return nil
	}
	done := map[string]bool{r.Requester: true}
	for _, ap := range r.Approvals {
		done[ap.By] = true
	}
	var names []string
	p := s.Policy()
	for _, step := range r.Steps {
		for _, m := range p.Members(step.Group) {
			if !done[m] {
				done[m] = true
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	return names
}
