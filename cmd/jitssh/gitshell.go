package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/sshd"
)

// shellFlags are shared by git-shell and principals-command, because the
// second writes the first's command line.
func shellFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ca", Usage: "trusted CA public keys (TrustedUserCAKeys format)", EnvVars: []string{"JITSSH_CA"}, Required: true},
		&cli.StringFlag{Name: "repos", Usage: "root directory of the bare repositories", EnvVars: []string{"JITSSH_REPOS"}, Required: true},
		&cli.StringFlag{Name: "krl", Usage: "OpenSSH KRL of revoked certificates", EnvVars: []string{"JITSSH_KRL"}},
		&cli.StringFlag{Name: "audit-log", Usage: "append every decision to this audit log", EnvVars: []string{"JITSSH_AUDIT_LOG"}},
		&cli.StringFlag{Name: "log-file", Usage: "write structured logs here (stderr goes to the Git client)", EnvVars: []string{"JITSSH_LOG_FILE"}},
	}
}

func shellConfig(c *cli.Context) (sshd.ShellConfig, func(), error) {
	cfg := sshd.ShellConfig{
		CAFile:  c.String("ca"),
		Repos:   c.String("repos"),
		KRLFile: c.String("krl"),
	}
	logger, closeLog, err := shellLogger(c.String("log-file"))
	if err != nil {
		return cfg, nil, err
	}
	rec, closeRec, err := openRecorder(c.String("audit-log"), logger)
	if err != nil {
		closeLog()
		return cfg, nil, err
	}
	cfg.Recorder = rec
	cfg.Logger = logger
	return cfg, func() { closeRec(); closeLog() }, nil
}

// shellLogger never writes to stderr: under OpenSSH that is the Git
// client's terminal, which must not see the reasons behind a refusal.
func shellLogger(path string) (*slog.Logger, func(), error) {
	if path == "" {
		return slog.New(slog.NewJSONHandler(io.Discard, nil)), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open log file: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }, nil
}

func gitShellCommand() *cli.Command {
	return &cli.Command{
		Name:  "git-shell",
		Usage: "forced command for stock OpenSSH: verify the certificate again and run the granted Git operation",
		Description: "Run by OpenSSH as the command of the lines principals-command prints. Reads\n" +
			"SSH_ORIGINAL_COMMAND, and the certificate from SSH_USER_AUTH (ExposeAuthInfo yes).",
		Flags: shellFlags(),
		Action: func(c *cli.Context) error {
			cfg, done, err := shellConfig(c)
			if err != nil {
				return err
			}
			defer done()
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			code := sshd.GitShell(ctx, cfg, os.Getenv, sshd.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

func principalsCommand() *cli.Command {
	return &cli.Command{
		Name:      "principals-command",
		Usage:     "OpenSSH AuthorizedPrincipalsCommand: print the grants of a valid certificate",
		ArgsUsage: "%t %k",
		Description: "For sshd_config:\n" +
			"  AuthorizedPrincipalsCommand /usr/local/bin/jitssh principals-command --ca CA.pub --repos DIR %t %k\n" +
			"Prints one line per grant: restrict,command=\"jitssh git-shell ...\" PRINCIPAL",
		Flags: shellFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return cli.Exit("principals-command needs two arguments: the key type (%t) and the key (%k)", exitUsage)
			}
			cfg, done, err := shellConfig(c)
			if err != nil {
				return err
			}
			defer done()
			argv, err := gitShellArgv(c)
			if err != nil {
				return err
			}
			// A key that does not verify prints nothing: OpenSSH then finds
			// no principal and refuses it. The reason is in the audit log.
			_ = sshd.PrincipalsCommand(c.Context, cfg, c.Args().Get(0), c.Args().Get(1), argv, c.App.Writer)
			return nil
		},
	}
}

// gitShellArgv is the git-shell command line principals-command forces,
// with absolute paths so it does not depend on OpenSSH's working directory.
func gitShellArgv(c *cli.Context) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	argv := []string{exe, "git-shell"}
	for _, name := range []string{"ca", "repos", "krl", "audit-log", "log-file"} {
		v := c.String(name)
		if v == "" {
			continue
		}
		abs, err := filepath.Abs(v)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
		argv = append(argv, "--"+name, abs)
	}
	return argv, nil
}

// hookCommand is what git runs for the hooks jitssh installs while
// serving a push. It is not for people.
func hookCommand() *cli.Command {
	return &cli.Command{
		Name:            "hook",
		Hidden:          true,
		SkipFlagParsing: true,
		Usage:           "internal: git hooks installed while serving a push",
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return cli.Exit("hook needs a hook name", exitUsage)
			}
			code := sshd.RunHook(c.Args().First(), c.Args().Tail(), os.Stdin, os.Stdout, os.Stderr)
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// openRecorder is where decisions go: the audit log when one is named,
// else the structured log.
func openRecorder(auditPath string, logger *slog.Logger) (sshd.Recorder, func(), error) {
	if auditPath == "" {
		return sshd.SlogRecorder{Logger: logger}, func() {}, nil
	}
	return openAuditRecorder(auditPath, logger)
}
