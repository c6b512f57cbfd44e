package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/ca/krl"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"github.com/jitssh/jitssh/principals"
)

// serialFileName is the break-glass serial counter inside a CA directory.
const serialFileName = "serial"

// maxPublicKeyFileSize bounds what `ca sign --pubkey` reads.
const maxPublicKeyFileSize = 64 << 10

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "manage the certificate authority",
		Description: "The CA directory holds ca_key (the private key, mode 0600), ca_key.pub (the line\n" +
			"for TrustedUserCAKeys) and serial (the break-glass serial counter).",
		Subcommands: []*cli.Command{
			caInitCommand(),
			caPubkeyCommand(),
			caSignCommand(),
			caSignHostCommand(),
			caKRLCommand(),
		},
		Action: commandGroup("ca"),
	}
}

func caDirFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:      "dir",
		Usage:     "CA directory (required)",
		EnvVars:   []string{"JITSSH_CA_DIR"},
		TakesFile: true,
	}
}

// jsonFlag is --json for a command whose own variable, env, predates the
// one JITSSH_JSON every command reads; both are honoured.
func jsonFlag(env string) *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as JSON", EnvVars: []string{env, "JITSSH_JSON"}}
}

func caInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a new CA key pair",
		UsageText: "jitssh ca init --dir DIR [--type TYPE]",
		Description: "Creates DIR (mode 0700) if needed, writes DIR/ca_key and DIR/ca_key.pub and prints\n" +
			"the public key line. An existing CA is never overwritten.",
		Flags: []cli.Flag{
			caDirFlag(),
			&cli.StringFlag{
				Name:    "type",
				Usage:   "key type: " + keyTypeNames(),
				Value:   string(ca.Ed25519),
				EnvVars: []string{"JITSSH_CA_TYPE"},
			},
			jsonFlag("JITSSH_CA_INIT_JSON"),
		},
		Action: cliAction(func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir, err := requiredString(c, "dir")
			if err != nil {
				return err
			}
			kt, err := ca.ParseKeyType(c.String("type"))
			if err != nil {
				return usageError("--type: %v", err)
			}
			if _, err := ca.Init(dir, kt); err != nil {
				return err
			}
			a, err := ca.Load(dir)
			if err != nil {
				return err
			}
			return printPublicKey(c, a)
		}),
	}
}

func caPubkeyCommand() *cli.Command {
	return &cli.Command{
		Name:        "pubkey",
		Usage:       "print the CA's line for TrustedUserCAKeys",
		UsageText:   "jitssh ca pubkey --dir DIR",
		Description: "Prints the public key derived from DIR/ca_key, so the line always matches the key that signs.",
		Flags:       []cli.Flag{caDirFlag(), jsonFlag("JITSSH_CA_PUBKEY_JSON")},
		Action: cliAction(func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir, err := requiredString(c, "dir")
			if err != nil {
				return err
			}
			a, err := ca.Load(dir)
			if err != nil {
				return err
			}
			return printPublicKey(c, a)
		}),
	}
}

func printPublicKey(c *cli.Context, a *ca.Authority) error {
	if c.Bool("json") {
		return writeJSON(c.App.Writer, map[string]string{
			"public_key":  a.AuthorizedKey(),
			"fingerprint": ssh.FingerprintSHA256(a.PublicKey()),
		})
	}
	_, err := fmt.Fprintln(c.App.Writer, a.AuthorizedKey())
	return err
}

