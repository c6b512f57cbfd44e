package sshd

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// Defaults of the upstream block.
const (
	DefaultUpstreamUser        = "git"
	DefaultUpstreamTTL         = 5 * time.Minute
	DefaultUpstreamDialTimeout = 10 * time.Second
	// MaxUpstreamTTL bounds the upstream certificate's life. Each
	// operation gets its own, which the host checks once, when the
	// connection is made, so it needs to outlive only that.
	MaxUpstreamTTL = time.Hour
	// MinUpstreamTTL leaves room for clock skew between proxy and host.
	MinUpstreamTTL = 10 * time.Second
)

// UpstreamConfig is git-server's upstream block: every repository is
// served from one Git host over SSH, which trusts the CA in CADir.
type UpstreamConfig struct {
	// Address is the Git host's SSH address, host:port.
	Address string `yaml:"address"`
	// User is the SSH user Git hosts serve Git as; "git" when empty.
	User string `yaml:"user"`
	// HostKeys are the Git host's public keys, authorized_keys lines; a
	// host presenting any other key is refused.
	HostKeys []string `yaml:"host_keys"`
	// Profile is the Git host's certificate profile: github, gitlab or
	// gitea.
	Profile string `yaml:"profile"`
	// Host is, for the github profile, the GitHub Enterprise Server host
	// name of the login@HOST extension; empty means github.com.
	Host string `yaml:"host"`
	// CADir is a CA directory (jitssh ca init) whose key the Git host
	// trusts. Relative paths are taken from the config file's directory.
	CADir string `yaml:"ca_dir"`
	// TTL is the life of each certificate presented upstream, 10s to 1h;
	// never more than what is left of the person's grant. 5m when zero.
	TTL Duration `yaml:"ttl"`
	// DialTimeout bounds connecting and authenticating to the Git host;
	// 10s when zero.
	DialTimeout Duration `yaml:"dial_timeout"`
	// Accounts maps a person, as the grant certificate's key ID names
	// them, to their account on the Git host.
	Accounts map[string]string `yaml:"accounts"`
	// ServiceAccount is the Git host account of everyone Accounts does
	// not list; none when empty. The proxy holds each person to their
	// grant, so one account that may reach every repository can serve
	// them all; the host's log then names the person by the key ID
	// (except on GitLab, which reads the key ID as the account).
	ServiceAccount string `yaml:"service_account"`
}

func (u *UpstreamConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("upstream: "+format, args...)) }
	if _, port, err := net.SplitHostPort(u.Address); err != nil || port == "" {
		bad("address %q: want host:port", u.Address)
	}
	if len(u.HostKeys) == 0 {
		bad("host_keys: none listed; pin the Git host's keys (ssh-keyscan, checked against what the host publishes)")
	}
	if _, err := parseHostKeys(u.HostKeys); err != nil {
		bad("host_keys: %v", err)
	}
	profile, err := ca.ParseHostProfile(u.Profile)
	if err != nil {
		bad("profile: %v", err)
	} else if err := ca.CheckHost(profile, u.Host); err != nil {
		bad("host: %v", err)
	}
	if u.CADir == "" {
		bad("ca_dir: missing (a CA the Git host trusts: jitssh ca init --dir DIR)")
	}
	if ttl := time.Duration(u.TTL); ttl != 0 && (ttl < MinUpstreamTTL || ttl > MaxUpstreamTTL) {
		bad("ttl %v: want %v to %v", ttl, MinUpstreamTTL, MaxUpstreamTTL)
	}
	if len(u.Accounts) == 0 && u.ServiceAccount == "" {
		bad("accounts: none listed and no service_account, so nobody could reach the Git host")
	}
	if u.ServiceAccount != "" && err == nil {
		if aerr := ca.CheckAccount(profile, u.ServiceAccount); aerr != nil {
			bad("service_account: %v", aerr)
		}
	}
	for _, person := range slices.Sorted(maps.Keys(u.Accounts)) {
		if person == "" {
			bad("accounts: an empty person name")
			continue
		}
		if err == nil {
			if aerr := ca.CheckAccount(profile, u.Accounts[person]); aerr != nil {
				bad("accounts: %s: %v", person, aerr)
			}
		}
	}
	return errors.Join(errs...)
}

// parseHostKeys reads pinned host keys: plain keys, no certificates, no
// options.
func parseHostKeys(lines []string) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range lines {
		key, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		switch {
		case err != nil:
			return nil, fmt.Errorf("[%d]: not a public key line: %w", i, err)
		case len(opts) > 0 || len(rest) > 0:
			return nil, fmt.Errorf("[%d]: want one bare key, without options", i)
		}
		if _, ok := key.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("[%d]: a certificate; pin the host's plain key", i)
		}
		keys = append(keys, key)
	}
	return keys, nil
}
