package approvals

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jitssh/jitssh/approvals/workload"
)

// Defaults for what the config leaves out.
const (
	DefaultRequestTimeout    = time.Hour
	DefaultMaxPendingPerUser = 5
	DefaultMinTTL            = time.Minute
	DefaultDefaultTTL        = time.Hour
	DefaultMaxTTL            = 8 * time.Hour
)

// DefaultAuditorGroups is the auditor_groups of a config that leaves it
// out.
var DefaultAuditorGroups = []string{"auditors"}

// maxConfigSize bounds the config file; a policy is hand-written text.
const maxConfigSize = 4 << 20

// Config is the approval daemon's configuration file: where it listens and
// keeps its state, who the people are, and the rules they request under.
type Config struct {
	Listen        string `yaml:"listen" json:"listen"`                           // SSH API address, e.g. 127.0.0.1:2200
	HTTPListen    string `yaml:"http_listen" json:"http_listen,omitempty"`       // public HTTP endpoints
	MetricsListen string `yaml:"metrics_listen" json:"metrics_listen,omitempty"` // /metrics on its own address; empty serves it on http_listen
	HostKey       string `yaml:"host_key" json:"host_key"`                       // the daemon's SSH host key file
	// HostNames, when set, are the names clients dial the daemon by: the
	// daemon signs its host key with the CA for them, so that clients
	// may trust one "@cert-authority" known_hosts line instead of pinning.
	HostNames         []string  `yaml:"host_names" json:"host_names,omitempty"`
	DataDir           string    `yaml:"data_dir" json:"data_dir"`                         // raft log, snapshots and state
	CADir             string    `yaml:"ca_dir" json:"ca_dir"`                             // read with ca.Load
	AuditLog          string    `yaml:"audit_log" json:"audit_log"`                       // the hash-chained audit log
	PIDFile           string    `yaml:"pid_file" json:"pid_file,omitempty"`               // written with the daemon's process ID while it runs
	RequestTimeout    Duration  `yaml:"request_timeout" json:"request_timeout"`           // a pending request nobody acted on expires after this
	Retention         Duration  `yaml:"retention" json:"retention"`                       // how long an ended request stays in memory; the audit log keeps it
	MaxPendingPerUser int       `yaml:"max_pending_per_user" json:"max_pending_per_user"` // pending requests one person may have at once
	Webhooks          []Webhook `yaml:"webhooks" json:"webhooks,omitempty"`
	AuditorGroups     []string  `yaml:"auditor_groups" json:"auditor_groups"` // see every request; left out: DefaultAuditorGroups
	Limits            Limits    `yaml:"limits" json:"limits"`                 // see Limits; zero means the default
	People            []Person  `yaml:"people" json:"people"`
	Rules             []Rule    `yaml:"rules" json:"rules"`
	// OIDC lists the CI/CD token issuers whose jobs may request under
	// workload rules (see Rule.Workload); none means workloads may not.
	OIDC []workload.Issuer `yaml:"oidc" json:"oidc,omitempty"`

	// Cluster makes the daemon one node of a raft cluster; nil runs it on
	// its own.
	Cluster *ClusterConfig `yaml:"cluster" json:"cluster,omitempty"`
}

// Webhook is an endpoint told about requests; the server posts to it.
type Webhook struct {
	URL    string `yaml:"url" json:"url"`
	Secret string `yaml:"secret" json:"-"` // HMAC key for the signature header
}

// Person is someone who may use jitssh, identified by the SSH keys they
// already have.
type Person struct {
	Name   string   `yaml:"name" json:"name"`
	Keys   []string `yaml:"keys" json:"keys"` // authorized_keys lines, without options
	Groups []string `yaml:"groups" json:"groups"`
	// Accounts are the person's accounts on Git hosts, by host profile
	// (github, gitlab, gitea): what a certificate issued under a rule with
	// that profile is for.
	Accounts map[string]string `yaml:"accounts" json:"accounts,omitempty"`
}