func caSignCommand() *cli.Command {
	return &cli.Command{
		Name:  "sign",
		Usage: "break-glass: sign a certificate without the approval daemon",
		UsageText: "jitssh ca sign --dir DIR --pubkey FILE --grant PRINCIPAL [--grant PRINCIPAL...] --ttl DURATION\n" +
			"    --key-id ID [--source-address CIDRS] [--out FILE]\n" +
			"jitssh ca sign --dir DIR --pubkey FILE --profile github|gitlab|gitea --account NAME [--host HOST]\n" +
			"    --ttl DURATION --key-id ID [--source-address CIDRS] [--out FILE]",
		Description: "Signs a user certificate for the key in --pubkey carrying the given grants\n" +
			"(git:<access>:<repo>:<refpattern>) for --ttl (e.g. 30m, 8h). With --profile, it signs\n" +
			"instead a Git host's certificate for the account --account: github (login@github.com, or\n" +
			"login@HOST with --host for GitHub Enterprise Server), gitlab (the key ID is the username:\n" +
			"give it as --key-id or leave --key-id out) or gitea (the principal the user registered).\n" +
			"Such a certificate opens the whole account; the host decides repositories and refs.\n" +
			"Serials come from DIR/serial\n" +
			"and have the top bit set, so they never collide with the daemon's. The certificate line\n" +
			"goes to stdout, or atomically to --out; an audit record goes to stderr as JSON and,\n" +
			"with --audit-log, onto the audit log before the certificate is printed.\n" +
			"JITSSH_CA_SIGN_GRANT takes several grants separated by commas.",
		Flags: []cli.Flag{
			caDirFlag(),
			&cli.StringFlag{Name: "pubkey", Usage: "the user's public key file (required)", EnvVars: []string{"JITSSH_CA_SIGN_PUBKEY"}, TakesFile: true},
			&cli.StringSliceFlag{Name: "grant", Usage: "grant principal, repeatable (at least one, without --profile)", EnvVars: []string{"JITSSH_CA_SIGN_GRANT"}},
			&cli.StringFlag{Name: "profile", Usage: "certificate profile: grant (the default), github, gitlab or gitea", EnvVars: []string{"JITSSH_CA_SIGN_PROFILE"}},
			&cli.StringFlag{Name: "account", Usage: "the Git host account, with --profile github|gitlab|gitea", EnvVars: []string{"JITSSH_CA_SIGN_ACCOUNT"}},
			&cli.StringFlag{Name: "host", Usage: "GitHub Enterprise Server host name, with --profile github", EnvVars: []string{"JITSSH_CA_SIGN_HOST"}},
			&cli.StringFlag{Name: "ttl", Usage: "certificate lifetime, e.g. 1h (required)", EnvVars: []string{"JITSSH_CA_SIGN_TTL"}},
			&cli.StringFlag{Name: "key-id", Usage: "key ID naming the user and the reason, e.g. alice/incident-42 (required)", EnvVars: []string{"JITSSH_CA_SIGN_KEY_ID"}},
			&cli.StringFlag{Name: "source-address", Usage: "comma-separated addresses/CIDRs the certificate may be used from", EnvVars: []string{"JITSSH_CA_SIGN_SOURCE_ADDRESS"}},
			&cli.StringFlag{Name: "out", Usage: "write the certificate to this file instead of stdout", EnvVars: []string{"JITSSH_CA_SIGN_OUT"}, TakesFile: true},
			&cli.StringFlag{Name: "audit-log", Usage: "append the signing to this audit log first; no entry, no certificate", EnvVars: []string{"JITSSH_AUDIT_LOG"}, TakesFile: true},
			jsonFlag("JITSSH_CA_SIGN_JSON"),
		},
		Action: cliAction(caSign),
	}
}

