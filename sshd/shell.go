package sshd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ShellConfig is what both stock-OpenSSH commands, git-shell and
// principals-command, are given on their command lines.
type ShellConfig struct {
	// CAFile holds the trusted CA public keys (TrustedUserCAKeys format).
	CAFile string
	// Repos is the repository root.
	Repos string
	// KRLFile, when set, is an OpenSSH KRL consulted for revocations.
	KRLFile string
	// Skew is the clock grace before a certificate's ValidAfter.
	Skew time.Duration
	// Recorder receives every decision.
	Recorder Recorder
	// Logger is the server's log, never the client's stderr; nil logs
	// nothing.
	Logger *slog.Logger
	// Git configures the git runner.
	Git GitOptions
}

// verifier builds the Verifier the config describes.
func (c ShellConfig) verifier() (*Verifier, error) {
	return newVerifier([]string{c.CAFile}, c.KRLFile, c.Skew)
}

// ErrAuthInfo is returned when OpenSSH did not expose exactly one
// certificate for the session (ExposeAuthInfo must be on).
var ErrAuthInfo = errors.New("no certificate in SSH_USER_AUTH")

// GitShell is the forced command for stock OpenSSH. It re-verifies the
// certificate OpenSSH exposed in SSH_USER_AUTH, then decides, runs and
// records SSH_ORIGINAL_COMMAND through the same pipeline as the native
// server. getenv reads the session environment. It returns the exit code.
func GitShell(ctx context.Context, cfg ShellConfig, getenv func(string) string, stdio Stdio) int {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	remote := remoteFromSSHConnection(getenv("SSH_CONNECTION"))
	r := execRequest{
		command:     getenv("SSH_ORIGINAL_COMMAND"),
		gitProtocol: getenv("GIT_PROTOCOL"),
		stdio:       stdio,
	}
	if remote != nil {
		r.remote = remote.String()
	}
	code := 1
	r.exit = func(c int) { code = c }
	p := &pipeline{recorder: cfg.Recorder, logger: logger}
	r.id, r.refused = shellVerify(cfg, getenv("SSH_USER_AUTH"), remote)
	if r.refused == nil {
		p.repos, r.refused = NewRepos(cfg.Repos)
	}
	if r.refused == nil {
		var err error
		if p.git, err = NewGit(cfg.Git); err != nil {
			r.refused = fmt.Errorf("start git: %w", err)
		} else {
			defer p.git.Close()
		}
	}
	p.serve(ctx, r)
	return code
}

// shellVerify verifies the certificate OpenSSH authenticated, as the
// native server verifies the key that completed its handshake.
func shellVerify(cfg ShellConfig, authFile string, remote net.Addr) (*Identity, error) {
	cert, err := readAuthInfo(authFile)
	if err != nil {
		return nil, err
	}
	v, err := cfg.verifier()
	if err != nil {
		return nil, err
	}
	return v.Verify(cert, remote)
}

// readAuthInfo reads the key OpenSSH wrote to the SSH_USER_AUTH file:
// lines of "METHOD [DETAILS]", where public-key methods give the key in
// authorized_keys form. Exactly one certificate must be there.
func readAuthInfo(path string) (*ssh.Certificate, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: variable not set (is ExposeAuthInfo on?)", ErrAuthInfo)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthInfo, err)
	}
	defer f.Close()
	var found *ssh.Certificate
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		key, ok := strings.CutPrefix(sc.Text(), "publickey ")
		if !ok {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuthInfo, err)
		}
		cert, isCert := pub.(*ssh.Certificate)
		if !isCert {
			return nil, fmt.Errorf("%w: authenticated with a plain %s key", ErrNotCertificate, pub.Type())
		}
		if found != nil {
			return nil, fmt.Errorf("%w: more than one certificate", ErrAuthInfo)
		}
		found = cert
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAuthInfo, err)
	}
	if found == nil {
		return nil, ErrAuthInfo
	}
	return found, nil
}

// remoteFromSSHConnection parses "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT".
func remoteFromSSHConnection(s string) net.Addr {
	f := strings.Fields(s)
	if len(f) < 2 {
		return nil
	}
	ip := net.ParseIP(f[0])
	if ip == nil {
		return nil
	}
	var port int
	fmt.Sscanf(f[1], "%d", &port)
	return &net.TCPAddr{IP: ip, Port: port}
}

// PrincipalsCommand is OpenSSH's AuthorizedPrincipalsCommand: given the
// offered key's type and base64 blob (%t %k), it prints one
// authorized_principals line per grant of a certificate that verifies,
// each forcing git-shell with shellArgv (the jitssh git-shell command line
// with the same flags). For anything else it prints nothing, which OpenSSH
// takes as "no principal allowed". Source addresses are left to OpenSSH,
// which enforces them itself; git-shell checks them again.
func PrincipalsCommand(ctx context.Context, cfg ShellConfig, keyType, keyBlob string, shellArgv []string, out io.Writer) error {
	cert, err := parseOfferedKey(keyType, keyBlob)
	if err != nil {
		return err
	}
	v, err := cfg.verifier()
	if err != nil {
		return err
	}
	v.skipSourceAddress = true
	id, err := v.Verify(cert, nil)
	if err != nil {
		if cfg.Recorder != nil {
			if rerr := cfg.Recorder.Record(ctx, authEvent(cert, err, "", "principals-command")); rerr != nil {
				return fmt.Errorf("%w (and audit record failed: %w)", err, rerr)
			}
		}
		return err
	}
	command := authorizedKeysQuote(shellQuoteArgs(shellArgv))
	w := bufio.NewWriter(out)
	for _, g := range id.Grants {
		fmt.Fprintf(w, "restrict,command=%s %s\n", command, g.String())
	}
	return w.Flush()
}

func parseOfferedKey(keyType, blob string) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(keyType + " " + blob))
	if err != nil {
		return nil, fmt.Errorf("parse offered key: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%w: %s key", ErrNotCertificate, pub.Type())
	}
	return cert, nil
}

// authorizedKeysQuote double-quotes s for an authorized_keys option value.
func authorizedKeysQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
