package audit

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Since policy digests are recorded, every request entry names the version
// of the policy that decided it (RequestData.PolicySHA256), and every
// policy reload the version it loaded. An auditor who holds the versions
// (copies of the daemon's config, from their own history of it) has each
// request judged by the rules that were in force for it, not by today's.

// Errors a Checker wraps in a *CheckError for policy versions.
var (
	// ErrPolicyUnknown: a request names a policy version the auditor did
	// not supply, so its rule could not be checked.
	ErrPolicyUnknown = errors.New("policy version not supplied")
	// ErrPolicy: a request disagrees with the policy version that decided
	// it: a rule it does not have or would not pick, other approval
	// steps, a TTL out of the rule's range.
	ErrPolicy = errors.New("record disagrees with its policy version")
)

// PolicyVersion is one version of the daemon's policy, as an auditor holds
// it.
type PolicyVersion struct {
	// Digest is the version as the daemon records it: "sha256:" and hex
	// (approvals.Policy.Digest).
	Digest string
	// Source says where the auditor got it, such as a file name.
	Source string
	People map[string]Person
	Rules  map[string]PolicyRule
	// Match returns the rule under which this policy decides a request
	// (the first rule that allows it), or an error when none does. Nil
	// leaves the choice of rule unchecked.
	Match func(requester, repo, ref, access string) (rule string, err error)
	// MatchWorkload is Match for a CI/CD job's request: the rule under
	// which this policy decides it from the job's issuer and recorded
	// claims. Nil leaves the choice of rule unchecked for such requests.
	MatchWorkload func(issuer string, claims map[string]string, repo, ref, access string) (rule string, err error)
}

// PolicyRule is what a Checker needs of a rule.
type PolicyRule struct {
	Steps          []Step // the approvals it requires; none when it approves automatically
	MinTTL, MaxTTL time.Duration
	// HostCert is set for a rule that issues Git host certificates (a
	// profile of github, gitlab or gitea) instead of grant certificates:
	// the shape of the certificate it issues to requester, for their
	// account on that host; false when the version lists no such
	// account. Nil for grant rules.
	HostCert func(requester string) (HostCert, bool)
}

// HostCert is the shape of a Git host certificate: the host reads the
// account from its principals, its extensions (GitHub's login@HOST) or its
// key ID (GitLab), so all three must be the account's.
type HostCert struct {
	Principals []string
	Extensions map[string]string
	// KeyID is the key ID the host requires; "" when any will do.
	KeyID string
}

