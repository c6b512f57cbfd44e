package approvals

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// DigestPrefix starts every policy digest, naming its hash.
const DigestPrefix = "sha256:"

// digestVersion is part of what Digest hashes: a change to the canonical
// form below must change it, so that two forms never share a digest.
const digestVersion = 1

// Digest returns the policy's version: "sha256:" and the hex SHA-256 of the
// canonical form of everything that decides requests, and of nothing else.
//
// It covers the people (name, groups, the SHA256 fingerprints of their
// keys, and their Git host accounts), the CI/CD token issuers (name,
// issuer and audience; not where their keys come from), the rules in file
// order (the first that matches decides) with all their fields (a Git host
// profile too), request_timeout and max_pending_per_user, every value as
// the policy uses it (defaults filled in, access levels, TTLs as
// durations). Lists whose order decides nothing (people, a person's groups
// and keys, a rule's groups, repos, refs, access and approval steps) are
// sorted and their repeats dropped. So the digest does not change with YAML
// formatting, comments, key order, key comments or the daemon's own
// settings (addresses, paths, webhooks), and changes with any change to a
// decision. The daemon records it on every request and policy reload; an
// auditor computes it from a copy of the config to know which version
// decided a request.
func (p *Policy) Digest() string {
	form := digestForm{
		Version:           digestVersion,
		RequestTimeout:    int64(p.cfg.RequestTimeout),
		MaxPendingPerUser: p.cfg.MaxPendingPerUser,
		People:            make([]digestPerson, 0, len(p.people)),
		Rules:             make([]digestRule, 0, len(p.rules)),
	}
	for name, m := range p.people {
		dp := digestPerson{Name: name, Groups: sortedSet(m.Groups), Keys: make([]string, 0, len(m.keys))}
		for _, host := range slices.Sorted(maps.Keys(m.Accounts)) {
			dp.Accounts = append(dp.Accounts, [2]string{host, m.Accounts[host]})
		}
		for _, k := range m.keys {
			dp.Keys = append(dp.Keys, ssh.FingerprintSHA256(k))
		}
		dp.Keys = sortedSet(dp.Keys)
		form.People = append(form.People, dp)
	}
	slices.SortFunc(form.People, func(a, b digestPerson) int { return cmp.Compare(a.Name, b.Name) })
	for _, r := range p.rules {
		dr := digestRule{
			Name:          r.Name,
			Groups:        sortedSet(r.Groups),
			Repos:         sortedSet(r.Repos),
			Refs:          sortedSet(r.Refs),
			Approvals:     append([]Step{}, r.Approvals...),
			AutoApprove:   r.AutoApprove,
			DefaultTTL:    int64(r.DefaultTTL),
			MinTTL:        int64(r.MinTTL),
			MaxTTL:        int64(r.MaxTTL),
			RequireReason: r.RequireReason,
			SourceAddress: r.SourceAddress,
			Profile:       r.Profile,
			Host:          r.Host,
		}
		if w := r.Workload; w != nil {
			dw := &digestWorkload{Issuer: w.Issuer, Claims: make([][2]string, 0, len(w.Claims))}
			for k, v := range w.Claims {
				dw.Claims = append(dw.Claims, [2]string{k, v})
			}
			slices.SortFunc(dw.Claims, func(a, b [2]string) int { return cmp.Compare(a[0], b[0]) })
			dr.Workload = dw
		}
		for a := range r.access {
			dr.Access = append(dr.Access, a.String())
		}
		dr.Access = sortedSet(dr.Access)
		slices.SortFunc(dr.Approvals, func(a, b Step) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Count, b.Count))
		})
		form.Rules = append(form.Rules, dr)
	}
	for _, iss := range p.cfg.OIDC {
		// Where the keys come from is the daemon's business, like its
		// paths; which issuer, and for which audience, decides.
		form.OIDC = append(form.OIDC, digestIssuer{Name: iss.Name, Issuer: iss.Issuer, Audience: iss.Audience})
	}
	slices.SortFunc(form.OIDC, func(a, b digestIssuer) int { return cmp.Compare(a.Name, b.Name) })
	b, err := json.Marshal(form)
	if err != nil { // plain strings, numbers and booleans always encode
		panic(fmt.Sprintf("policy digest: %v", err))
	}
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// digestForm is the canonical form Digest hashes: its JSON encoding, fields
// in this order.
type digestForm struct {
	Version           int            `json:"v"`
	RequestTimeout    int64          `json:"request_timeout_ns"`
	MaxPendingPerUser int            `json:"max_pending_per_user"`
	People            []digestPerson `json:"people"`
	Rules             []digestRule   `json:"rules"`
	// Left out when empty, so that digests of policies without CI/CD
	// issuers stay what they were.
	OIDC []digestIssuer `json:"oidc,omitempty"`
}

