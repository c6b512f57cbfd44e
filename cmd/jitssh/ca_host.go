package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/internal/atomicfile"
)

func caSignHostCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign-host",
		Usage:     "sign a Git server's host key, so that clients trust the CA instead of pinning the key",
		UsageText: "jitssh ca sign-host --dir DIR --pubkey HOST_KEY.pub --name NAME [--name NAME...] [--validity DURATION] [--out FILE]",
		Description: "Signs a host certificate for the public host key in --pubkey, valid for the names clients\n" +
			"dial it by (DNS names or IP addresses). Put it in git-server.yaml as host_certificate (or\n" +
			"in sshd_config as HostCertificate), and give clients one known_hosts line:\n" +
			"  @cert-authority NAME,... <the line of DIR/ca_key.pub>\n" +
			"The approval daemon signs its own host key: see host_names in its configuration.\n" +
			"Host certificates have serial 0 and spend no serial.",
		Flags: []cli.Flag{
			caDirFlag(),
			&cli.StringFlag{Name: "pubkey", Usage: "the host's public key `FILE` (required)", TakesFile: true},
			&cli.StringSliceFlag{Name: "name", Usage: "a `NAME` clients dial the host by, repeatable (at least one)"},
			&cli.DurationFlag{Name: "validity", Usage: "how long the certificate lasts, a `DURATION`", Value: ca.DefaultHostValidity},
			&cli.StringFlag{Name: "out", Usage: "write the certificate to `FILE` instead of stdout", TakesFile: true},
		},
		Action: cliAction(caSignHost),
	}
}

func caSignHost(c *cli.Context) error {
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
	names := c.StringSlice("name")
	if len(names) == 0 {
		return usageError("missing --name: the names clients dial the host by")
	}
	a, err := ca.Load(dir)
	if err != nil {
		return err
	}
	hostKey, err := readPublicKey(pubPath)
	if err != nil {
		return err
	}
	cert, err := a.SignHost(hostKey, names, c.Duration("validity"))
	if errors.Is(err, ca.ErrBadHostName) || errors.Is(err, ca.ErrBadTTL) || errors.Is(err, ca.ErrBadPublicKey) {
		return cli.Exit(err.Error(), exitUsage)
	}
	if err != nil {
		return err
	}
	line := ssh.MarshalAuthorizedKey(cert)
	if path := c.String("out"); path != "" {
		if err := atomicfile.WriteFile(path, line, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "host certificate for %s, valid until %s, written to %s\n",
			names[0], time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339), path)
		return nil
	}
	_, err = c.App.Writer.Write(line)
	return err
}
