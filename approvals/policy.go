package approvals

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals/workload"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// Policy is a checked, compiled Config: who people are and what they may
// request. It is immutable; a reload builds a new one (see
// Service.SetPolicy).
type Policy struct {
	cfg     Config              // defaults filled in; never modified
	people  map[string]*member  // by name
	byKey   map[string]string   // SSH public key blob → person
	members map[string][]string // group → people, in config order
	rules   []compiledRule
	// workloads verifies CI/CD tokens of the issuers in cfg.OIDC; nil
	// when there are none.
	workloads *workload.Verifier
}

type member struct {
	Person
	in   map[string]bool // groups
	keys []ssh.PublicKey
}

type compiledRule struct {
	Rule
	access map[principals.Access]bool
	groups map[string]bool
}

// NewPolicy checks the people and rules of c (not the daemon's own
// settings: see LoadConfig) and compiles them. c is not modified; defaults
// are filled into the Policy's own copy.
func NewPolicy(c *Config) (*Policy, error) {
	if c == nil {
		return nil, fmt.Errorf("new policy: %w: no config", ErrInvalidConfig)
	}
	cfg := withDefaults(c)
	chk := checker{}
	chk.policy(cfg)
	if err := chk.err(); err != nil {
		return nil, err
	}
	p := &Policy{
		cfg:     *cfg,
		people:  make(map[string]*member, len(cfg.People)),
		byKey:   map[string]string{},
		members: map[string][]string{},
	}
	for _, person := range cfg.People {
		m := &member{Person: person, in: map[string]bool{}}
		for _, g := range person.Groups {
			m.in[g] = true
			p.members[g] = append(p.members[g], person.Name)
		}
		for _, line := range person.Keys {
			key, err := parseIdentityKey(line) // checked above
			if err != nil {
				return nil, fmt.Errorf("new policy: person %q: %w", person.Name, err)
			}
			p.byKey[string(key.Marshal())] = person.Name
			m.keys = append(m.keys, key)
		}
		p.people[person.Name] = m
	}
	for _, r := range cfg.Rules {
		cr := compiledRule{Rule: r, access: map[principals.Access]bool{}, groups: map[string]bool{}}
		for _, a := range r.Access {
			acc, _ := principals.ParseAccess(a) // checked above
			cr.access[acc] = true
		}
		for _, g := range r.Groups {
			cr.groups[g] = true
		}
		p.rules = append(p.rules, cr)
	}
	if len(cfg.OIDC) > 0 {
		v, err := workload.New(cfg.OIDC, workload.Options{})
		if err != nil {
			return nil, fmt.Errorf("new policy: %w: %w", ErrInvalidConfig, err)
		}
		p.workloads = v
	}
	return p, nil
}

// Identify returns the person whose config lists key, compared by the exact
// key blob, and their groups. A certificate never identifies anyone, even
// one for a listed key: people are known by their plain keys only.
func (p *Policy) Identify(key ssh.PublicKey) (person string, groups []string, ok bool) {
	if key == nil {
		return "", nil, false
	}
	if _, isCert := key.(*ssh.Certificate); isCert {
		return "", nil, false
	}
	name, ok := p.byKey[string(key.Marshal())]
	if !ok {
		return "", nil, false
	}
	return name, p.Groups(name), true
}

// Person returns the config entry of the named person.
func (p *Policy) Person(name string) (Person, bool) {
	m, ok := p.people[name]
	if !ok {
		return Person{}, false
	}
	return clonePerson(m.Person), true
}

// People returns everyone in the config, in config order.
func (p *Policy) People() []Person {
	out := make([]Person, len(p.cfg.People))
	for i, person := range p.cfg.People {
		out[i] = clonePerson(person)
	}
	return out
}

// Account returns the named person's account on the Git host of profile,
// or "" when the config lists none.
func (p *Policy) Account(person string, profile ca.Profile) string {
	m, ok := p.people[person]
	if !ok {
		return ""
	}
	return m.Accounts[string(profile)]
}

// Groups returns the groups of the named person, in config order; nil for
// someone not in the config.
func (p *Policy) Groups(person string) []string {
	m, ok := p.people[person]
	if !ok {
		return nil
	}
	return slices.Clone(m.Groups)
}

// Members returns the people in group, in config order.
func (p *Policy) Members(group string) []string {
	return slices.Clone(p.members[group])
}

