package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/approvals"
)

func releaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "the task is done: end a grant now (revoked on the daemon, removed from ssh-agent)",
		Description: "With an ID, ends that grant, or withdraws that request if it is still pending.\n" +
			"Without one, ends the one live grant in ssh-agent, and names it. --all ends every\n" +
			"live grant of yours the daemon knows, in ssh-agent or not, and names each.",
		ArgsUsage: "[ID]",
		Flags: append(clientFlags(),
			&cli.BoolFlag{Name: "all", Usage: "end every live grant of yours"},
			jsonOutFlag()),
		Action: runRelease,
	}
}

// released is what release did to one grant.
type released struct {
	Request      string `json:"request"`
	Grant        string `json:"grant"`
	Serial       uint64 `json:"serial"`
	FromAgent    bool   `json:"removed_from_agent"`
	WasPending   bool   `json:"was_pending,omitempty"`
	AlreadyEnded bool   `json:"already_ended,omitempty"`
}

func (r released) String() string {
	switch {
	case r.WasPending:
		return fmt.Sprintf("%s was still pending: cancelled", r.Request)
	case r.AlreadyEnded:
		return fmt.Sprintf("%s had already ended (%s): removed from ssh-agent", r.Request, r.Grant)
	}
	s := fmt.Sprintf("%s released: %s, certificate serial %d revoked", r.Request, r.Grant, r.Serial)
	if r.FromAgent {
		s += " and removed from ssh-agent"
	}
	return s
}

func runRelease(c *cli.Context) error {
	id, all := c.Args().First(), c.Bool("all")
	if all && id != "" {
		return cli.Exit("give a request ID or --all, not both", exitUsage)
	}
	certs, agentErr := liveCerts()
	if id == "" && !all && agentErr != nil {
		return fmt.Errorf("%w; name the request: jitssh release ID", agentErr)
	}
	client, err := dialDaemon(c)
	if err != nil {
		return err
	}
	defer client.Close()
	var done []released
	switch {
	case all:
		done, err = releaseAll(client, certs)
	case id == "":
		id, err = theOneLiveGrant(client, certs)
		if err == nil {
			var r released
			r, err = releaseOne(client, id, certs)
			done = append(done, r)
		}
	default:
		var r released
		r, err = releaseOne(client, id, certs)
		done = append(done, r)
	}
	if err != nil {
		return err
	}
	return printReleased(c, done, all)
}

func printReleased(c *cli.Context, done []released, all bool) error {
	if c.Bool("json") {
		return writeJSON(c.App.Writer, nonNil(done))
	}
	if len(done) == 0 && all {
		fmt.Fprintln(c.App.Writer, "no live grants to release")
	}
	for _, r := range done {
		fmt.Fprintln(c.App.Writer, r)
	}
	return nil
}

// activeGrants asks the daemon which of the agent's certificates still
// grant anything: one revoked or released elsewhere stays in the agent
// until its lifetime ends, but there is nothing left to release.
func activeGrants(client *apiClient, certs []liveCert) (active, ended []liveCert) {
	now := time.Now()
	for _, lc := range certs {
		got, err := client.call(methodGet, apiRequest{ID: lc.Request})
		if err == nil && got.Request.CertState(now) != approvals.CertActive {
			ended = append(ended, lc)
			continue
		}
		active = append(active, lc) // unknown to us: let release say why
	}
	return active, ended
}

// theOneLiveGrant is the request release ends when given no ID.
func theOneLiveGrant(client *apiClient, certs []liveCert) (string, error) {
	active, _ := activeGrants(client, certs)
	switch len(active) {
	case 0:
		return "", errors.New("no live jitssh grant in ssh-agent; name the request: jitssh release ID")
	case 1:
		return active[0].Request, nil
	}
	var which []string
	for _, lc := range active {
		which = append(which, lc.Request+" ("+strings.Join(lc.Grants, " ")+", "+lc.Left+" left)")
	}
	return "", cli.Exit("several live grants: "+strings.Join(which, "; ")+"; say which: jitssh release ID, or end them all: jitssh release --all", exitUsage)
}

// releaseOne ends request id: revoked on the daemon, its certificate out
// of ssh-agent. A request still pending has no grant yet; ending the task
// then means withdrawing it.
func releaseOne(client *apiClient, id string, certs []liveCert) (released, error) {
	if got, err := client.call(methodGet, apiRequest{ID: id}); err == nil && got.Request.State == approvals.StatePending {
		if _, err := client.call(methodCancel, apiRequest{ID: id}); err != nil {
			return released{}, err
		}
		removeStashedKey(id)
		return released{Request: id, Grant: got.Request.Grant, WasPending: true}, nil
	}
	resp, err := client.call(methodRelease, apiRequest{ID: id})
	if err != nil {
		return released{}, err
	}
	return released{Request: id, Grant: resp.Request.Grant, Serial: resp.Request.Serial, FromAgent: removeFromAgent(certs, id)}, nil
}

// releaseAll ends every live grant of the caller the daemon knows, and
// clears ssh-agent of the caller's certificates that no longer grant
// anything.
func releaseAll(client *apiClient, certs []liveCert) ([]released, error) {
	resp, err := client.call(methodList, apiRequest{Mine: true, States: []string{string(approvals.StateApproved)}})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var done []released
	var errs []error
	for _, r := range resp.Requests {
		if r.CertState(now) != approvals.CertActive {
			continue
		}
		got, err := client.call(methodRelease, apiRequest{ID: r.ID})
		if err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", r.ID, err))
			continue
		}
		done = append(done, released{Request: r.ID, Grant: got.Request.Grant, Serial: got.Request.Serial, FromAgent: removeFromAgent(certs, r.ID)})
	}
	var rest []liveCert
	for _, lc := range certs {
		if !slices.ContainsFunc(done, func(r released) bool { return r.Request == lc.Request }) {
			rest = append(rest, lc)
		}
	}
	_, ended := activeGrants(client, rest)
	for _, lc := range ended {
		if removeFromAgent(certs, lc.Request) {
			done = append(done, released{Request: lc.Request, Grant: strings.Join(lc.Grants, " "), Serial: lc.Serial, FromAgent: true, AlreadyEnded: true})
		}
	}
	return done, errors.Join(errs...)
}

// removeFromAgent takes request id's certificates out of ssh-agent and
// reports whether there were any.
func removeFromAgent(certs []liveCert, id string) bool {
	ag, err := connectAgent()
	if err != nil {
		return false
	}
	removed := false
	for _, lc := range certs {
		if lc.Request == id && ag.Remove(lc.cert) == nil {
			removed = true
		}
	}
	return removed
}
