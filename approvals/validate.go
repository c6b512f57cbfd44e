package approvals

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// nameRE is what person, group and rule names look like. Person names end
// up in certificate key IDs ("alice/req-...") and in OpenSSH's logs, so
// they are kept to characters that need no quoting anywhere. Compiled on
// first use: the bounded repetition makes it costly, and every run of the
// binary, a Git connection's too, would otherwise pay for it at start.
var nameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
})

// checker collects every problem in a config, with the line it is on when
// the config came from a file.
type checker struct {
	file  string
	root  *yaml.Node // nil for a Config built in code
	probs []ConfigProblem
}

func at(path ...any) []any { return path }

func (c *checker) bad(path []any, format string, args ...any) {
	c.probs = append(c.probs, ConfigProblem{Line: lineOf(c.root, path...), Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.probs) == 0 {
		return nil
	}
	return &ConfigError{File: c.file, Problems: c.probs}
}

// server checks the settings only the daemon itself reads.
func (c *checker) server(cfg *Config) {
	if cfg.Listen == "" {
		c.bad(at("listen"), "listen: missing (the SSH API address, e.g. 127.0.0.1:2200)")
	} else if err := checkAddr(cfg.Listen); err != nil {
		c.bad(at("listen"), "listen: %v", err)
	}
	if cfg.HTTPListen != "" {
		if err := checkAddr(cfg.HTTPListen); err != nil {
			c.bad(at("http_listen"), "http_listen: %v", err)
		}
	}
	if cfg.MetricsListen != "" {
		if err := checkAddr(cfg.MetricsListen); err != nil {
			c.bad(at("metrics_listen"), "metrics_listen: %v", err)
		}
	}
	for _, f := range []struct{ key, val string }{
		{"host_key", cfg.HostKey}, {"data_dir", cfg.DataDir}, {"ca_dir", cfg.CADir}, {"audit_log", cfg.AuditLog},
	} {
		if f.val == "" {
			c.bad(at(f.key), "%s: missing", f.key)
		}
	}
	if len(cfg.HostNames) > 0 {
		if err := ca.CheckHostNames(cfg.HostNames); err != nil {
			c.bad(at("host_names"), "host_names: %v", err)
		}
	}
	for i, w := range cfg.Webhooks {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil:
			c.bad(at("webhooks", i, "url"), "webhooks[%d]: url: %v", i, err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			c.bad(at("webhooks", i, "url"), "webhooks[%d]: url %q: want an http:// or https:// URL", i, w.URL)
		}
		if w.Secret == "" {
			c.bad(at("webhooks", i, "secret"), "webhooks[%d]: secret: missing (it keys the HMAC signature header)", i)
		}
	}
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if port == "" {
		return fmt.Errorf("%q: no port", addr)
	}
	return nil
}

// policy checks people and rules; cfg has its defaults filled in.
func (c *checker) policy(cfg *Config) {
	if cfg.RequestTimeout <= 0 {
		c.bad(at("request_timeout"), "request_timeout: %v is not positive", cfg.RequestTimeout)
	}
	if cfg.Retention <= 0 {
		c.bad(at("retention"), "retention: %v is not positive", cfg.Retention)
	}
	if cfg.MaxPendingPerUser < 0 {
		c.bad(at("max_pending_per_user"), "max_pending_per_user: %d is negative", cfg.MaxPendingPerUser)
	}
	cfg.Limits.check(c)
	members := c.people(cfg.People)
	seenGroup := map[string]bool{}
	for i, g := range cfg.AuditorGroups {
		switch {
		case !nameRE().MatchString(g):
			c.bad(at("auditor_groups", i), "auditor_groups: %q: use letters, digits, '.', '_' and '-' (at most 64)", g)
		case seenGroup[g]:
			c.bad(at("auditor_groups", i), "auditor_groups: %q listed twice", g)
		}
		seenGroup[g] = true
	}
	issuers := c.oidc(cfg.OIDC)
	if len(cfg.Rules) == 0 {
		c.bad(at("rules"), "rules: none listed, so nothing could be requested")
	}
	seen := map[string]bool{}
	for i, r := range cfg.Rules {
		where := fmt.Sprintf("rule %q", r.Name)
		switch {
		case r.Name == "":
			where = fmt.Sprintf("rules[%d]", i)
			c.bad(at("rules", i), "%s: name: missing", where)
		case !nameRE().MatchString(r.Name):
			c.bad(at("rules", i, "name"), "%s: name: use letters, digits, '.', '_' and '-' (at most 64)", where)
		case seen[r.Name]:
			c.bad(at("rules", i, "name"), "%s: name used by an earlier rule", where)
		}
		seen[r.Name] = true
		c.rule(i, where, r, members, cfg.People, issuers)
	}
}

// people checks cfg.People and returns the members of each group.
func (c *checker) people(people []Person) map[string][]string {
	members := map[string][]string{}
	if len(people) == 0 {
		c.bad(at("people"), "people: none listed")
	}
	names := map[string]bool{}
	keyOwner := map[string]string{} // key blob → person
	for i, p := range people {
		where := fmt.Sprintf("person %q", p.Name)
		switch {
		case p.Name == "":
			where = fmt.Sprintf("people[%d]", i)
			c.bad(at("people", i), "%s: name: missing", where)
		case !nameRE().MatchString(p.Name):
			c.bad(at("people", i, "name"), "%s: name: use letters, digits, '.', '_' and '-' (at most 64)", where)
		case p.Name == SystemActor:
			c.bad(at("people", i, "name"), "%s: name: %q is reserved for jitssh's own actions", where, SystemActor)
		case names[p.Name]:
			c.bad(at("people", i, "name"), "%s: listed twice", where)
		}
		names[p.Name] = true

		inGroup := map[string]bool{}
		for j, g := range p.Groups {
			switch {
			case !nameRE().MatchString(g):
				c.bad(at("people", i, "groups", j), "%s: group %q: use letters, digits, '.', '_' and '-' (at most 64)", where, g)
			case inGroup[g]:
				c.bad(at("people", i, "groups", j), "%s: group %q listed twice", where, g)
			default:
				members[g] = append(members[g], p.Name)
			}
			inGroup[g] = true
		}

		c.accounts(i, where, p.Accounts)

		if len(p.Keys) == 0 {
			c.bad(at("people", i), "%s: keys: none listed, so they could never be identified", where)
		}
		for j, line := range p.Keys {
			key, err := parseIdentityKey(line)
			if err != nil {
				c.bad(at("people", i, "keys", j), "%s: keys[%d]: %v", where, j, err)
				continue
			}
			blob := string(key.Marshal())
			if owner, ok := keyOwner[blob]; ok {
				if owner == p.Name {
					c.bad(at("people", i, "keys", j), "%s: keys[%d]: %s listed twice", where, j, ssh.FingerprintSHA256(key))
				} else {
					c.bad(at("people", i, "keys", j), "%s: keys[%d]: %s is also a key of person %q; a key identifies one person",
						where, j, ssh.FingerprintSHA256(key), owner)
				}
				continue
			}
			keyOwner[blob] = p.Name
		}
	}
	return members
}

// parseIdentityKey reads one authorized_keys line that identifies a person.
func parseIdentityKey(line string) (ssh.PublicKey, error) {
	key, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("not an authorized_keys line: %v", err)
	}
	if len(opts) > 0 {
		return nil, fmt.Errorf("options (%s) are not supported; list the bare key", strings.Join(opts, ","))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("more than one key in one entry; list each key on its own")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("a certificate; certificates never identify anyone, list the plain key")
	}
	return key, nil
}

