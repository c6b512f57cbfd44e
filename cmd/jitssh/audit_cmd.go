package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd"
)

// The auditor's commands read audit logs offline, from files: exports, or
// the live logs, which they read as snapshots of whole entries. Every
// command that reads entries verifies each log's hash chain as it loads
// it, and refuses a log that does not verify; `audit verify` checks
// everything else.

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "query, verify and report on the audit log, offline",
		Description: "Every subcommand reads the logs named by --log (JITSSH_AUDIT_LOG, comma-separated): the\n" +
			"daemon's live log or a copy of it, and the Git servers' logs if they keep their own; entries\n" +
			"of several logs are merged by time. Times are UTC. Commands that list entries verify each\n" +
			"log's hash chain while loading it and refuse a log that does not verify; `jitssh audit verify`\n" +
			"also checks every signature and every issued certificate against the CA key and the people's keys.",
		Subcommands: []*cli.Command{
			auditListCommand(),
			auditCertsCommand(),
			auditShowCommand(),
			auditVerifyCommand(),
			auditExportCommand(),
			auditReportCommand(),
			auditIndexCommand(),
		},
		Action: commandGroup("audit"),
	}
}

func auditJSONFlag() *cli.BoolFlag { return jsonFlag("JITSSH_AUDIT_JSON") }

func auditSinceFlag(usage string) cli.Flag {
	return onceString{&cli.StringFlag{Name: "since", Usage: usage + ": RFC 3339 time, date (2006-01-02), or age such as 24h or 7d"}}
}

func auditUntilFlag() cli.Flag {
	return onceString{&cli.StringFlag{Name: "until", Usage: "entries before this time, same forms as --since"}}
}

// --- list ---

func auditListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list entries, filtered",
		UsageText: "jitssh audit list --log FILE [--log FILE...] [--user U] [--repo R] [--serial N] [--kind K] [--since T] [--until T] [--limit N] [--json]",
		Description: "Prints the entries that match every filter given, oldest first. --user U matches entries\n" +
			"whose actor is U and everything recorded under U's certificates (Git operations carry the\n" +
			"certificate's key ID, e.g. U/req-01, as actor). --since is inclusive, --until exclusive.\n" +
			"With several logs, a LOG column (JSON: \"log\") says which log each entry is from.",
		Flags: []cli.Flag{
			auditLogFlag(),
			onceString{&cli.StringFlag{Name: "user", Usage: "a person's entries and their certificates' entries"}},
			onceString{&cli.StringFlag{Name: "repo", Usage: "entries about this repository"}},
			onceString{&cli.StringFlag{Name: "serial", Usage: "entries about this certificate serial (decimal or 0x-hex)"}},
			onceString{&cli.StringFlag{Name: "kind", Usage: "entries of this kind: request, approve, deny, issue, revoke, release, ca.sign, git, ..."}},
			auditSinceFlag("entries from this time on"),
			auditUntilFlag(),
			onceInt{&cli.IntFlag{Name: "limit", Usage: "print at most N entries (0: all)"}},
			auditJSONFlag(),
			auditIndexDirFlag(),
		},
		Action: cliAction(auditList),
	}
}

func auditList(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	f := audit.Filter{Kind: c.String("kind"), Repo: c.String("repo"), Limit: c.Int("limit")}
	if f.Limit < 0 {
		return usageError("--limit %d: want 0 or more", f.Limit)
	}
	if s := c.String("serial"); s != "" {
		serial, err := parseSerial(s)
		if err != nil {
			return usageError("--serial %q: %v", s, err)
		}
		f.Serial = &serial
	}
	var err error
	now := time.Now()
	if f.Since, err = timeFlag(c, "since", now); err != nil {
		return err
	}
	if f.Until, err = timeFlag(c, "until", now); err != nil {
		return err
	}
	logs, err := loadAuditLogs(c)
	if err != nil {
		return err
	}
	defer logs.close()
	entries, err := listEntries(logs, f, c.String("user"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, nonNil(entries))
	}
	tw := newTable(c.App.Writer, logs.head("SEQ", "TIME (UTC)", "KIND", "ACTOR", "SERIAL", "REPO", "WHAT")...)
	for _, e := range entries {
		serial, repo := entryRefs(e.Entry)
		tw.row(logs.cells(e, strconv.FormatUint(e.Seq, 10), fmtUTC(e.Time), e.Kind, e.Actor, serial, repo, audit.Summarize(e.Entry))...)
	}
	return tw.flush()
}