// Rule says who may request what, and what it takes to get it.
//
// A request falls under a rule when the requester is in one of Groups (or,
// for a rule with Workload instead, is a CI/CD job whose token matches it), the
// repo matches one of Repos (path.Match globs: "*" stays within one path
// segment), the requested ref pattern falls within one of Refs, and the
// access is listed in Access. The first such rule in file order decides.
type Rule struct {
	Name          string   `yaml:"name" json:"name"`
	Groups        []string `yaml:"groups" json:"groups"`
	Repos         []string `yaml:"repos" json:"repos"`
	Refs          []string `yaml:"refs" json:"refs"`
	Access        []string `yaml:"access" json:"access"`
	Approvals     []Step   `yaml:"approvals" json:"approvals,omitempty"` // all steps must be met
	AutoApprove   bool     `yaml:"auto_approve" json:"auto_approve,omitempty"`
	DefaultTTL    Duration `yaml:"default_ttl" json:"default_ttl"`
	MinTTL        Duration `yaml:"min_ttl" json:"min_ttl"`
	MaxTTL        Duration `yaml:"max_ttl" json:"max_ttl"`
	RequireReason bool     `yaml:"require_reason" json:"require_reason,omitempty"`
	SourceAddress string   `yaml:"source_address" json:"source_address,omitempty"`
	// Workload, instead of Groups, opens the rule to CI/CD jobs: see
	// WorkloadMatch.
	Workload *WorkloadMatch `yaml:"workload" json:"workload,omitempty"`
	// Profile, when set (github, gitlab or gitea), issues the grant as a
	// certificate for the requester's account on that Git host instead of
	// a grant certificate: the host then decides repositories and refs,
	// and the grant only bounds the time. Host is the GitHub Enterprise
	// Server host name for the github profile.
	Profile string `yaml:"profile" json:"profile,omitempty"`
	Host    string `yaml:"host" json:"host,omitempty"`
}

// WorkloadMatch says which CI/CD jobs a rule is for: those whose token
// comes from Issuer (an `oidc:` entry's name) and has every claim in
// Claims, each equal to the value given or matching it as a path.Match
// glob ("refs/heads/*"). A claim that is not a string is compared by its
// JSON text (ref_protected: "true"). The claims must pin the repository
// (see checker.workload), so that no token of another repository matches.
type WorkloadMatch struct {
	Issuer string            `yaml:"issuer" json:"issuer"`
	Claims map[string]string `yaml:"claims" json:"claims"`
}

// Step is one part of a rule's approval: Count distinct people from Group.
type Step struct {
	Group string `yaml:"group" json:"group"`
	Count int    `yaml:"count" json:"count"`
}

// LoadConfig reads, completes and checks the config file at path. Unknown
// fields are errors, relative paths are taken from the file's directory,
// defaults fill what is left out, and every problem found is reported at
// once in a *ConfigError, with the line it is on.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("load config %s: %w: larger than %d bytes", path, ErrInvalidConfig, maxConfigSize)
	}
	c, err := parseConfig(path, data)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.HostKey, &c.DataDir, &c.CADir, &c.AuditLog, &c.PIDFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.Cluster != nil {
		c.Cluster.resolvePaths(dir)
	}
	for i := range c.OIDC {
		if f := &c.OIDC[i].JWKSFile; *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
	if err := checkJWKSFiles(path, c.OIDC); err != nil {
		return nil, err
	}
	return c, nil
}

// parseConfig decodes and checks one config document; file names it in
// errors.
func parseConfig(file string, data []byte) (*Config, error) {
	var raw Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("load config %s: %w: the file is empty", file, ErrInvalidConfig)
		}
		return nil, fmt.Errorf("load config %s: %w: %w", file, ErrInvalidConfig, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("load config %s: %w: more than one YAML document", file, ErrInvalidConfig)
	}
	// The strict decode above has already accepted data, so the node tree
	// decodes too; it only serves to put line numbers on problems.
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)

	c := withDefaults(&raw)
	chk := checker{file: file, root: &root}
	chk.server(c)
	chk.cluster(c)
	chk.policy(c)
	if err := chk.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// withDefaults returns a deep copy of c with the defaults filled in.
func withDefaults(c *Config) *Config {
	out := *c
	out.Webhooks = append([]Webhook(nil), c.Webhooks...)
	out.Cluster = cloneCluster(c.Cluster)
	out.OIDC = append([]workload.Issuer(nil), c.OIDC...)
	out.People = make([]Person, len(c.People))
	for i, p := range c.People {
		out.People[i] = clonePerson(p)
	}
	out.Rules = make([]Rule, len(c.Rules))
	for i, r := range c.Rules {
		out.Rules[i] = cloneRule(r)
		ruleDefaults(&out.Rules[i])
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = Duration(DefaultRequestTimeout)
	}
	if out.Retention == 0 {
		out.Retention = Duration(DefaultRetention)
	}
	if out.MaxPendingPerUser == 0 {
		out.MaxPendingPerUser = DefaultMaxPendingPerUser
	}
	if out.AuditorGroups == nil {
		out.AuditorGroups = slices.Clone(DefaultAuditorGroups)
	} else {
		out.AuditorGroups = slices.Clone(c.AuditorGroups)
	}
	out.Limits = c.Limits.withDefaults()
	return &out
}