type digestIssuer struct {
	Name     string `json:"name"`
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

// digestWorkload is a rule's workload match; its claims sorted by name.
type digestWorkload struct {
	Issuer string      `json:"issuer"`
	Claims [][2]string `json:"claims"`
}

type digestPerson struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Keys   []string `json:"keys"` // SHA256 fingerprints
	// Git host accounts, sorted by host profile; left out when none, so
	// that people without any keep their digest.
	Accounts [][2]string `json:"accounts,omitempty"`
}

type digestRule struct {
	Name          string   `json:"name"`
	Groups        []string `json:"groups"`
	Repos         []string `json:"repos"`
	Refs          []string `json:"refs"`
	Access        []string `json:"access"`
	Approvals     []Step   `json:"approvals"`
	AutoApprove   bool     `json:"auto_approve"`
	DefaultTTL    int64    `json:"default_ttl_ns"`
	MinTTL        int64    `json:"min_ttl_ns"`
	MaxTTL        int64    `json:"max_ttl_ns"`
	RequireReason bool     `json:"require_reason"`
	SourceAddress string   `json:"source_address"`
	// Left out when nil, so that rules for people keep their digest.
	Workload *digestWorkload `json:"workload,omitempty"`
	// Left out when empty, so that rules issuing grant certificates keep
	// their digest.
	Profile string `json:"profile,omitempty"`
	Host    string `json:"host,omitempty"`
}

// sortedSet returns the distinct strings of s, sorted; never nil, so that
// an empty list and a missing one hash alike.
func sortedSet(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// ErrNoRules is returned by ParsePolicy for a document that lists no rules
// at all: people alone, which ParsePeople reads.
var ErrNoRules = errors.New("no rules listed")

// ParsePolicy reads a policy from a copy of the daemon's config file, as an
// auditor holds it: the document is decoded as strictly as the daemon
// decodes it (unknown fields are errors), and its people and rules are
// checked the same way, but the daemon's own settings (listen, paths) are
// neither required nor checked. file names the document in errors. A
// document without rules fails with ErrNoRules.
func ParsePolicy(file string, data []byte) (*Policy, error) {
	raw, root, err := decodeConfig(file, data)
	if err != nil {
		return nil, err
	}
	if len(raw.Rules) == 0 {
		return nil, fmt.Errorf("load policy %s: %w", file, ErrNoRules)
	}
	chk := checker{file: file, root: root}
	chk.policy(withDefaults(raw))
	if err := chk.err(); err != nil {
		return nil, err
	}
	return NewPolicy(raw)
}

// ParsePeople reads the people of a config document, or of a document that
// holds nothing else, decoded and checked as the daemon checks them; rules,
// if any, are ignored. An auditor uses it for a file that has no rules.
func ParsePeople(file string, data []byte) ([]Person, error) {
	raw, root, err := decodeConfig(file, data)
	if err != nil {
		return nil, err
	}
	chk := checker{file: file, root: root}
	chk.people(raw.People)
	if err := chk.err(); err != nil {
		return nil, err
	}
	out := make([]Person, len(raw.People))
	for i, p := range raw.People {
		out[i] = clonePerson(p)
	}
	return out, nil
}

// ParseIdentityKey reads one public key line the way the daemon reads a
// person's key in its config: an authorized_keys line without options,
// holding exactly one key, which is not a certificate. The comment is
// ignored.
func ParseIdentityKey(line string) (ssh.PublicKey, error) {
	return parseIdentityKey(line)
}

// decodeConfig decodes one config document strictly, as LoadConfig does,
// and returns it with its node tree for line numbers.
func decodeConfig(file string, data []byte) (*Config, *yaml.Node, error) {
	if len(data) > maxConfigSize {
		return nil, nil, fmt.Errorf("load config %s: %w: larger than %d bytes", file, ErrInvalidConfig, maxConfigSize)
	}
	var raw Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("load config %s: %w: the file is empty", file, ErrInvalidConfig)
		}
		return nil, nil, fmt.Errorf("load config %s: %w: %w", file, ErrInvalidConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("load config %s: %w: more than one YAML document", file, ErrInvalidConfig)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // decoded above, so it decodes
	return &raw, &root, nil
}