// blank is cells for a row that continues the one before: its LOG cell is
// empty too.
func (l *auditLogs) blank(cells ...string) []string {
	if !l.several() {
		return cells
	}
	return append([]string{""}, cells...)
}

// head returns a table's column names, with LOG in front when several
// logs are read.
func (l *auditLogs) head(names ...string) []string {
	if !l.several() {
		return names
	}
	return append([]string{"LOG"}, names...)
}

// cells returns a row's cells, with the entry's log in front when several
// logs are read.
func (l *auditLogs) cells(e logEntry, cells ...string) []string {
	if !l.several() {
		return cells
	}
	return append([]string{l.names[e.log]}, cells...)
}

// listEntries is List(f) over every log, where a user filter also takes in
// everything recorded under the user's certificates, in any log.
func listEntries(logs *auditLogs, f audit.Filter, user string) ([]logEntry, error) {
	limit := f.Limit
	var serials []uint64
	if user != "" {
		f.Limit = 0
		for _, ix := range logs.ix {
			s, err := userSerials(ix, user)
			if err != nil {
				return nil, err
			}
			serials = append(serials, s...)
		}
	}
	out, err := logs.collect(func(ix *audit.IndexFile) ([]audit.Entry, error) {
		if user == "" {
			return ix.List(f)
		}
		byActor := f
		byActor.Actor = user
		found, err := ix.List(byActor)
		if err != nil {
			return nil, err
		}
		for _, serial := range serials {
			if f.Serial != nil && *f.Serial != serial {
				continue
			}
			g := f
			g.Serial = &serial
			more, err := ix.List(g)
			if err != nil {
				return nil, err
			}
			found = append(found, more...)
		}
		return found, nil
	})
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// userSerials returns the serials of the certificates issued to user,
// break-glass ones included (their key ID starts with the user's name):
// those of the issue entries of user's requests, and of the break-glass
// entries.
func userSerials(ix *audit.IndexFile, user string) ([]uint64, error) {
	var serials []uint64
	issued, err := ix.List(audit.Filter{Kind: audit.KindIssue})
	if err != nil {
		return nil, err
	}
	for _, e := range issued {
		var d audit.IssueData
		if json.Unmarshal(e.Data, &d) == nil && d.Requester == user {
			serials = append(serials, d.Serial)
		}
	}
	signed, err := ix.List(audit.Filter{Kind: audit.KindCASign})
	if err != nil {
		return nil, err
	}
	for _, e := range signed {
		var d audit.CASignData
		if json.Unmarshal(e.Data, &d) != nil {
			continue
		}
		if person, _ := ca.ParseKeyID(d.KeyID); person == user {
			serials = append(serials, d.Serial)
		}
	}
	return serials, nil
}

// --- certs ---

func auditCertsCommand() *cli.Command {
	return &cli.Command{
		Name:      "certs",
		Usage:     "list every certificate issued, with its state",
		UsageText: "jitssh audit certs --log FILE [--log FILE...] [--json]",
		Description: "One line per certificate the daemon issued or `jitssh ca sign` signed (break-glass):\n" +
			"serial, key ID, principals, validity, requester, approvers and state now: active, expired,\n" +
			"revoked or released.",
		Flags:  []cli.Flag{auditLogFlag(), auditJSONFlag(), auditIndexDirFlag()},
		Action: cliAction(auditCerts),
	}
}

// certView is a certificate as the CLI prints it in JSON.
type certView struct {
	Serial      uint64     `json:"serial"`
	KeyID       string     `json:"key_id"`
	Principals  []string   `json:"principals"`
	ValidAfter  time.Time  `json:"valid_after"`
	ValidBefore time.Time  `json:"valid_before"`
	Issued      time.Time  `json:"issued"`
	BreakGlass  bool       `json:"break_glass"`
	RequestID   string     `json:"request_id,omitempty"`
	Requester   string     `json:"requester"`
	Approvers   []string   `json:"approvers"`
	Rule        string     `json:"rule,omitempty"`
	State       string     `json:"state"`
	Ended       *time.Time `json:"ended,omitempty"`
	EndKind     string     `json:"end_kind,omitempty"`
	EndBy       string     `json:"end_by,omitempty"`
	EndReason   string     `json:"end_reason,omitempty"`
	Git         *gitCounts `json:"git,omitempty"`
}

type gitCounts struct {
	Fetches     int   `json:"fetches"`
	Pushes      int   `json:"pushes"`
	Refused     int   `json:"refused"`
	RefUpdates  int   `json:"ref_updates"`
	RefsRefused int   `json:"refs_refused"`
	BytesIn     int64 `json:"bytes_in"`
	BytesOut    int64 `json:"bytes_out"`
}

func newCertView(r *audit.CertRecord, now time.Time) certView {
	v := certView{
		Serial: r.Serial, KeyID: r.KeyID, Principals: nonNil(r.Principals), ValidAfter: r.ValidAfter, ValidBefore: r.ValidBefore,
		Issued: r.Issued, BreakGlass: r.BreakGlass, RequestID: r.RequestID, Requester: r.Requester,
		Approvers: nonNil(r.Approvers), Rule: r.Rule, State: r.State(now),
		EndKind: r.EndKind, EndBy: r.EndBy, EndReason: r.EndReason,
	}
	if !r.Ended.IsZero() {
		v.Ended = &r.Ended
	}
	return v
}

func auditCerts(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	logs, err := loadAuditLogs(c)
	if err != nil {
		return err
	}
	defer logs.close()
	entries, err := logs.collect(func(ix *audit.IndexFile) ([]audit.Entry, error) {
		return entriesOfKinds(ix, audit.KindRequest, audit.KindIssue, audit.KindCASign, audit.KindRevoke, audit.KindRelease, audit.KindOffboard)
	})
	if err != nil {
		return err
	}
	certs := audit.CollectCerts(entriesOf(entries))
	now := time.Now()
	if c.Bool("json") {
		views := make([]certView, len(certs))
		for i := range certs {
			views[i] = newCertView(&certs[i], now)
		}
		return writeJSON(c.App.Writer, views)
	}
	tw := newTable(c.App.Writer, "SERIAL", "KEY ID", "PRINCIPALS", "VALID FROM (UTC)", "VALID UNTIL (UTC)", "REQUESTER", "APPROVERS", "STATE")
	for i := range certs {
		r := &certs[i]
		tw.row(audit.FormatSerial(r.Serial), r.KeyID, strings.Join(r.Principals, ","), fmtUTC(r.ValidAfter), fmtUTC(r.ValidBefore),
			r.Requester, approversText(r), r.State(now))
	}
	return tw.flush()
}

func approversText(r *audit.CertRecord) string {
	switch {
	case r.BreakGlass:
		return "(break-glass)"
	case len(r.Approvers) == 0:
		return "(policy)"
	}
	return strings.Join(r.Approvers, ",")
}

// --- show ---

func auditShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "the whole story of one certificate",
		UsageText: "jitssh audit show --log FILE [--log FILE...] [--json] SERIAL",
		Description: "Prints what the logs hold about the certificate with serial SERIAL (decimal or 0x-hex):\n" +
			"the request, the approvals, the issue, every Git operation with the refs it moved (old → new),\n" +
			"and how it ended. Give the Git servers' logs with more --log to see the Git operations they\n" +
			"recorded.",
		Flags:  []cli.Flag{auditLogFlag(), auditJSONFlag(), auditIndexDirFlag()},
		Action: cliAction(auditShow),
	}
}

func auditShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError("want exactly one SERIAL, got %d arguments", c.NArg())
	}
	serial, err := parseSerial(c.Args().First())
	if err != nil {
		return usageError("serial %q: %v", c.Args().First(), err)
	}
	logs, err := loadAuditLogs(c)
	if err != nil {
		return err
	}
	defer logs.close()
	story, err := logs.collect(func(ix *audit.IndexFile) ([]audit.Entry, error) { return certStory(ix, serial) })
	if err != nil {
		return err
	}
	if len(story) == 0 {
		return fmt.Errorf("serial %s is not on the record", audit.FormatSerial(serial))
	}
	certs := audit.CollectCerts(entriesOf(story))
	var cert *audit.CertRecord
	for i := range certs {
		if certs[i].Serial == serial {
			cert = &certs[i]
		}
	}
	now := time.Now()
	if c.Bool("json") {
		out := struct {
			Certificate *certView  `json:"certificate"`
			Entries     []logEntry `json:"entries"`
		}{Entries: story}
		if cert != nil {
			v := newCertView(cert, now)
			v.Git = &gitCounts{cert.Fetches, cert.Pushes, cert.Refused, cert.RefUpdates, cert.RefsDenied, cert.BytesIn, cert.BytesOut}
			out.Certificate = &v
		}
		return writeJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	if cert == nil {
		fmt.Fprintf(w, "serial %s: not issued on this record; entries that name it:\n\n", audit.FormatSerial(serial))
	} else {
		writeCertHeader(w, cert, now)
	}
	tw := newTable(w, logs.head("SEQ", "TIME (UTC)", "KIND", "ACTOR", "WHAT")...)
	for _, e := range story {
		if e.Kind != audit.KindGit {
			tw.row(logs.cells(e, strconv.FormatUint(e.Seq, 10), fmtUTC(e.Time), e.Kind, e.Actor, audit.Summarize(e.Entry))...)
			continue
		}
		var ev sshd.Event
		if json.Unmarshal(e.Data, &ev) != nil {
			tw.row(logs.cells(e, strconv.FormatUint(e.Seq, 10), fmtUTC(e.Time), e.Kind, e.Actor, audit.Summarize(e.Entry))...)
			continue
		}
		what := fmt.Sprintf("%s %s %s", ev.Decision, ev.Service, ev.Repo)
		if ev.Reason != "" {
			what += fmt.Sprintf(": %q", ev.Reason)
		}
		if ev.Error != "" {
			what += fmt.Sprintf(" (error %q)", ev.Error)
		}
		tw.row(logs.cells(e, strconv.FormatUint(e.Seq, 10), fmtUTC(e.Time), e.Kind, e.Actor, what)...)
		for _, u := range ev.Updates {
			line := fmt.Sprintf("  %s %s → %s %s", u.Ref, u.Old, u.New, u.Result)
			if u.Reason != "" {
				line += fmt.Sprintf(": %q", u.Reason)
			}
			tw.row(logs.blank("", "", "", "", line)...)
		}
	}
	if cert != nil && cert.State(now) == audit.StateExpired {
		tw.row(logs.blank("", fmtUTC(cert.ValidBefore), "(expiry)", "", "the certificate stopped being valid")...)
	}
	return tw.flush()
}