// Rules returns every rule, in file order.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = cloneRule(r.Rule)
	}
	return out
}

// Rule returns the rule with that name.
func (p *Policy) Rule(name string) (Rule, bool) {
	for _, r := range p.rules {
		if r.Name == name {
			return cloneRule(r.Rule), true
		}
	}
	return Rule{}, false
}

// Config returns a copy of the config the policy was built from, with
// defaults filled in.
func (p *Policy) Config() *Config { return withDefaults(&p.cfg) }

// RequestTimeout is how long a pending request waits for approval before
// it expires.
func (p *Policy) RequestTimeout() time.Duration { return p.cfg.RequestTimeout.D() }

// MaxPendingPerUser is how many pending requests one person may have.
func (p *Policy) MaxPendingPerUser() int { return p.cfg.MaxPendingPerUser }

// Allowed returns the rules the person may request under, in file order.
func (p *Policy) Allowed(person string) []Rule {
	m, ok := p.people[person]
	if !ok {
		return nil
	}
	var out []Rule
	for _, r := range p.rules {
		if r.admits(m) {
			out = append(out, cloneRule(r.Rule))
		}
	}
	return out
}

func (r *compiledRule) admits(m *member) bool {
	for g := range r.groups {
		if m.in[g] {
			return true
		}
	}
	return false
}

func (r *compiledRule) coversRepo(repo string) bool {
	for _, glob := range r.Repos {
		if ok, _ := path.Match(glob, repo); ok {
			return true
		}
	}
	return false
}

func (r *compiledRule) coversRef(ref string) bool {
	for _, p := range r.Refs {
		if refWithin(ref, p) {
			return true
		}
	}
	return false
}

// refWithin reports whether a requested ref or ref pattern falls within a
// rule's ref pattern: "*" holds everything, a pattern holds itself, and
// "X/*" holds every ref and pattern strictly below "X/", so that
// "refs/heads/feature/*" holds "refs/heads/feature/login" and
// "refs/heads/feature/team/*", but not "refs/heads/feature".
func refWithin(ref, pattern string) bool {
	if pattern == "*" || ref == pattern {
		return true
	}
	dir, ok := strings.CutSuffix(pattern, "*")
	return ok && strings.HasSuffix(dir, "/") && len(ref) > len(dir) && strings.HasPrefix(ref, dir)
}

// Match returns the first rule, in file order, under which person may
// request access on repo at the ref or ref pattern ref. When there is
// none, the error wraps ErrNoRule and says why, and what the person may
// request on that repo instead.
func (p *Policy) Match(person string, repo, ref string, access principals.Access) (*Rule, error) {
	m, ok := p.people[person]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a person in the policy", ErrNoRule, person)
	}
	var near []string // what this person may request on this repo
	for i := range p.rules {
		r := &p.rules[i]
		if !r.admits(m) || !r.coversRepo(repo) {
			continue
		}
		if r.access[access] && r.coversRef(ref) {
			out := cloneRule(r.Rule)
			return &out, nil
		}
		near = append(near, fmt.Sprintf("%s on %s (rule %s)",
			strings.Join(r.Access, "/"), strings.Join(r.Refs, ", "), r.Name))
	}
	msg := fmt.Sprintf("no rule lets %s (%s %s) request %s on %s at %s", person,
		plural(len(m.Groups), "group", "groups"), strings.Join(m.Groups, ", "), access, repo, ref)
	if len(near) == 0 {
		return nil, fmt.Errorf("%w: %s; you may request nothing on %s", ErrNoRule, msg, repo)
	}
	return nil, fmt.Errorf("%w: %s; on %s you may request %s", ErrNoRule, msg, repo, strings.Join(near, "; "))
}

// canBeApproved reports whether the steps can be met by the people of the
// policy other than requester. A request nobody could complete is refused
// when it is made rather than left to expire.
func (p *Policy) canBeApproved(steps []Step, requester string) bool {
	var others [][]string
	for _, person := range p.cfg.People {
		if person.Name != requester {
			others = append(others, person.Groups)
		}
	}
	return canSatisfy(steps, others)
}

// approverGroups returns every group that appears in some rule's steps.
func (p *Policy) approverGroups() map[string]bool {
	out := map[string]bool{}
	for _, r := range p.rules {
		for _, s := range r.Approvals {
			out[s.Group] = true
		}
	}
	return out
}
