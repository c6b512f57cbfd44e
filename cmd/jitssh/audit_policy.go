package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// maxPolicyFileSize bounds a config file `audit verify --people` reads; the
// daemon refuses larger ones.
const maxPolicyFileSize = 4 << 20

// auditTrust is what the auditor's --people files hold: the policy
// versions, and everyone any of them lists.
type auditTrust struct {
	versions []audit.PolicyVersion
	people   map[string]audit.Person // nil when no file was given
}

// loadPolicies reads each --people file the way the daemon reads its
// config: a file with rules is a policy version, identified by its digest;
// a file with people alone only vouches for their keys and groups.
func loadPolicies(paths []string) (*auditTrust, error) {
	t := &auditTrust{}
	if len(paths) == 0 {
		return t, nil
	}
	t.people = make(map[string]audit.Person)
	for _, path := range paths {
		data, err := readLimited(path, maxPolicyFileSize)
		if err != nil {
			return nil, fmt.Errorf("load people: %w", err)
		}
		var people []approvals.Person
		pol, err := approvals.ParsePolicy(path, data)
		switch {
		case errors.Is(err, approvals.ErrNoRules):
			if people, err = approvals.ParsePeople(path, data); err != nil {
				return nil, fmt.Errorf("load people: %w", err)
			}
		case err != nil:
			return nil, fmt.Errorf("load people: %w", err)
		default:
			people = pol.People()
		}
		byName, err := auditPeople(path, people)
		if err != nil {
			return nil, err
		}
		for name, p := range byName {
			t.people[name] = mergePerson(t.people[name], p)
		}
		if pol == nil {
			continue
		}
		digest := pol.Digest()
		if slices.ContainsFunc(t.versions, func(v audit.PolicyVersion) bool { return v.Digest == digest }) {
			continue // the same version twice: the first names it
		}
		t.versions = append(t.versions, policyVersion(path, digest, pol, byName))
	}
	return t, nil
}

// auditPeople converts the people of a config, whose keys the daemon has
// already accepted, with the daemon's own key parser.
func auditPeople(path string, people []approvals.Person) (map[string]audit.Person, error) {
	out := make(map[string]audit.Person, len(people))
	for _, p := range people {
		ap := audit.Person{Groups: slices.Clone(p.Groups)}
		for i, line := range p.Keys {
			k, err := approvals.ParseIdentityKey(line)
			if err != nil {
				return nil, fmt.Errorf("load people %s: %s keys[%d]: %w", path, p.Name, i, err)
			}
			ap.Keys = append(ap.Keys, k)
		}
		out[p.Name] = ap
	}
	return out, nil
}

func policyVersion(path, digest string, pol *approvals.Policy, people map[string]audit.Person) audit.PolicyVersion {
	v := audit.PolicyVersion{Digest: digest, Source: path, People: people, Rules: make(map[string]audit.PolicyRule)}
	for _, r := range pol.Rules() {
		rule := audit.PolicyRule{MinTTL: r.MinTTL.D(), MaxTTL: r.MaxTTL.D()}
		for _, s := range r.Approvals {
			rule.Steps = append(rule.Steps, audit.Step{Group: s.Group, Count: s.Count})
		}
		if profile, err := ca.ParseHostProfile(r.Profile); err == nil {
			// The rule issues certificates for the requester's account
			// on a Git host, in the shape that host reads.
			host := r.Host
			rule.HostCert = func(requester string) (audit.HostCert, bool) {
				account := pol.Account(requester, profile)
				if account == "" {
					return audit.HostCert{}, false
				}
				names, ext, keyID := ca.HostShape(profile, account, host)
				return audit.HostCert{Principals: names, Extensions: ext, KeyID: keyID}, true
			}
		}
		v.Rules[r.Name] = rule
	}
	v.Match = func(requester, repo, ref, access string) (string, error) {
		a, err := principals.ParseAccess(access)
		if err != nil {
			return "", err
		}
		r, err := pol.Match(requester, repo, ref, a)
		if err != nil {
			return "", err
		}
		return r.Name, nil
	}
	v.MatchWorkload = func(issuer string, claims map[string]string, repo, ref, access string) (string, error) {
		a, err := principals.ParseAccess(access)
		if err != nil {
			return "", err
		}
		r, err := pol.MatchWorkload(issuer, claims, repo, ref, a)
		if err != nil {
			return "", err
		}
		return r.Name, nil
	}
	return v
}

// mergePerson is everything two versions say of one person: every key and
// every group either lists.
func mergePerson(a, b audit.Person) audit.Person {
	for _, k := range b.Keys {
		if !slices.ContainsFunc(a.Keys, func(x ssh.PublicKey) bool { return bytes.Equal(x.Marshal(), k.Marshal()) }) {
			a.Keys = append(a.Keys, k)
		}
	}
	for _, g := range b.Groups {
		if !slices.Contains(a.Groups, g) {
			a.Groups = append(a.Groups, g)
		}
	}
	return a
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