func writeCertHeader(w io.Writer, r *audit.CertRecord, now time.Time) {
	tw := newTable(w)
	tw.row("certificate", audit.FormatSerial(r.Serial)+"  "+r.KeyID)
	tw.row("principals", strings.Join(r.Principals, " "))
	tw.row("valid", fmtUTC(r.ValidAfter)+" to "+fmtUTC(r.ValidBefore)+" UTC")
	state := r.State(now)
	if state == audit.StateRevoked || state == audit.StateReleased {
		state += fmt.Sprintf(" at %s by %s", fmtUTC(r.Ended), r.EndBy)
		if r.EndReason != "" {
			state += fmt.Sprintf(": %q", r.EndReason)
		}
	}
	tw.row("state", state)
	if r.BreakGlass {
		tw.row("break-glass", "signed with jitssh ca sign by "+cmp.Or(r.SignedBy, "(not recorded)"))
	} else {
		tw.row("request", fmt.Sprintf("%s by %s under rule %s: %q", r.RequestID, r.Requester, r.Rule, r.Reason))
		tw.row("approvers", approversText(r))
	}
	tw.row("held", audit.FormatDuration(r.Held(now))+" of "+audit.FormatDuration(r.Asked)+" asked")
	tw.row("git", fmt.Sprintf("%d fetches, %d pushes (%d refs updated, %d refused), %d refused", r.Fetches, r.Pushes, r.RefUpdates, r.RefsDenied, r.Refused))
	tw.flush()
	fmt.Fprintln(w)
}

