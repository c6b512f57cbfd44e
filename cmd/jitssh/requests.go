package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/approvals"
)

func requestsCommand() *cli.Command {
	return &cli.Command{
		Name:   "requests",
		Usage:  "list, show and watch requests",
		Action: commandGroup("requests"),
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "requests you may see, newest first (approvers see everyone's)",
				Flags: append(clientFlags(),
					&cli.StringSliceFlag{Name: "state", Usage: "only requests in this `STATE` (pending, approved, denied, expired, cancelled); repeatable"},
					&cli.BoolFlag{Name: "mine", Usage: "only your own requests"},
					&cli.IntFlag{Name: "limit", Usage: "at most `N` requests", DefaultText: "all"},
					jsonOutFlag()),
				Action: runRequestsList,
			},
			{
				Name:      "show",
				Usage:     "one request in full: grant, rule, approvals, certificate",
				ArgsUsage: "ID",
				Flags:     append(clientFlags(), jsonOutFlag()),
				Action:    runRequestsShow,
			},
			{
				Name:   "watch",
				Usage:  "print requests as they arrive and change, until interrupted",
				Flags:  append(clientFlags(), jsonOutFlag()),
				Action: runRequestsWatch,
			},
		},
	}
}

func runRequestsList(c *cli.Context) error {
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodList, apiRequest{States: c.StringSlice("state"), Mine: c.Bool("mine"), Limit: c.Int("limit")})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if resp.Requests == nil {
			resp.Requests = []*approvals.Request{}
		}
		return writeJSON(c.App.Writer, resp.Requests)
	}
	if len(resp.Requests) == 0 {
		fmt.Fprintln(c.App.Writer, "no requests")
		return nil
	}
	return requestsTable(resp.Requests, time.Now()).write(c.App.Writer, isTerminal(c.App.Writer))
}

// requestsTable is the listing of requests list, its STATE column
// coloured on a terminal.
func requestsTable(requests []*approvals.Request, now time.Time) *grid {
	t := &grid{}
	t.addText("ID", "REQUESTER", "GRANT", "STATE", "APPROVALS", "WHEN")
	for _, r := range requests {
		state := displayState(r, now)
		t.add(cell{text: r.ID}, cell{text: r.Requester}, cell{text: r.Grant}, cell{text: state, colour: stateColour(state)},
			cell{text: fmt.Sprintf("%d/%d", len(r.Approvals), needed(r.Steps))}, cell{text: relativeWhen(r, now)})
	}
	return t
}

func needed(steps []approvals.Step) int {
	n := 0
	for _, s := range steps {
		n += s.Count
	}
	return n
}

// displayState folds the certificate's state into an approved request's.
// It goes by the certificate, not the serial: issuing records the serial
// a moment before the certificate it belongs to.
func displayState(r *approvals.Request, now time.Time) string {
	if cs := r.CertState(now); r.State == approvals.StateApproved && cs != "" {
		return "approved/" + string(cs)
	}
	return string(r.State)
}

// stateColour is the SGR colour of a state word: green for a live grant,
// yellow for waiting, red for a refusal or a revocation.
func stateColour(s string) string {
	switch {
	case strings.HasSuffix(s, "active"):
		return "32"
	case s == "pending":
		return "33"
	case s == "denied", strings.HasSuffix(s, "revoked"):
		return "31"
	}
	return ""
}

// relativeWhen says how long a request has waited, or how long its
// certificate has left.
func relativeWhen(r *approvals.Request, now time.Time) string {
	switch {
	case r.State == approvals.StatePending:
		return "waiting " + human(now.Sub(r.CreatedAt))
	}
	// Like displayState, by the certificate: the serial is recorded a
	// moment before it, with no validity yet.
	switch r.CertState(now) {
	case approvals.CertRevoked:
		return "revoked " + human(now.Sub(r.Revoked.At)) + " ago"
	case approvals.CertReleased:
		return "released " + human(now.Sub(r.Revoked.At)) + " ago"
	case approvals.CertActive:
		return "expires in " + human(r.ValidBefore.Sub(now))
	case approvals.CertExpired:
		return "expired " + human(now.Sub(r.ValidBefore)) + " ago"
	}
	return human(now.Sub(r.UpdatedAt)) + " ago"
}

func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func runRequestsShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("jitssh requests show needs the request ID", exitUsage)
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	resp, err := client.call(methodGet, apiRequest{ID: c.Args().First()})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, resp.Request)
	}
	showRequest(c.App.Writer, resp.Request)
	return nil
}

func showRequest(w io.Writer, r *approvals.Request) {
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", r.ID)
	fmt.Fprintf(tw, "requester:\t%s\n", terminalSafe(r.Requester))
	fmt.Fprintf(tw, "grant:\t%s\n", r.Grant)
	fmt.Fprintf(tw, "ttl asked:\t%s\n", time.Duration(r.TTL))
	fmt.Fprintf(tw, "reason:\t%s\n", terminalSafe(r.Reason))
	fmt.Fprintf(tw, "rule:\t%s (needs %s)\n", r.Rule, describeSteps(r.Steps))
	fmt.Fprintf(tw, "state:\t%s (%s)\n", displayState(r, now), relativeWhen(r, now))
	fmt.Fprintf(tw, "created:\t%s\n", r.CreatedAt.Format(time.RFC3339))
	if r.Archived {
		fmt.Fprintf(tw, "archived:\tended and left the daemon's memory; shown from its audit log\n")
	}
	for _, a := range r.Approvals {
		line := fmt.Sprintf("%s at %s", a.By, a.At.Format(time.RFC3339))
		if a.Reason != "" {
			line += ": " + terminalSafe(a.Reason)
		}
		fmt.Fprintf(tw, "approved by:\t%s\n", line)
	}
	if d := r.Decision; d != nil {
		fmt.Fprintf(tw, "%s by:\t%s at %s: %s\n", r.State, d.By, d.At.Format(time.RFC3339), terminalSafe(d.Reason))
	}
	if r.Serial != 0 {
		fmt.Fprintf(tw, "serial:\t%d\n", r.Serial)
		fmt.Fprintf(tw, "valid:\t%s to %s\n", r.ValidAfter.Format(time.RFC3339), r.ValidBefore.Format(time.RFC3339))
	}
	if d := r.Revoked; d != nil {
		fmt.Fprintf(tw, "revoked by:\t%s at %s: %s\n", d.By, d.At.Format(time.RFC3339), terminalSafe(d.Reason))
	}
	tw.Flush()
}

func runRequestsWatch(c *cli.Context) error {
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, stop := signalContext(c)
	defer stop()
	// The daemon sends every change, including steps of one transition
	// (an approval, then its serial, then its certificate); a line is
	// printed only when the state it shows changes.
	shown := map[string]string{}
	err = client.stream(ctx, methodWatch, apiRequest{}, func(resp *apiResponse) (bool, error) {
		r := resp.Request
		if c.Bool("json") {
			return true, writeJSONLine(c.App.Writer, r)
		}
		now := time.Now()
		state := displayState(r, now)
		if shown[r.ID] == state {
			return true, nil
		}
		shown[r.ID] = state
		fmt.Fprintf(c.App.Writer, "%s  %s  %s  %s  %s\n", now.Format("15:04:05"), r.ID, terminalSafe(r.Requester), terminalSafe(r.Grant), state)
		return true, nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}