func caSign(c *cli.Context) error {
	// Everything that can be judged from the command line is judged before
	// any file is read, and everything is judged before a serial is taken.
	if err := noArgs(c); err != nil {
		return err
	}
	dir, err := requiredString(c, "dir")
	if err != nil {
		return err
	}
	pubPath, err := requiredString(c, "pubkey")
	if err != nil {
		return err
	}
	profile, err := ca.ParseProfile(c.String("profile"))
	if err != nil {
		return usageError("--profile: %v", err)
	}
	keyID := c.String("key-id")
	if keyID == "" && !profile.KeyIDIsAccount() {
		if _, err := requiredString(c, "key-id"); err != nil {
			return err
		}
	}
	ttlText, err := requiredString(c, "ttl")
	if err != nil {
		return err
	}
	ttl, err := time.ParseDuration(ttlText)
	if err != nil || ttl <= 0 {
		return usageError("--ttl %q: want a positive duration such as 30m or 8h", ttlText)
	}
	req := ca.CertRequest{
		Profile:       profile,
		KeyID:         keyID,
		TTL:           ttl,
		SourceAddress: c.String("source-address"),
	}
	grantTexts := c.StringSlice("grant")
	if profile.IsHost() {
		// A host certificate opens a whole account; a grant beside it
		// would read as a scope the host never enforces.
		if len(grantTexts) > 0 {
			return usageError("--grant and --profile %s do not mix: a %s certificate opens the whole account and carries no grant", profile, profile)
		}
		if req.Account, err = requiredString(c, "account"); err != nil {
			return err
		}
		req.Host = c.String("host")
	} else {
		for _, flag := range []string{"account", "host"} {
			if c.String(flag) != "" {
				return usageError("--%s needs --profile github, gitlab or gitea; a grant certificate names no Git host account", flag)
			}
		}
		if len(grantTexts) == 0 {
			return usageError("missing --grant")
		}
		req.Grants = make([]principals.Grant, len(grantTexts))
		for i, s := range grantTexts {
			if req.Grants[i], err = principals.Parse(s); err != nil {
				return usageError("--grant: %v", err)
			}
		}
	}

	a, err := ca.Load(dir)
	if err != nil {
		return err
	}
	userKey, err := readPublicKey(pubPath)
	if err != nil {
		return err
	}
	serials, err := ca.OpenSerialFile(filepath.Join(dir, serialFileName))
	if err != nil {
		return err
	}
	// Claim the output file's place before signing, so an unwritable --out
	// is found before a serial is spent.
	var out *atomicfile.Pending
	if path := c.String("out"); path != "" {
		if out, err = atomicfile.Create(path); err != nil {
			return err
		}
		defer out.Abort()
	}

	req.PublicKey = userKey
	cert, err := a.Sign(req, serials)
	if err != nil {
		if isRequestError(err) {
			return cli.Exit(err.Error(), exitUsage)
		}
		return err
	}
	logger(c).LogAttrs(c.Context, slog.LevelInfo, "break-glass certificate signed", breakGlassRecord(a, cert)...)
	if path := c.String("audit-log"); path != "" {
		if err := auditBreakGlass(path, a, cert); err != nil {
			return err
		}
	}

	line := certLine(cert)
	if out != nil {
		if _, err := out.Write([]byte(line + "\n")); err != nil {
			return err
		}
		if err := out.Commit(0o644); err != nil {
			return err
		}
	}
	switch {
	case c.Bool("json"):
		return writeJSON(c.App.Writer, certJSON(cert, line))
	case out == nil:
		_, err = fmt.Fprintln(c.App.Writer, line)
		return err
	}
	return nil
}

// isRequestError reports whether Sign refused the request itself, which is
// a usage error, rather than failing on the CA or the serial file.
func isRequestError(err error) bool {
	for _, target := range []error{ca.ErrBadTTL, ca.ErrNoGrants, ca.ErrBadGrant, ca.ErrBadKeyID, ca.ErrBadSourceAddress,
		ca.ErrBadProfile, ca.ErrBadAccount, ca.ErrBadHost} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// readPublicKey reads the single public key in an OpenSSH .pub file.
func readPublicKey(path string) (ssh.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPublicKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read public key %s: %w", path, err)
	}
	if len(data) > maxPublicKeyFileSize {
		return nil, fmt.Errorf("read public key %s: larger than %d bytes", path, maxPublicKeyFileSize)
	}
	key, _, opts, rest, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("read public key %s: %w", path, err)
	}
	if len(opts) > 0 {
		return nil, fmt.Errorf("read public key %s: want a plain public key line, found options", path)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("read public key %s: more than one key", path)
	}
	return key, nil
}

// certLine is the certificate in authorized_keys form, the way ssh-keygen
// writes a -cert.pub file, with the key ID as comment.
func certLine(cert *ssh.Certificate) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(cert)), "\n") + " " + cert.KeyId
}

