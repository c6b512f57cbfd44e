package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/ca"
)

// daemonSetup is a daemon configuration with what it names loaded and
// checked: the one path from a file to a daemon, shared by `server` and
// `server --check`, so that a file the check passes is one the daemon
// starts with.
type daemonSetup struct {
	path      string
	cfg       *approvals.Config
	policy    *approvals.Policy
	authority *ca.Authority
}

// loadDaemonSetup reads the configuration at path, builds its policy,
// loads the CA and checks that the files the daemon will write can be
// written. Each error says what to do about it.
func loadDaemonSetup(path string) (*daemonSetup, error) {
	cfg, err := approvals.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	policy, err := approvals.NewPolicy(cfg)
	if err != nil {
		return nil, err
	}
	authority, err := ca.Load(cfg.CADir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w\n  ca_dir %s holds no CA: make one with `jitssh ca init --dir %s`", err, cfg.CADir, cfg.CADir)
	}
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ key, path string }{
		{"audit_log", cfg.AuditLog},
		{"host_key", cfg.HostKey},
		{"data_dir", cfg.DataDir},
	} {
		if f.path == "" {
			continue
		}
		if err := checkParentDir(f.key, f.path); err != nil {
			return nil, err
		}
	}
	return &daemonSetup{path: path, cfg: cfg, policy: policy, authority: authority}, nil
}

// checkParentDir refuses a file or directory whose parent is missing: the
// daemon creates what it writes, never the directories above it, since a
// missing directory usually means a typo or an unmounted volume.
func checkParentDir(key, path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: directory %s does not exist: create it (mkdir -p %s), writable by the daemon's user only", key, path, dir, dir)
	case err != nil:
		return fmt.Errorf("%s %s: %w", key, path, err)
	case !fi.IsDir():
		return fmt.Errorf("%s %s: %s is not a directory", key, path, dir)
	}
	return nil
}

// check goes on where loadDaemonSetup stopped with what only a start
// would otherwise find: the host key's content and the cluster's TLS
// material. It opens no listener and writes nothing.
func (d *daemonSetup) check() ([]checkLine, error) {
	cfg := d.cfg
	hostKey := "will be made at the first start"
	if data, err := os.ReadFile(cfg.HostKey); err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("host_key %s: %w", cfg.HostKey, err)
		}
		hostKey = ssh.FingerprintSHA256(signer.PublicKey())
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("host_key %s: %w", cfg.HostKey, err)
	}
	auditLog := "none: the daemon logs its actions to stderr only"
	if cfg.AuditLog != "" {
		auditLog = cfg.AuditLog
	}
	cluster := "none: a cluster of one"
	if c := cfg.Cluster; c != nil {
		if _, err := approvals.LoadClusterTLS(c.TLS); err != nil {
			return nil, err
		}
		cluster = fmt.Sprintf("node %s on %s, joining %s", c.NodeID, c.Bind, strings.Join(c.Join, ", "))
		if c.BootstrapExpect > 0 {
			cluster += fmt.Sprintf(", founding with %d voters", c.BootstrapExpect)
		}
	}
	pc := d.policy.Config()
	return []checkLine{
		{"policy", fmt.Sprintf("%d people, %d rules, %s", len(pc.People), len(pc.Rules), d.policy.Digest())},
		{"CA", fmt.Sprintf("%s in %s", ssh.FingerprintSHA256(d.authority.PublicKey()), cfg.CADir)},
		{"host key", fmt.Sprintf("%s (%s)", cfg.HostKey, hostKey)},
		{"audit log", auditLog},
		{"data", cfg.DataDir},
		{"cluster", cluster},
	}, nil
}

type checkLine struct{ name, value string }

// printCheck reports a configuration that passed.
func printCheck(w io.Writer, path string, lines []checkLine) {
	fmt.Fprintf(w, "%s: ready to serve\n", path)
	for _, l := range lines {
		fmt.Fprintf(w, "  %-10s %s\n", l.name, l.value)
	}
}