// ruleDefaults fills a rule's TTLs that were left out without contradicting
// the ones that were given: an unset maximum is never below the given
// minimum or default, an unset minimum never above them, and an unset
// default is one hour moved into [min, max].
func ruleDefaults(r *Rule) {
	if r.MaxTTL == 0 {
		r.MaxTTL = max(Duration(DefaultMaxTTL), r.DefaultTTL, r.MinTTL)
	}
	if r.MinTTL == 0 {
		r.MinTTL = Duration(DefaultMinTTL)
		if r.DefaultTTL > 0 {
			r.MinTTL = min(r.MinTTL, r.DefaultTTL)
		}
		if r.MaxTTL > 0 {
			r.MinTTL = min(r.MinTTL, r.MaxTTL)
		}
	}
	if r.DefaultTTL == 0 {
		r.DefaultTTL = min(max(Duration(DefaultDefaultTTL), r.MinTTL), r.MaxTTL)
	}
}

func clonePerson(p Person) Person {
	p.Keys = append([]string(nil), p.Keys...)
	p.Groups = append([]string(nil), p.Groups...)
	p.Accounts = maps.Clone(p.Accounts)
	return p
}

func cloneRule(r Rule) Rule {
	r.Groups = append([]string(nil), r.Groups...)
	r.Repos = append([]string(nil), r.Repos...)
	r.Refs = append([]string(nil), r.Refs...)
	r.Access = append([]string(nil), r.Access...)
	r.Approvals = append([]Step(nil), r.Approvals...)
	if r.Workload != nil {
		w := WorkloadMatch{Issuer: r.Workload.Issuer, Claims: maps.Clone(r.Workload.Claims)}
		r.Workload = &w
	}
	return r
}

// checkJWKSFiles makes sure, when the daemon loads its config, that each
// jwks_file holds a usable key set: a typo would otherwise surface only
// when the first CI job is refused.
func checkJWKSFiles(file string, issuers []workload.Issuer) error {
	var probs []ConfigProblem
	for _, iss := range issuers {
		if iss.JWKSFile == "" {
			continue
		}
		data, err := os.ReadFile(iss.JWKSFile)
		if err == nil {
			_, err = workload.ParseJWKS(data)
		}
		if err != nil {
			probs = append(probs, ConfigProblem{Msg: fmt.Sprintf("oidc issuer %q: jwks_file: %v", iss.Name, err)})
		}
	}
	if len(probs) > 0 {
		return &ConfigError{File: file, Problems: probs}
	}
	return nil
}

// ConfigError lists everything wrong with a config. It wraps
// ErrInvalidConfig.
type ConfigError struct {
	File     string // empty for a Config built in code
	Problems []ConfigProblem
}

// ConfigProblem is one thing wrong with a config.
type ConfigProblem struct {
	Line int    // 1-based line in File, 0 when unknown
	Msg  string // names the person or rule, e.g. `rule "main": ...`
}

func (p ConfigProblem) format(file string) string {
	switch {
	case file != "" && p.Line > 0:
		return file + ":" + strconv.Itoa(p.Line) + ": " + p.Msg
	case p.Line > 0:
		return "line " + strconv.Itoa(p.Line) + ": " + p.Msg
	}
	return p.Msg
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if len(e.Problems) == 1 {
		return b.String() + ": " + e.Problems[0].format(e.File)
	}
	b.WriteString(": " + strconv.Itoa(len(e.Problems)) + " problems:")
	for _, p := range e.Problems {
		b.WriteString("\n\t" + p.format(e.File))
	}
	return b.String()
}

func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// lineOf returns the line of the node that path leads to in a decoded YAML
// document: strings step into mapping keys, ints into sequence items. When
// the path runs out of the document, it returns the line of the deepest
// node found, which is where the missing piece belongs; 0 without a
// document.
func lineOf(root *yaml.Node, path ...any) int {
	if root == nil || root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return 0
	}
	n := root.Content[0]
	line := n.Line
	for _, step := range path {
		switch key := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || key >= len(n.Content) {
				return line
			}
			n = n.Content[key]
			line = n.Line
		}
	}
	return line
}