func (c *checker) rule(i int, where string, r Rule, members map[string][]string, people []Person, issuers map[string]bool) {
	switch {
	case r.Workload != nil && len(r.Groups) > 0:
		c.bad(at("rules", i, "workload"), "%s: both groups and workload; a rule is for people or for CI/CD jobs, not both", where)
	case r.Workload != nil:
		c.workload(i, where, *r.Workload, issuers)
	case len(r.Groups) == 0:
		c.bad(at("rules", i), "%s: groups: none listed, so nobody could request under it", where)
	}
	for j, g := range r.Groups {
		if len(members[g]) == 0 {
			c.bad(at("rules", i, "groups", j), "%s: groups: %q has no members (no person lists it)", where, g)
		}
	}

	if len(r.Repos) == 0 {
		c.bad(at("rules", i), "%s: repos: none listed", where)
	}
	for j, glob := range r.Repos {
		if _, err := path.Match(glob, ""); err != nil {
			c.bad(at("rules", i, "repos", j), "%s: repos: %q is not a valid glob: %v", where, glob, err)
		} else if !strings.ContainsAny(glob, `*?[\`) {
			if err := principals.CheckRepo(glob); err != nil {
				c.bad(at("rules", i, "repos", j), "%s: repos: %v", where, err)
			}
		}
	}

	if len(r.Refs) == 0 {
		c.bad(at("rules", i), `%s: refs: none listed (use "*" for every ref)`, where)
	}
	for j, p := range r.Refs {
		if err := principals.CheckRefPattern(p); err != nil {
			c.bad(at("rules", i, "refs", j), "%s: refs: %v", where, err)
		}
	}

	if len(r.Access) == 0 {
		c.bad(at("rules", i), "%s: access: none listed (read, write or force)", where)
	}
	seenAccess := map[string]bool{}
	for j, a := range r.Access {
		if _, err := principals.ParseAccess(a); err != nil {
			c.bad(at("rules", i, "access", j), "%s: access: %v", where, err)
		} else if seenAccess[a] {
			c.bad(at("rules", i, "access", j), "%s: access: %q listed twice", where, a)
		}
		seenAccess[a] = true
	}

	c.steps(i, where, r, members, people)
	c.ttls(i, where, r)

	if r.SourceAddress != "" {
		if _, err := ca.ParseSourceAddress(r.SourceAddress); err != nil {
			c.bad(at("rules", i, "source_address"), "%s: source_address: %v", where, err)
		}
	}
	c.hostProfile(i, where, r)
}

// accounts checks a person's Git host accounts: one per host profile,
// each a name that host can have.
func (c *checker) accounts(i int, where string, accounts map[string]string) {
	for _, host := range slices.Sorted(maps.Keys(accounts)) {
		profile, err := ca.ParseHostProfile(host)
		if err != nil {
			c.bad(at("people", i, "accounts", host), "%s: accounts: %v", where, err)
			continue
		}
		if err := ca.CheckAccount(profile, accounts[host]); err != nil {
			c.bad(at("people", i, "accounts", host), "%s: accounts: %s: %v", where, host, err)
		}
	}
}

// hostProfile checks a rule's Git host profile: a rule for people, whose
// certificates are issued for their accounts on that host.
func (c *checker) hostProfile(i int, where string, r Rule) {
	if r.Profile == "" {
		if r.Host != "" {
			c.bad(at("rules", i, "host"), "%s: host: needs profile: github", where)
		}
		return
	}
	profile, err := ca.ParseHostProfile(r.Profile)
	if err != nil {
		c.bad(at("rules", i, "profile"), "%s: profile: %v", where, err)
		return
	}
	if r.Workload != nil {
		c.bad(at("rules", i, "profile"), "%s: profile: a CI/CD job has no account on %s; issue it grant certificates", where, profile)
	}
	if err := ca.CheckHost(profile, r.Host); err != nil {
		c.bad(at("rules", i, "host"), "%s: host: %v", where, err)
	}
}

func (c *checker) steps(i int, where string, r Rule, members map[string][]string, people []Person) {
	switch {
	case len(r.Approvals) == 0 && !r.AutoApprove:
		c.bad(at("rules", i), "%s: neither approvals nor auto_approve: nobody could ever approve a request", where)
		return
	case len(r.Approvals) > 0 && r.AutoApprove:
		c.bad(at("rules", i, "auto_approve"), "%s: both approvals and auto_approve; choose one", where)
		return
	}
	ok := true
	seen := map[string]bool{}
	for j, s := range r.Approvals {
		n := len(members[s.Group])
		switch {
		case n == 0:
			c.bad(at("rules", i, "approvals", j), "%s: approvals[%d]: group %q has no members", where, j, s.Group)
		case s.Count < 1:
			c.bad(at("rules", i, "approvals", j), "%s: approvals[%d]: count %d; want at least 1", where, j, s.Count)
		case s.Count > n:
			c.bad(at("rules", i, "approvals", j), "%s: approvals[%d]: count %d, but group %q has %d %s",
				where, j, s.Count, s.Group, n, plural(n, "member", "members"))
		case seen[s.Group]:
			c.bad(at("rules", i, "approvals", j), "%s: approvals[%d]: group %q has an earlier step; raise its count instead",
				where, j, s.Group)
		default:
			seen[s.Group] = true
			continue
		}
		ok = false
	}
	if !ok {
		return
	}
	everyone := make([][]string, len(people))
	for k, p := range people {
		everyone[k] = p.Groups
	}
	if !canSatisfy(r.Approvals, everyone) {
		c.bad(at("rules", i, "approvals"), "%s: approvals: %s cannot all be met by distinct people (one person counts once)",
			where, stepsString(r.Approvals))
	}
}

func (c *checker) ttls(i int, where string, r Rule) {
	okays := true
	for _, t := range []struct {
		key string
		val Duration
	}{{"min_ttl", r.MinTTL}, {"default_ttl", r.DefaultTTL}, {"max_ttl", r.MaxTTL}} {
		switch {
		case t.val < Duration(ca.MinTTL):
			c.bad(at("rules", i, t.key), "%s: %s: %v; want at least %v", where, t.key, t.val, ca.MinTTL)
		case t.val > Duration(ca.DefaultMaxTTL):
			c.bad(at("rules", i, t.key), "%s: %s: %v; the CA signs for at most %v", where, t.key, t.val, ca.DefaultMaxTTL)
		default:
			continue
		}
		okays = false
	}
	if !okays {
		return
	}
	if r.MinTTL > r.MaxTTL {
		c.bad(at("rules", i, "min_ttl"), "%s: min_ttl %v is above max_ttl %v", where, r.MinTTL, r.MaxTTL)
	} else if r.DefaultTTL < r.MinTTL || r.DefaultTTL > r.MaxTTL {
		c.bad(at("rules", i, "default_ttl"), "%s: default_ttl %v is outside min_ttl %v to max_ttl %v",
			where, r.DefaultTTL, r.MinTTL, r.MaxTTL)
	}
}

func stepsString(steps []Step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%d of %s", s.Count, s.Group)
	}
	return strings.Join(parts, " and ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