// certStory returns every entry about the certificate with serial, in seq
// order: those that carry the serial, and, through the request ID its
// issue entry names, its request, approvals and end: every lookup goes
// through the index's postings, so its cost does not grow with the log.
func certStory(ix *audit.IndexFile, serial uint64) ([]audit.Entry, error) {
	story, err := ix.List(audit.Filter{Serial: &serial})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range story {
		if e.Kind != audit.KindIssue {
			continue
		}
		var d audit.IssueData
		if json.Unmarshal(e.Data, &d) == nil && d.ID != "" {
			ids = append(ids, d.ID)
		}
	}
	for _, id := range ids {
		about, err := ix.RequestEntries(id)
		if err != nil {
			return nil, err
		}
		for _, e := range about {
			switch e.Kind {
			case audit.KindRequest, audit.KindApprove, audit.KindRelease, audit.KindRevoke, audit.KindOffboard:
				story = append(story, e)
			}
		}
	}
	return sortUnique(story), nil
}

// --- shared ---

// entryRefs returns the serial and repo an entry's data names, as text.
func entryRefs(e audit.Entry) (serial, repo string) {
	var d struct {
		Serial *uint64 `json:"serial"`
		Repo   string  `json:"repo"`
	}
	if json.Unmarshal(e.Data, &d) != nil {
		return "", ""
	}
	if d.Serial != nil && *d.Serial != 0 {
		serial = audit.FormatSerial(*d.Serial)
	}
	return serial, d.Repo
}

// timeFlag reads a time flag: RFC 3339, a date, or an age before now
// (a Go duration, or whole days such as 7d).
func timeFlag(c *cli.Context, name string, now time.Time) (time.Time, error) {
	s := c.String(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := parseTimeArg(s, now)
	if err != nil {
		return time.Time{}, usageError("--%s %q: %v", name, s, err)
	}
	return t, nil
}

func parseTimeArg(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	var age time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*366 {
			return time.Time{}, errors.New("want an RFC 3339 time, a date, or an age such as 24h or 7d")
		}
		age = time.Duration(n) * 24 * time.Hour
	} else {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return time.Time{}, errors.New("want an RFC 3339 time, a date, or an age such as 24h or 7d")
		}
		age = d
	}
	return now.Add(-age), nil
}

func fmtUTC(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// table writes aligned columns. Cells come from the log, which anyone who
// could write to it controls: control characters and bidirectional
// overrides are escaped so they cannot rewrite the auditor's terminal.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, head ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(head) > 0 {
		t.row(head...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			t.tw.Write([]byte{'\t'})
		}
		t.tw.Write([]byte(terminalSafe(c)))
	}
	t.tw.Write([]byte{'\n'})
}

func (t *table) flush() error { return t.tw.Flush() }

func terminalSafe(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			fmt.Fprintf(&b, "\\u%04x", r)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