// name is how messages name the version.
func (v *PolicyVersion) name() string {
	return shortDigest(v.Digest) + " (" + v.Source + ")"
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// PolicyReloadData is the data of a KindPolicyReload entry.
type PolicyReloadData struct {
	PolicySHA256 string            `json:"policy_sha256,omitempty"` // the version loaded
	People       int               `json:"people,omitempty"`
	Rules        int               `json:"rules,omitempty"`
	Offboarded   map[string]string `json:"offboarded,omitempty"` // person → why
}

// view is the people an entry about a request is judged against: those of
// the policy version that decided the request and, for a decision, of the
// version in force when it was made.
type view struct {
	people []map[string]Person
	// lenient: one of those versions was not supplied, so a person found
	// in none of them may be in that one; that is a gap in what the auditor
	// holds, not a failure of the log.
	lenient bool
}

// viewFor returns the view for an entry about request p. Requests recorded
// without a policy version are judged against CheckOptions.People.
func (c *checker) viewFor(p *pending, decision bool) view {
	if p == nil || p.digest == "" {
		return view{people: []map[string]Person{c.opts.People}}
	}
	digests := []string{p.digest}
	if decision && c.current != "" && c.current != p.digest {
		digests = append(digests, c.current)
	}
	var v view
	for _, d := range digests {
		if pv := c.versions[d]; pv != nil {
			v.people = append(v.people, pv.People)
		} else {
			v.lenient = true
		}
	}
	if len(v.people) == 0 {
		v.people = []map[string]Person{c.opts.People}
	}
	return v
}

// lookup returns everything the view knows of name: their keys and groups
// in every version that has them.
func (v view) lookup(name string) (Person, bool) {
	var out Person
	found := false
	for _, m := range v.people {
		if p, ok := m[name]; ok {
			found = true
			out.Keys = append(out.Keys, p.Keys...)
			for _, g := range p.Groups {
				if !slices.Contains(out.Groups, g) {
					out.Groups = append(out.Groups, g)
				}
			}
		}
	}
	return out, found
}

// requestPolicy notes the policy version a request names. It returns the
// failure to report when the version was not supplied.
func (c *checker) requestPolicy(d *RequestData, p *pending) error {
	if d.PolicySHA256 == "" {
		return nil
	}
	p.digest = d.PolicySHA256
	c.current = d.PolicySHA256
	if c.sum.PolicyRequests == nil {
		c.sum.PolicyRequests = make(map[string]int)
	}
	c.sum.PolicyRequests[d.PolicySHA256]++
	if c.versions[d.PolicySHA256] != nil || c.opts.People == nil {
		return nil
	}
	c.sum.UnknownPolicy++
	if c.opts.AllowUnknownPolicy {
		return nil
	}
	return fail(ErrPolicyUnknown, "request %s: policy version %s not supplied", d.ID, d.PolicySHA256)
}

// checkPolicy checks a request against the policy version that decided
// it, when the auditor supplied it, and makes that version's steps the
// ones its certificate must meet, whatever the entry records.
func (c *checker) checkPolicy(d *RequestData, p *pending) error {
	pv := c.versions[p.digest]
	if pv == nil {
		return nil
	}
	c.sum.PolicyChecked++
	name := d.Rule
	match := pv.Match
	if d.Workload != nil {
		match = nil
		if pv.MatchWorkload != nil {
			match = func(_, repo, ref, access string) (string, error) {
				return pv.MatchWorkload(d.Workload.Issuer, d.Workload.Claims, repo, ref, access)
			}
		}
	}
	if match != nil {
		picked, err := match(d.Requester, d.Repo, d.Ref, d.Access)
		if err != nil {
			return fail(ErrPolicy, "request %s: policy version %s lets no rule decide it: %v", d.ID, pv.name(), err)
		}
		name = picked
	}
	rule, ok := pv.Rules[name]
	if !ok {
		return fail(ErrPolicy, "request %s names rule %q, which policy version %s does not have", d.ID, d.Rule, pv.name())
	}
	p.steps = rule.Steps
	if rule.HostCert != nil {
		shape, ok := rule.HostCert(d.Requester)
		p.host = &hostIssue{shape: shape, noAccount: !ok}
	}
	switch {
	case name != d.Rule:
		return fail(ErrPolicy, "request %s is recorded under rule %q, but policy version %s decides it under rule %q", d.ID, d.Rule, pv.name(), name)
	case !sameSteps(d.Steps, rule.Steps):
		return fail(ErrPolicy, "request %s records approval steps %s, but rule %s of policy version %s requires %s",
			d.ID, stepsString(d.Steps), name, pv.name(), stepsString(rule.Steps))
	case p.ttl < rule.MinTTL || p.ttl > rule.MaxTTL:
		return fail(ErrPolicy, "request %s is granted %v, outside %v to %v of rule %s in policy version %s", d.ID, p.ttl, rule.MinTTL, rule.MaxTTL, name, pv.name())
	}
	return nil
}

// policyReload notes the version a reload put in force.
func (c *checker) policyReload(e *Entry) error {
	var d PolicyReloadData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	if d.PolicySHA256 != "" {
		c.current = d.PolicySHA256
	}
	return nil
}

// restore notes the version a restored state records: decisions after it
// are made under that one until the next reload.
func (c *checker) restore(e *Entry) error {
	var d RestoreData
	if err := decodeData(e, &d); err != nil {
		return err
	}
	if d.PolicySHA256 != "" {
		c.current = d.PolicySHA256
	}
	return nil
}

// sameSteps compares steps as sets of (group, count): their order decides
// nothing.
func sameSteps(a, b []Step) bool {
	if len(a) != len(b) {
		return false
	}
	sorted := func(s []Step) []Step {
		s = slices.Clone(s)
		slices.SortFunc(s, func(x, y Step) int { return cmp.Or(cmp.Compare(x.Group, y.Group), cmp.Compare(x.Count, y.Count)) })
		return s
	}
	return slices.Equal(sorted(a), sorted(b))
}

func stepsString(steps []Step) string {
	if len(steps) == 0 {
		return "none (approved automatically)"
	}
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%d from %s", s.Count, s.Group)
	}
	return strings.Join(parts, " and ")
}
