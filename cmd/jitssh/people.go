package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"github.com/jitssh/jitssh/principals"
)

// writeFileAtomic replaces path so that readers never see half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

// isTerminal reports whether w is a terminal: only then are there colours
// and a spinner.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress shows a pending request: a spinner line on a terminal, plain
// lines on each change otherwise.
type progress struct {
	w       io.Writer
	tty     bool
	started time.Time
	mu      sync.Mutex
	last    string
	stop    chan struct{}
	r       *approvals.Request
	who     []string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, tty: isTerminal(w), started: time.Now(), stop: make(chan struct{})}
	if p.tty {
		go p.spin()
	}
	return p
}

func (p *progress) line() string {
	if p.r == nil {
		return ""
	}
	return waitingLine(p.r, p.who, time.Now(), 0)
}

// waitingLine says where a pending request stands, in at most width
// columns when width is positive: the spinner redraws it in place, and a
// line longer than the terminal wraps and leaves a copy behind on every
// redraw. It drops detail before it cuts: who can approve first, then the
// wording.
func waitingLine(r *approvals.Request, who []string, now time.Time, width int) string {
	waited := now.Sub(r.CreatedAt).Round(time.Second)
	needs := describeSteps(r.Steps)
	variants := []string{
		fmt.Sprintf("%s waiting for approval: %d approval(s) so far, needs %s%s; waited %s",
			r.ID, len(r.Approvals), needs, canApproveNote(who), waited),
		fmt.Sprintf("%s waiting for approval: %d so far, needs %s; waited %s", r.ID, len(r.Approvals), needs, waited),
		fmt.Sprintf("%s: %d/%d approvals; %s", r.ID, len(r.Approvals), needed(r.Steps), waited),
	}
	if width <= 0 {
		return variants[0]
	}
	for _, v := range variants {
		if utf8.RuneCountInString(v) <= width {
			return v
		}
	}
	return cutToWidth(variants[len(variants)-1], width)
}

func canApproveNote(who []string) string {
	if len(who) == 0 {
		return ""
	}
	return " (" + strings.Join(who, ", ") + " can approve)"
}

// cutToWidth keeps the first width characters of s, the last of them an
// ellipsis when s was longer.
func cutToWidth(s string, width int) string {
	if width <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	return string(runes[:width-1]) + "…"
}

// terminalWidth is the width of the terminal w writes to: the terminal's
// own word, else $COLUMNS, else 80.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	if cols, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && cols > 0 {
		return cols
	}
	return 80
}

func (p *progress) update(r *approvals.Request, canApprove []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r, p.who = r, canApprove
	if r.State != approvals.StatePending || p.tty {
		return
	}
	key := fmt.Sprintf("%s %d", r.State, len(r.Approvals))
	if key != p.last {
		p.last = key
		fmt.Fprintln(p.w, p.line())
	}
}

func (p *progress) spin() {
	frames := `|/-\`
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		if p.r != nil && p.r.State == approvals.StatePending {
			// One column less than the width: a line that fills the last
			// column makes some terminals wrap before the next \r.
			width := terminalWidth(p.w) - 3
			fmt.Fprintf(p.w, "\r\033[K%c %s", frames[i%len(frames)], waitingLine(p.r, p.who, time.Now(), width))
		}
		p.mu.Unlock()
	}
}

func (p *progress) done() {
	close(p.stop)
	if p.tty {
		p.mu.Lock()
		fmt.Fprint(p.w, "\r\033[K")
		p.mu.Unlock()
	}
}

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

// liveCert is a jitssh certificate found in ssh-agent.
type liveCert struct {
	Request    string    `json:"request"`
	KeyID      string    `json:"key_id"`
	Serial     uint64    `json:"serial"`
	State      string    `json:"state,omitempty"` // status only: the daemon's word on it, or "unknown"
	Grants     []string  `json:"grants"`
	ValidUntil time.Time `json:"valid_until"`
	Left       string    `json:"left"`
	cert       *ssh.Certificate
}

// isJitsshCert: a user certificate whose principals are all grants.
func isJitsshCert(c *ssh.Certificate) bool {
	if c.CertType != ssh.UserCert || len(c.ValidPrincipals) == 0 {
		return false
	}
	for _, p := range c.ValidPrincipals {
		if _, err := principals.Parse(p); err != nil {
			return false
		}
	}
	return true
}

func liveCerts() ([]liveCert, error) {
	certs, err := jitsshCertsInAgent()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []liveCert
	for _, cert := range certs {
		until := time.Unix(int64(cert.ValidBefore), 0)
		if !now.Before(until) {
			continue
		}
		_, request := ca.ParseKeyID(cert.KeyId)
		out = append(out, liveCert{Request: request, KeyID: cert.KeyId, Serial: cert.Serial,
			Grants: cert.ValidPrincipals, ValidUntil: until, Left: human(until.Sub(now)), cert: cert})
	}
	return out, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "your jitssh certificates in ssh-agent, whether each still grants access, and the time it has left",
		Description: "Lists the grant certificates in ssh-agent. When JITSSH_SERVER (or --server) names the\n" +
			"daemon, each one's STATE is the daemon's word: active, revoked, released or expired; a\n" +
			"revoked certificate stays in the agent until its lifetime ends, but no Git server accepts\n" +
			"it. When the daemon cannot be asked, STATE is unknown and a note on stderr says why.",
		Flags: append(clientFlags(), jsonOutFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("unexpected argument %q", c.Args().First())
			}
			certs, err := liveCerts()
			if err != nil {
				return err
			}
			askDaemonState(c, certs)
			if c.Bool("json") {
				if certs == nil {
					certs = []liveCert{}
				}
				return writeJSON(c.App.Writer, certs)
			}
			if len(certs) == 0 {
				fmt.Fprintln(c.App.Writer, "no live jitssh certificates in ssh-agent")
				return nil
			}
			t := &grid{}
			t.addText("REQUEST", "SERIAL", "STATE", "GRANTS", "LEFT")
			for _, lc := range certs {
				t.addText(lc.Request, strconv.FormatUint(lc.Serial, 10), lc.State, strings.Join(lc.Grants, " "), lc.Left)
			}
			return t.write(c.App.Writer, false)
		},
	}
}

// askDaemonState sets each certificate's State from the daemon's record of
// its request: the agent cannot know that a certificate was revoked. A
// daemon that cannot be asked leaves every State "unknown" and says why on
// stderr, so that status still works offline.
func askDaemonState(c *cli.Context, certs []liveCert) {
	for i := range certs {
		certs[i].State = "unknown"
	}
	if len(certs) == 0 {
		return
	}
	if serverFlag(c) == "" {
		fmt.Fprintln(c.App.ErrWriter, "note: no daemon named (JITSSH_SERVER or --server): whether each grant was revoked is unknown")
		return
	}
	client, err := dialAPI(c)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "note: could not ask the daemon whether these grants were revoked: %v\n", err)
		return
	}
	defer client.Close()
	now := time.Now()
	for i, lc := range certs {
		got, err := client.call(methodGet, apiRequest{ID: lc.Request})
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "note: %s: %v\n", lc.Request, err)
			continue
		}
		if got.Request.Serial != lc.Serial {
			// Not the certificate the daemon issued for that request.
			fmt.Fprintf(c.App.ErrWriter, "note: %s: the daemon issued serial %d for it, the agent holds serial %d\n", lc.Request, got.Request.Serial, lc.Serial)
			continue
		}
		certs[i].State = string(got.Request.CertState(now))
		if certs[i].State != string(approvals.CertActive) {
			certs[i].Left = "-" // the time left on the certificate grants nothing
		}
	}
}
