package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
)

func decisionCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "approve",
			Usage:     "approve a request (your own key identifies you)",
			ArgsUsage: "ID",
			Flags: append(clientFlags(),
				&cli.StringFlag{Name: "reason", Usage: "`TEXT`: why", EnvVars: []string{"JITSSH_REASON"}},
				&cli.DurationFlag{Name: "ttl", Usage: "shorten the grant to this `DURATION` (never longer than asked)", DefaultText: "as asked"},
				jsonOutFlag()),
			Action: func(c *cli.Context) error { return decide(c, methodApprove) },
		},
		{
			Name:      "deny",
			Usage:     "deny a request",
			ArgsUsage: "ID",
			Flags: append(clientFlags(),
				&cli.StringFlag{Name: "reason", Usage: "`TEXT`: why (required)", EnvVars: []string{"JITSSH_REASON"}},
				jsonOutFlag()),
			Action: func(c *cli.Context) error { return decide(c, methodDeny) },
		},
		{
			Name:      "revoke",
			Usage:     "revoke an issued certificate now, by request ID or --serial",
			ArgsUsage: "[ID]",
			Flags: append(clientFlags(),
				&cli.Uint64Flag{Name: "serial", Usage: "certificate serial `N`", DefaultText: "none"},
				&cli.StringFlag{Name: "reason", Usage: "`TEXT`: why (required)", EnvVars: []string{"JITSSH_REASON"}},
				jsonOutFlag()),
			Action: runRevoke,
		},
	}
}

func decide(c *cli.Context, method string) error {
	if c.NArg() != 1 {
		return cli.Exit(fmt.Sprintf("jitssh %s needs the request ID", method), exitUsage)
	}
	if method == methodDeny && c.String("reason") == "" {
		return cli.Exit("jitssh deny needs --reason", exitUsage)
	}
	req := apiRequest{ID: c.Args().First(), Reason: c.String("reason")}
	if method == methodApprove {
		if c.IsSet("ttl") {
			ttl := c.Duration("ttl")
			if ttl <= 0 {
				return usageError("--ttl %s: a grant needs a positive duration", ttl)
			}
			req.TTL = ttl.String()
		}
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	// Sign exactly the request as stored: the statement names it by the
	// hash of what the requester signed.
	got, err := client.call(methodGet, apiRequest{ID: req.ID})
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "not_found" {
		// A request one may not see reads as unknown, so say what would
		// make it visible rather than whether it exists.
		return &apiError{Code: ae.Code, Message: ae.Message + "; you see only your own requests and those waiting on a group you are in, so you cannot " +
			method + " this one (jitssh whoami shows your groups)"}
	}
	if err != nil {
		return err
	}
	who, err := client.call(methodWhoami, apiRequest{})
	if err != nil {
		return err
	}
	ns := audit.NamespaceApprove
	if method == methodDeny {
		ns = audit.NamespaceDeny
	}
	stmt := decisionStatement(method, who.Person, got.Request, req)
	if req.Signature, err = client.sign(ns, stmt.Message()); err != nil {
		return err
	}
	resp, err := client.call(method, req)
	if err != nil {
		return err
	}
	r := resp.Request
	if c.Bool("json") {
		return writeJSON(c.App.Writer, r)
	}
	switch {
	case r.State == approvals.StateApproved && r.Serial != 0:
		fmt.Fprintf(c.App.Writer, "%s approved: certificate serial %d issued to %s, valid until %s\n", r.ID, r.Serial, r.Requester, r.ValidBefore.Format(time.RFC3339))
	case r.State == approvals.StatePending:
		fmt.Fprintf(c.App.Writer, "%s: approval recorded (%d so far, needs %s)\n", r.ID, len(r.Approvals), describeSteps(r.Steps))
	default:
		fmt.Fprintf(c.App.Writer, "%s %s\n", r.ID, r.State)
	}
	return nil
}

func runRevoke(c *cli.Context) error {
	id, serial := c.Args().First(), c.Uint64("serial")
	if (id == "") == (serial == 0) || c.NArg() > 1 {
		return cli.Exit("jitssh revoke needs a request ID or --serial N (one of them)", exitUsage)
	}
	if c.String("reason") == "" {
		return cli.Exit("jitssh revoke needs --reason", exitUsage)
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodRevoke, apiRequest{ID: id, Serial: serial, Reason: c.String("reason")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, resp.Request)
	}
	r := resp.Request
	fmt.Fprintf(c.App.Writer, "%s: certificate serial %d revoked\n%s\n", r.ID, r.Serial, revocationReach(r.ValidBefore))
	return nil
}

// revocationReach says when a revocation is in force: at once on the
// daemon, within moments on Git servers following its KRL, within their
// refresh on those that poll it, and everywhere once the certificate
// expires.
func revocationReach(validBefore time.Time) string {
	return fmt.Sprintf("in force: within about a second on git servers following the daemon's KRL (jitssh git-server with krl_url or krl_urls), "+
		"within their refresh interval on those only polling it (5s by default), and everywhere by %s, when the certificate expires",
		validBefore.UTC().Format(time.RFC3339))
}
