package sshd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

// ServerConfig is the git-server configuration file.
type ServerConfig struct {
	// Listen is the SSH address, e.g. "127.0.0.1:2222".
	Listen string `yaml:"listen"`
	// HostKey is the server's private host key; created (ed25519) if missing.
	HostKey string `yaml:"host_key"`
	// HostCertificate, when set, is a host certificate for HostKey (from
	// `jitssh ca sign-host`), presented beside the plain key so that
	// clients may trust the CA with one @cert-authority line.
	HostCertificate string `yaml:"host_certificate"`
	// TrustedCAKeys are files of trusted CA public keys; several for rotation.
	TrustedCAKeys []string `yaml:"trusted_ca_keys"`
	// Repos is the root of the bare repositories.
	Repos string `yaml:"repos"`
	// Upstream, instead of Repos, serves every repository from a Git host
	// over SSH (see UpstreamConfig).
	Upstream *UpstreamConfig `yaml:"upstream"`
	// Revocation says where revoked certificates are learned from.
	Revocation RevocationConfig `yaml:"revocation"`
	// AuditLog is the audit log file every decision is appended to.
	AuditLog string `yaml:"audit_log"`
	// MetricsListen, when set, serves /metrics and /healthz over HTTP.
	MetricsListen string `yaml:"metrics_listen"`
	// Skew is the grace before a certificate's ValidAfter.
	Skew Duration `yaml:"skew"`
	// KeepExpired leaves connections open past certificate expiry.
	KeepExpired bool         `yaml:"keep_expired_connections"`
	Limits      LimitsConfig `yaml:"limits"`
}

// RevocationConfig names the revocation sources.
type RevocationConfig struct {
	// KRLFile is an OpenSSH KRL, reread when it changes.
	KRLFile string `yaml:"krl_file"`
	// KRLURL is the approval daemon's /v1/krl, followed while the daemon
	// holds long-polls and fetched every Refresh otherwise. When no fetch
	// has succeeded for MaxStale, every certificate is refused until one
	// does.
	KRLURL string `yaml:"krl_url"`
	// KRLURLs are several, a cluster's nodes, tried in turn; MaxStale
	// applies to them together.
	KRLURLs  []string `yaml:"krl_urls"`
	Refresh  Duration `yaml:"refresh"`
	MaxStale Duration `yaml:"max_stale"`
}

// URLs returns the KRL URLs the configuration names, krl_url or
// krl_urls, in the order they are tried.
func (r RevocationConfig) URLs() []string {
	if r.KRLURL != "" {
		return []string{r.KRLURL}
	}
	return r.KRLURLs
}

// validate checks the KRL URLs: one key or the other, each an http(s)
// URL, none twice.
func (r RevocationConfig) validate() error {
	if r.KRLURL != "" && len(r.KRLURLs) > 0 {
		return errors.New("revocation: krl_url and krl_urls: give one of them (krl_urls for several)")
	}
	seen := map[string]bool{}
	for _, raw := range r.URLs() {
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			return fmt.Errorf("revocation: KRL URL %q: %w", raw, err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			return fmt.Errorf("revocation: KRL URL %q: want http:// or https:// and a host", raw)
		case seen[raw]:
			return fmt.Errorf("revocation: KRL URL %q listed twice", raw)
		}
		seen[raw] = true
	}
	return nil
}

// LimitsConfig are the connection limits; zero means the default.
type LimitsConfig struct {
	HandshakeTimeout       Duration `yaml:"handshake_timeout"`
	IdleTimeout            Duration `yaml:"idle_timeout"`
	MaxConnections         int      `yaml:"max_connections"`
	MaxPerSource           int      `yaml:"max_connections_per_source"`
	MaxSessionsPerConn     int      `yaml:"max_sessions_per_connection"`
	MaxHandshakes          int      `yaml:"max_handshakes"`
	MaxHandshakesPerSource int      `yaml:"max_handshakes_per_source"`
	ShutdownGrace          Duration `yaml:"shutdown_grace"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	if v < 0 {
		return fmt.Errorf("line %d: negative duration %s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// LoadServerConfig reads and validates a git-server configuration file.
// Relative paths in it are taken relative to the file's directory.
func LoadServerConfig(path string) (*ServerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var c ServerConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&c.HostKey, &c.HostCertificate, &c.Repos, &c.AuditLog, &c.Revocation.KRLFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i, p := range c.TrustedCAKeys {
		if !filepath.IsAbs(p) {
			c.TrustedCAKeys[i] = filepath.Join(base, p)
		}
	}
	if u := c.Upstream; u != nil && u.CADir != "" && !filepath.IsAbs(u.CADir) {
		u.CADir = filepath.Join(base, u.CADir)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *ServerConfig) validate() error {
	switch {
	case c.Listen == "":
		return errors.New("listen is required")
	case c.HostKey == "":
		return errors.New("host_key is required")
	case len(c.TrustedCAKeys) == 0:
		return errors.New("trusted_ca_keys needs at least one file")
	case c.Repos == "" && c.Upstream == nil:
		return errors.New("repos is required (or an upstream block, to serve a Git host's repositories)")
	case c.Repos != "" && c.Upstream != nil:
		return errors.New("repos and upstream do not mix: with upstream, every repository is the Git host's")
	case c.Upstream != nil:
		return c.Upstream.validate()
	}
	return c.Revocation.validate()
}

// Verifier builds the certificate verifier the configuration describes,
// loading the CA keys and the KRL file now. urlSource, when not nil, is
// the running KRL URL source to include.
func (c *ServerConfig) Verifier(urlSource RevocationChecker) (*Verifier, error) {
	var extra []RevocationChecker
	if urlSource != nil {
		extra = append(extra, urlSource)
	}
	return newVerifier(c.TrustedCAKeys, c.Revocation.KRLFile, time.Duration(c.Skew), extra...)
}

// newVerifier is the one way both front-ends build a Verifier: the CA keys
// of caFiles, then the KRL file if one is named, then extra sources.
func newVerifier(caFiles []string, krlFile string, skew time.Duration, extra ...RevocationChecker) (*Verifier, error) {
	v := &Verifier{Skew: skew}
	for _, f := range caFiles {
		keys, err := ca.LoadPublicKeys(f)
		if err != nil {
			return nil, fmt.Errorf("load trusted CA keys: %w", err)
		}
		v.CAs = append(v.CAs, keys...)
	}
	if krlFile != "" {
		k, err := OpenKRLFile(krlFile)
		if err != nil {
			return nil, err
		}
		v.Revocations = append(v.Revocations, k)
	}
	v.Revocations = append(v.Revocations, extra...)
	return v, nil
}

// LoadOrCreateHostKey reads an OpenSSH private host key, creating an
// ed25519 one (mode 0600) with the comment "jitssh <role>" when the file
// does not exist, where role names the server that uses it. A key file
// that others can read is refused.
func LoadOrCreateHostKey(path, role string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate host key: %w", err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "jitssh "+role)
		if err != nil {
			return nil, fmt.Errorf("encode host key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create host key: %w", err)
		}
		data = pemEncode(block)
		if _, err := f.Write(data); err != nil {
			f.Close()
			return nil, fmt.Errorf("write host key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("write host key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("write host key: %w", err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		return signer, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s has mode %v: group and others must have no access", path, fi.Mode().Perm())
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse host key %s: %w", path, err)
	}
	return signer, nil
}