// breakGlassRecord is the audit record of one break-glass signing. It is
// the single place that decides what the record holds, so the same
// attributes can go to the audit log as well as to stderr.
func breakGlassRecord(a *ca.Authority, cert *ssh.Certificate) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("event", "ca.sign.break_glass"),
		slog.Uint64("serial", cert.Serial),
		slog.String("serial_hex", fmt.Sprintf("%#x", cert.Serial)),
		slog.String("key_id", cert.KeyId),
		slog.Any("principals", cert.ValidPrincipals),
		slog.Time("valid_after", time.Unix(int64(cert.ValidAfter), 0).UTC()),
		slog.Time("valid_before", time.Unix(int64(cert.ValidBefore), 0).UTC()),
		slog.String("public_key", ssh.FingerprintSHA256(cert.Key)),
		slog.String("ca", ssh.FingerprintSHA256(a.PublicKey())),
	}
	if sa, ok := cert.CriticalOptions[ca.SourceAddressOption]; ok {
		attrs = append(attrs, slog.String("source_address", sa))
	}
	if len(cert.Extensions) > 0 {
		// A Git host's certificate names its account here (GitHub's
		// login@HOST); grant certificates have none.
		attrs = append(attrs, slog.Any("extensions", cert.Extensions))
	}
	return attrs
}

func certJSON(cert *ssh.Certificate, line string) any {
	return struct {
		Certificate   string            `json:"certificate"`
		Serial        uint64            `json:"serial"`
		KeyID         string            `json:"key_id"`
		Principals    []string          `json:"principals"`
		ValidAfter    string            `json:"valid_after"`
		ValidBefore   string            `json:"valid_before"`
		SourceAddress string            `json:"source_address,omitempty"`
		Extensions    map[string]string `json:"extensions,omitempty"`
	}{
		Certificate:   line,
		Serial:        cert.Serial,
		KeyID:         cert.KeyId,
		Principals:    cert.ValidPrincipals,
		ValidAfter:    time.Unix(int64(cert.ValidAfter), 0).UTC().Format(time.RFC3339),
		ValidBefore:   time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339),
		SourceAddress: cert.CriticalOptions[ca.SourceAddressOption],
		Extensions:    cert.Extensions,
	}
}

func caKRLCommand() *cli.Command {
	return &cli.Command{
		Name:      "krl",
		Usage:     "write an OpenSSH key revocation list for sshd's RevokedKeys",
		UsageText: "jitssh ca krl --dir DIR --serial N [--serial N...] [--key-id ID...] [--from FILE] --out FILE",
		Description: "Revokes this CA's certificates by serial (decimal or 0x-hex) and by key ID. The KRL holds\n" +
			"exactly what is given, plus everything in --from when set, so earlier revocations are kept\n" +
			"only by passing the previous KRL. Its version is the current Unix time. --out is written\n" +
			"atomically and may name the same file as --from.",
		Flags: []cli.Flag{
			caDirFlag(),
			&cli.StringSliceFlag{Name: "serial", Usage: "serial to revoke, repeatable", EnvVars: []string{"JITSSH_CA_KRL_SERIAL"}},
			&cli.StringSliceFlag{Name: "key-id", Usage: "key ID to revoke, repeatable", EnvVars: []string{"JITSSH_CA_KRL_KEY_ID"}},
			&cli.StringFlag{Name: "from", Usage: "existing KRL whose revocations are kept", EnvVars: []string{"JITSSH_CA_KRL_FROM"}, TakesFile: true},
			&cli.StringFlag{Name: "out", Usage: "KRL file to write (required)", EnvVars: []string{"JITSSH_CA_KRL_OUT"}, TakesFile: true},
		},
		Action: cliAction(caKRL),
	}
}

