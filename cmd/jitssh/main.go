// Command jitssh is the single binary of jitssh: the certificate authority,
// the approval daemon, the Git SSH front-ends and the people's CLI.
//
// It holds commands and their flags; what the commands decide lives in the
// packages they call (approvals, ca, sshd, audit, principals). One file, or
// one prefix, per command group:
//
//	request*.go, requests.go   request [wait|cancel] (and CI jobs' tokens); requests list|show|watch
//	decide.go, status.go       approve, deny, revoke; status
//	release.go, whoami.go      release; whoami
//	ca*.go                     ca init|pubkey|sign|sign-host|krl
//	audit_*.go                 audit list|certs|show|verify|export|report|index
//	server*.go, api*.go        server: the approval daemon and its SSH API
//	daemon_*.go, webhooks.go   the daemon's metrics, audit index and webhook delivery
//	krlwait.go, hostcert.go    the daemon's /v1/krl long-poll and its own host certificate
//	operator.go                operator: cluster membership, snapshots, TLS material
//	gitserver.go, gitshell.go  git-server; git-shell and principals-command for stock sshd
//	gitssh.go, ondeny*.go      git-ssh, the client side of every Git connection
//	dev*.go                    dev, the playground
//	completion.go, version.go  completion; version
//
// Shared by all: main.go (exit codes, JSON errors), args.go (positional
// arguments), hints.go (errors that say the next step), table.go and term.go
// (output), util.go and pidfile.go.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes shared by every command. Scripts branch on them, so they are
// part of the contract and never change meaning.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2 // bad usage: unknown command or flag, wrong arguments
)

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	if rest, ok := gitSSHArgs(args); ok {
		return exitCode(runGitSSH(rest), os.Stderr)
	}
	app := newApp()
	if len(args) > 1 && args[len(args)-1] == completionFlag {
		writeCompletions(app.Writer, app.Commands, args[1:len(args)-1])
		return exitOK
	}
	err := helpTopicError(app.Commands, args)
	if err == nil {
		err = app.Run(flagsFirst(app, args))
	}
	if err != nil && jsonRequested(args) {
		return jsonExitCode(err, app.ErrWriter)
	}
	return exitCode(err, app.ErrWriter)
}

// jsonRequested reports whether the command line asks for JSON, with
// --json or JITSSH_JSON, so that its failure is JSON too. It reads the
// arguments itself: a failed command may not have parsed its flags.
func jsonRequested(args []string) bool {
	for _, a := range args[1:] {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		case "--json=false", "-json=false":
			return false
		}
	}
	on, _ := strconv.ParseBool(os.Getenv("JITSSH_JSON"))
	return on
}

// jsonError is a failure under --json: one object on stderr, so that
// stdout still holds only answers.
type jsonError struct {
	Error string `json:"error"`
	// Code is the daemon's code for a refusal (e.g. no_rule), or usage or
	// error.
	Code string `json:"code"`
	Exit int    `json:"exit"`
}

// jsonExitCode is exitCode for a command asked for JSON.
func jsonExitCode(err error, stderr io.Writer) int {
	code := exitCode(err, io.Discard)
	msg := err.Error()
	if msg == "" {
		// The command has answered on stdout already (a refused dry run).
		return code
	}
	kind := "error"
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		kind = ae.Code
	case code == exitUsage:
		kind = "usage"
	}
	line, _ := json.Marshal(jsonError{Error: msg, Code: kind, Exit: code})
	fmt.Fprintf(stderr, "%s\n", line)
	return code
}

// exitCode reports err, if any, on stderr and returns the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var coder cli.ExitCoder
	if errors.As(err, &coder) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "jitssh: %s\n", msg)
		}
		return coder.ExitCode()
	}
	fmt.Fprintf(stderr, "jitssh: %s\n", err)
	// urfave/cli reports a missing required flag with a plain error of an
	// unexported type; it is bad usage all the same.
	if strings.HasPrefix(err.Error(), "Required flag") {
		return exitUsage
	}
	return exitError
}

func newApp() *cli.App {
	app := &cli.App{
		Name:        "jitssh",
		Usage:       "just-in-time SSH certificates for Git",
		HideVersion: true,
		// Completion is answered in run, before urfave/cli could parse
		// flags or run an action.
		EnableBashCompletion: false,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		Commands:             commands(),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return unknownCommand("jitssh", c.Args().First(), c.App.Commands)
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return cli.Exit(err.Error(), exitUsage)
		},
		// The default handler prints and calls os.Exit itself; run decides.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	setUsageErrors(app.Commands)
	checkArgs(app.Commands)
	quietSwitches(app.Commands)
	needCA(app.Commands)
	return app
}

// quietSwitches drops "(default: false)" from the help of every switch:
// a switch is off unless given.
func quietSwitches(cmds []*cli.Command) {
	for _, c := range cmds {
		for _, f := range c.Flags {
			if b, ok := f.(*cli.BoolFlag); ok && !b.Value {
				b.DisableDefaultText = true
			}
		}
		quietSwitches(c.Subcommands)
	}
}

// commands lists every top-level command. Each lives in its own file.
func commands() []*cli.Command {
	return []*cli.Command{
		caCommand(),
		gitShellCommand(),
		gitSSHCommand(),
		principalsCommand(),
		gitServerCommand(),
		serverCommand(),
		operatorCommand(),
		requestCommand(),
		requestsCommand(),
		decisionCommands()[0],
		decisionCommands()[1],
		decisionCommands()[2],
		statusCommand(),
		whoamiCommand(),
		releaseCommand(),
		devCommand(),
		auditCommand(),
		completionCommand(),
		versionCommand(),

		hookCommand(),
		devAgentCommand(),
	}
}

// setUsageErrors makes a bad flag on any subcommand a one-line error and
// exit code 2, instead of the help text on stdout.
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return cli.Exit(explainFlagError(c, err), exitUsage)
		}
		setUsageErrors(c.Subcommands)
	}
}

// flagsFirst moves a command's flags before its positional arguments, so
// that `jitssh approve ID --reason TEXT` means what it says: urfave/cli
// stops reading flags at the first argument. Everything after "--" stays
// positional.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	i := 1
	var cmd *cli.Command
	cmds := app.Commands
	for i < len(args) {
		next := findCommand(cmds, args[i])
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		i++
	}
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	var flags, positional []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		tok := rest[j]
		if tok == "--" {
			positional = append(positional, rest[j:]...)
			break
		}
		if len(tok) < 2 || tok[0] != '-' {
			positional = append(positional, tok)
			continue
		}
		flags = append(flags, tok)
		name := strings.TrimLeft(tok, "-")
		if strings.Contains(name, "=") || !takesValue(cmd, name) {
			continue
		}
		if j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	out := append([]string{}, args[:i]...)
	out = append(out, flags...)
	return append(out, positional...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the flag called name reads the next argument.
func takesValue(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false // --help and unknown flags: let the parser say what is wrong
}

// commandGroup is the action of a command that only groups subcommands:
// an unknown subcommand is a usage error, none at all shows the help.
func commandGroup(name string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return unknownCommand("jitssh "+name, c.Args().First(), c.Command.Subcommands)
		}
		return cli.ShowSubcommandHelp(c)
	}
}
