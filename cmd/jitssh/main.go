// Command jitssh is the single binary of jitssh: the certificate authority,
// the approval daemon, the Git SSH front-ends and the people's CLI.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes shared by every command. Scripts branch on them, so they are
// part of the contract and never change meaning.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := newApp()
	if err := app.Run(args); err != nil {
		var coder cli.ExitCoder
		if errors.As(err, &coder) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintf(app.ErrWriter, "jitssh: %s\n", msg)
			}
			return coder.ExitCode()
		}
		fmt.Fprintf(app.ErrWriter, "jitssh: %s\n", err)
		return exitError
	}
	return exitOK
}

func newApp() *cli.App {
	app := &cli.App{
		Name:                 "jitssh",
		Usage:                "just-in-time SSH certificates for Git",
		HideVersion:          true,
		EnableBashCompletion: true,
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		Commands:             commands(),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return cli.Exit(err.Error(), exitUsage)
		},
		// The default handler prints and calls os.Exit itself; run decides.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	setUsageErrors(app.Commands)
	return app
}

// commands lists every top-level command. Each lives in its own file.
func commands() []*cli.Command {
	return []*cli.Command{
		caCommand(),
		gitShellCommand(),
		principalsCommand(),
		gitServerCommand(),

		hookCommand(),
	}
}

// setUsageErrors makes a bad flag on any subcommand a one-line error and
// exit code 2, instead of the help text on stdout.
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return cli.Exit(err.Error(), exitUsage)
		}
		setUsageErrors(c.Subcommands)
	}
}