func caKRL(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	dir, err := requiredString(c, "dir")
	if err != nil {
		return err
	}
	outPath, err := requiredString(c, "out")
	if err != nil {
		return err
	}
	serials := []uint64{}
	for _, s := range c.StringSlice("serial") {
		n, err := parseSerial(s)
		if err != nil {
			return usageError("--serial %q: %v", s, err)
		}
		serials = append(serials, n)
	}
	keyIDs := append([]string{}, c.StringSlice("key-id")...)
	for _, id := range keyIDs {
		if id == "" {
			return usageError("--key-id: empty key ID")
		}
	}
	// No serial and no key ID is a valid, empty KRL: what a server's
	// RevokedKeys starts from before anything is revoked.

	a, err := ca.Load(dir)
	if err != nil {
		return err
	}
	list := &krl.List{}
	if from := c.String("from"); from != "" {
		data, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("read KRL: %w", err)
		}
		if list, err = krl.Parse(data); err != nil {
			return fmt.Errorf("read KRL %s: %w", from, err)
		}
	}
	now := time.Now()
	// OpenSSH expects the version to grow; time does, unless the clock was
	// set back since --from was written.
	list.Version = max(uint64(now.Unix()), list.Version+1)
	list.GeneratedDate = now
	list.Comment = "jitssh"
	list.RevokeSerial(a.PublicKey(), serials...)
	list.RevokeKeyID(a.PublicKey(), keyIDs...)
	data, err := list.Marshal()
	if err != nil {
		return fmt.Errorf("write KRL: %w", err)
	}
	if err := atomicfile.WriteFile(outPath, data, 0o644); err != nil {
		return err
	}
	logger(c).LogAttrs(c.Context, slog.LevelInfo, "KRL written",
		slog.String("event", "ca.krl"),
		slog.String("path", outPath),
		slog.Uint64("version", list.Version),
		slog.Any("serials", serials),
		slog.Any("key_ids", keyIDs),
		slog.String("ca", ssh.FingerprintSHA256(a.PublicKey())),
	)
	return nil
}

// parseSerial reads a serial in decimal or, with a 0x prefix, hex. A
// leading 0 does not mean octal: 010 is ten. Zero is refused because
// OpenSSH cannot revoke it.
func parseSerial(s string) (uint64, error) {
	base, digits := 10, s
	if rest, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		base, digits = 16, rest
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		return 0, errors.New("want a decimal or 0x-hex number below 2^64")
	}
	if n == 0 {
		return 0, errors.New("serial 0 cannot be revoked")
	}
	return n, nil
}

// logger writes structured JSON lines to the app's error stream.
func logger(c *cli.Context) *slog.Logger {
	return slog.New(slog.NewJSONHandler(c.App.ErrWriter, nil))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func keyTypeNames() string {
	names := make([]string, len(ca.KeyTypes))
	for i, kt := range ca.KeyTypes {
		names[i] = string(kt)
	}
	return strings.Join(names, ", ")
}

// cliAction adapts an action so that every error it returns reaches main as
// one line: exit code 2 for usage errors made with usageError, 1 for the
// rest.
func cliAction(fn cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := fn(c)
		if err == nil {
			return nil
		}
		code := exitError
		var coder cli.ExitCoder
		if errors.As(err, &coder) {
			code = coder.ExitCode()
		}
		return cli.Exit(oneLine(err.Error()), code)
	}
}

// usageError is an error in how the command was called: exit code 2.
func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}

// oneLine keeps an error message on one line whatever it quotes.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func requiredString(c *cli.Context, name string) (string, error) {
	v := c.String(name)
	if v == "" {
		return "", usageError("missing --%s", name)
	}
	return v, nil
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("unexpected argument %q", c.Args().First())
	}
	return nil
}

// auditBreakGlass puts a break-glass signing on the audit log. The actor
// is the account that ran the command: break-glass has no approver.
func auditBreakGlass(path string, a *ca.Authority, cert *ssh.Certificate) error {
	log, err := audit.Open(path, audit.Options{RepairTornTail: true})
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	defer log.Close()
	actor := os.Getenv("USER")
	if actor == "" {
		actor = "unknown"
	}
	_, err = log.Append(audit.KindCASign, actor, audit.CASignData{
		Serial:        cert.Serial,
		KeyID:         cert.KeyId,
		Principals:    cert.ValidPrincipals,
		ValidAfter:    time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore:   time.Unix(int64(cert.ValidBefore), 0).UTC(),
		PublicKey:     ssh.FingerprintSHA256(cert.Key),
		CA:            ssh.FingerprintSHA256(a.PublicKey()),
		SourceAddress: cert.CriticalOptions[ca.SourceAddressOption],
	})
	if err != nil {
		return fmt.Errorf("audit break-glass signing (serial %#x): %w", cert.Serial, err)
	}
	return nil
}
