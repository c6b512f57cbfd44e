package audit

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// The report's two forms share their content: view turns the Report into
// titled tables of text, which Markdown writes as Markdown tables and HTML
// as HTML tables beside a timeline.

// timeLayout is how the report writes times; every time is UTC.
const timeLayout = "2006-01-02 15:04:05"

// maxCell bounds free text in a table cell, in runes.
const maxCell = 160

type reportView struct {
	Title    string
	Period   string
	LogLine  string
	Summary  [][2]string
	Tables   []viewTable
	Timeline *timeline
}

type viewTable struct {
	ID, Title, Note string
	Head            []string
	Rows            []viewRow
	Empty           string
}

type viewRow struct {
	Class string
	Cells []string
}

func (r *Report) view() *reportView {
	v := &reportView{Title: "jitssh access report"}
	from := "the first entry"
	if !r.Since.IsZero() {
		from = fmtTime(r.Since)
	}
	v.Period = fmt.Sprintf("From %s to %s (UTC). Certificates still valid at %s count as active.", from, fmtTime(r.Until), fmtTime(r.Until))
	if r.LogEntries > 0 {
		v.LogLine = fmt.Sprintf("Hash chain verified: %d entries, head %s.", r.LogEntries, r.Head)
	}
	if len(r.Logs) > 0 {
		parts := make([]string, len(r.Logs))
		for i, l := range r.Logs {
			parts[i] = fmt.Sprintf("%s, %d entries, head %s", l.Name, l.Entries, l.Head)
		}
		v.LogLine = "Hash chains verified, each on its own: " + strings.Join(parts, "; ") + "."
	}

	var issued, breakGlass, held, asked = 0, 0, time.Duration(0), time.Duration(0)
	for i := range r.Certs {
		c := &r.Certs[i]
		if c.BreakGlass {
			breakGlass++
		} else {
			issued++
		}
		held += c.Held(r.Until)
		asked += c.Asked
	}
	wait := "none needed approval"
	if r.Wait.N > 0 {
		wait = fmt.Sprintf("median %s, 90th percentile %s, longest %s (%d %s)", FormatDuration(r.Wait.Median),
			FormatDuration(r.Wait.P90), FormatDuration(r.Wait.Max), r.Wait.N, plural(r.Wait.N, "certificate", "certificates"))
	}
	v.Summary = [][2]string{
		{"Certificates issued", fmt.Sprintf("%d, and %d break-glass", issued, breakGlass)},
		{"Requests", fmt.Sprintf("%d, of which %d denied", r.Requests, len(r.Denials))},
		{"Approved by policy without approvers", strconv.Itoa(r.AutoApproved)},
		{"Time to approval (request to issue)", wait},
		{"Access held against asked", fmt.Sprintf("%s of %s%s", FormatDuration(held), FormatDuration(asked), percent(held, asked))},
		{"Revoked before expiry", strconv.Itoa(len(r.Revocations))},
		{"Git operations", fmt.Sprintf("%d, of which %d refused; %d ref %s refused in pushes that went ahead",
			r.GitOps, r.GitRefusedN, r.RefsRefusedN, plural(r.RefsRefusedN, "update", "updates"))},
	}

	v.Tables = append(v.Tables, r.tallyTable("by-repo", "Grants by repository", "Repository", "People", r.ByRepo),
		r.tallyTable("by-person", "Grants by person", "Person", "Repositories", r.ByPerson))

	certs := viewTable{ID: "certificates", Title: "Certificates",
		Note:  "Asked is the TTL the requester signed for (the policy's when they left it out); held runs from issue to expiry, revocation or release.",
		Head:  []string{"Serial", "Key ID", "Grants", "Requester", "Approvers", "Requested", "Issued", "Wait", "Asked", "Held", "State", "Git ops"},
		Empty: "No certificates were issued."}
	for i := range r.Certs {
		c := &r.Certs[i]
		approvers := strings.Join(c.Approvers, ", ")
		switch {
		case c.BreakGlass:
			approvers = "break-glass"
		case c.AutoApproved:
			approvers = "policy (automatic)"
		}
		wait := ""
		if !c.BreakGlass && !c.Requested.IsZero() {
			wait = FormatDuration(c.Wait())
		}
		state := c.State(r.Until)
		certs.Rows = append(certs.Rows, viewRow{Class: rowClass(c, state), Cells: []string{
			FormatSerial(c.Serial), c.KeyID, strings.Join(c.Principals, " "), c.Requester, approvers,
			fmtOptTime(c.Requested), fmtTime(c.Issued), wait, FormatDuration(c.Asked), FormatDuration(c.Held(r.Until)),
			state, strconv.Itoa(c.GitOps())}})
	}
	v.Tables = append(v.Tables, certs)

	den := viewTable{ID: "denials", Title: "Denied requests", Head: []string{"Time", "Request", "Requester", "Grant", "Denied by", "Reason"},
		Empty: "No request was denied."}
	for _, d := range r.Denials {
		den.Rows = append(den.Rows, viewRow{Cells: []string{fmtTime(d.Time), d.RequestID, d.Requester, d.Grant, d.By, clip(d.Reason)}})
	}
	v.Tables = append(v.Tables, den)

	rev := viewTable{ID: "revocations", Title: "Revocations", Head: []string{"Time", "Serial", "Key ID", "Revoked by", "Reason", "Held", "Asked"},
		Empty: "No certificate was revoked before it expired."}
	for _, x := range r.Revocations {
		rev.Rows = append(rev.Rows, viewRow{Class: "revoked", Cells: []string{fmtTime(x.Time), FormatSerial(x.Serial), x.KeyID, x.By, clip(x.Reason),
			FormatDuration(x.Held), FormatDuration(x.Asked)}})
	}
	v.Tables = append(v.Tables, rev)

	bg := viewTable{ID: "break-glass", Title: "Break-glass signings", Note: "Certificates signed with jitssh ca sign, outside the approval flow.",
		Head: []string{"Time", "Serial", "Key ID", "Principals", "Valid until", "Signed by", "Held", "Git ops"}, Empty: "No break-glass certificate was signed."}
	for i := range r.Certs {
		if c := &r.Certs[i]; c.BreakGlass {
			bg.Rows = append(bg.Rows, viewRow{Class: "break-glass", Cells: []string{fmtTime(c.Issued), FormatSerial(c.Serial), c.KeyID,
				strings.Join(c.Principals, " "), fmtTime(c.ValidBefore), c.SignedBy, FormatDuration(c.Held(r.Until)), strconv.Itoa(c.GitOps())}})
		}
	}
	v.Tables = append(v.Tables, bg)

	git := viewTable{ID: "git", Title: "Git operations by certificate",
		Head:  []string{"Serial", "Key ID", "Fetches", "Pushes", "Refs updated", "Refs refused", "Refused", "Bytes in", "Bytes out"},
		Empty: "No Git operation was recorded."}
	gitRow := func(c *CertRecord, class, note string) {
		git.Rows = append(git.Rows, viewRow{Class: class, Cells: []string{FormatSerial(c.Serial), c.KeyID + note, strconv.Itoa(c.Fetches),
			strconv.Itoa(c.Pushes), strconv.Itoa(c.RefUpdates), strconv.Itoa(c.RefsDenied), strconv.Itoa(c.Refused), strconv.FormatInt(c.BytesIn, 10), strconv.FormatInt(c.BytesOut, 10)}})
	}
	for i := range r.Certs {
		if c := &r.Certs[i]; c.GitOps() > 0 {
			gitRow(c, "", "")
		}
	}
	for i := range r.GitUnknown {
		gitRow(&r.GitUnknown[i], "unknown", " (not issued on this record)")
	}
	v.Tables = append(v.Tables, git)

	ref := viewTable{ID: "refused", Title: "Refused Git operations and ref updates",
		Head:  []string{"Time", "Serial", "Key ID", "Repository", "Service", "Ref", "Reason"},
		Empty: "No Git operation or ref update was refused."}
	if n := r.GitRefusedN + r.RefsRefusedN; n > len(r.GitRefused) {
		ref.Note = fmt.Sprintf("The first %d of %d.", len(r.GitRefused), n)
	}
	for _, g := range r.GitRefused {
		ref.Rows = append(ref.Rows, viewRow{Class: "refused", Cells: []string{fmtTime(g.Time), FormatSerial(g.Serial), g.KeyID, g.Repo, g.Service, g.Ref, clip(g.Reason)}})
	}
	v.Tables = append(v.Tables, ref)
	return v
}

func (r *Report) tallyTable(id, title, name, others string, ts []Tally) viewTable {
	t := viewTable{ID: id, Title: title, Head: []string{name, "Certificates", "Read", "Write", "Force", "Break-glass", others, "Held", "Asked", "Git ops"},
		Empty: "No certificates were issued."}
	for _, x := range ts {
		t.Rows = append(t.Rows, viewRow{Cells: []string{x.Name, strconv.Itoa(x.Certs), strconv.Itoa(x.Read), strconv.Itoa(x.Write),
			strconv.Itoa(x.Force), strconv.Itoa(x.BreakGlass), strings.Join(x.Others, ", "), FormatDuration(x.Held), FormatDuration(x.Asked), strconv.Itoa(x.GitOps)}})
	}
	return t
}

func rowClass(c *CertRecord, state string) string {
	if c.BreakGlass {
		return "break-glass"
	}
	return state
}

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func fmtOptTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmtTime(t)
}

func percent(part, whole time.Duration) string {
	if whole <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", int(math.Round(100*float64(part)/float64(whole))))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// clip shortens free text for a table cell.
func clip(s string) string {
	if r := []rune(s); len(r) > maxCell {
		return string(r[:maxCell-1]) + "…"
	}
	return s
}

// Markdown writes the report as a Markdown document.
func (r *Report) Markdown(w io.Writer) error {
	v := r.view()
	var b strings.Builder
	b.WriteString("# " + v.Title + "\n\n" + v.Period + "\n")
	if v.LogLine != "" {
		b.WriteString(v.LogLine + "\n")
	}
	b.WriteString("\n## Summary\n\n| | |\n|---|---|\n")
	for _, kv := range v.Summary {
		b.WriteString("| " + mdCell(kv[0]) + " | " + mdCell(kv[1]) + " |\n")
	}
	for _, t := range v.Tables {
		b.WriteString("\n## " + t.Title + "\n\n")
		if t.Note != "" {
			b.WriteString(mdCell(t.Note) + "\n\n")
		}
		if len(t.Rows) == 0 {
			b.WriteString(t.Empty + "\n")
			continue
		}
		b.WriteString("|")
		for _, h := range t.Head {
			b.WriteString(" " + h + " |")
		}
		b.WriteString("\n|")
		for range t.Head {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, row := range t.Rows {
			b.WriteString("|")
			for _, c := range row.Cells {
				b.WriteString(" " + mdCell(c) + " |")
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdCell makes text safe in a Markdown table cell: nothing in it can end
// the cell, start markup, or pass through as HTML.
func mdCell(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case strings.ContainsRune("\\|*_`[]#~", c):
			b.WriteByte('\\')
			b.WriteRune(c)
		case unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c):
			b.WriteRune(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// The timeline: one row per certificate on a shared time axis, a faint bar
// for the window granted, a solid one for the time access was held, a
// dashed line for the wait from request to issue, and a tick per Git
// operation.
type timeline struct {
	Width, Height, LabelW, PlotW, Bottom float64
	Ticks                                []tlTick
	Rows                                 []tlRow
	NowX                                 float64 // the end of the log, or -1 when off the axis
	Note                                 string
}

type tlTick struct {
	X     float64
	Label string
}

type tlRow struct {
	Y, Mid              float64
	MarkTop, MarkBottom float64
	Label, Title, Class string
	WaitX, WaitW        float64
	AskX, AskW          float64
	HeldX, HeldW        float64
	Marks               []tlMark
}

type tlMark struct {
	X       float64
	Refused bool
}

// Timeline layout, in pixels.
const (
	tlWidth   = 1100.0
	tlLabelW  = 260.0
	tlRight   = 16.0
	tlTop     = 34.0
	tlRowH    = 24.0
	tlBarH    = 12.0
	tlLegendH = 44.0
	tlMaxRows = 300
)

func (r *Report) timeline() *timeline {
	if len(r.Certs) == 0 {
		return nil
	}
	certs := r.Certs
	tl := &timeline{Width: tlWidth, LabelW: tlLabelW, PlotW: tlWidth - tlLabelW - tlRight, NowX: -1}
	if len(certs) > tlMaxRows {
		tl.Note = fmt.Sprintf("The first %d of %d certificates.", tlMaxRows, len(certs))
		certs = certs[:tlMaxRows]
	}
	t0, t1 := certs[0].Issued, certs[0].ValidBefore
	for i := range certs {
		c := &certs[i]
		start := c.Issued
		if !c.Requested.IsZero() && c.Requested.Before(start) {
			start = c.Requested
		}
		t0 = minTime(t0, start)
		t1 = maxTime(t1, c.ValidBefore)
	}
	if !t1.After(t0) {
		t1 = t0.Add(time.Minute)
	}
	span := t1.Sub(t0)
	x := func(t time.Time) float64 {
		return round1(tl.LabelW + tl.PlotW*float64(t.Sub(t0))/float64(span))
	}
	step := tickStep(span)
	layout := "15:04"
	switch {
	case step >= 24*time.Hour:
		layout = "2006-01-02"
	case t0.YearDay() != t1.YearDay() || t0.Year() != t1.Year():
		layout = "01-02 15:04"
	}
	for t := t0.Truncate(step); !t.After(t1); t = t.Add(step) {
		if !t.Before(t0) {
			tl.Ticks = append(tl.Ticks, tlTick{X: x(t), Label: t.UTC().Format(layout)})
		}
	}
	if !r.Until.Before(t0) && !r.Until.After(t1) {
		tl.NowX = x(r.Until)
	}
	for i := range certs {
		c := &certs[i]
		y := tlTop + float64(i)*tlRowH
		state := c.State(r.Until)
		row := tlRow{
			Y: y + (tlRowH-tlBarH)/2, Mid: y + tlRowH/2,
			MarkTop: y + 3, MarkBottom: y + tlRowH - 3,
			Label: clipRunes(FormatSerial(c.Serial)+"  "+c.KeyID, 38),
			Class: rowClass(c, state),
			Title: fmt.Sprintf("serial %s %s\n%s\nrequester %s; issued %s; held %s of %s asked; %s; %d Git operations",
				FormatSerial(c.Serial), c.KeyID, strings.Join(c.Principals, " "), c.Requester, fmtTime(c.Issued),
				FormatDuration(c.Held(r.Until)), FormatDuration(c.Asked), state, c.GitOps()),
			AskX: x(c.Issued), HeldX: x(c.Issued),
		}
		row.AskW = max(x(c.ValidBefore)-row.AskX, 1)
		end := c.End()
		if r.Until.Before(end) {
			end = r.Until
		}
		row.HeldW = max(x(end)-row.HeldX, 1)
		if !c.BreakGlass && !c.Requested.IsZero() && c.Requested.Before(c.Issued) {
			row.WaitX = x(c.Requested)
			row.WaitW = row.AskX - row.WaitX
		}
		for _, m := range r.marks[c.Serial] {
			if !m.t.Before(t0) && !m.t.After(t1) {
				row.Marks = append(row.Marks, tlMark{X: x(m.t), Refused: m.refused})
			}
		}
		tl.Rows = append(tl.Rows, row)
	}
	tl.Bottom = tlTop + float64(len(tl.Rows))*tlRowH
	tl.Height = tl.Bottom + tlLegendH
	return tl
}

// tickStep is the smallest round interval that puts at most ten ticks on
// span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
		48 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour} {
		if span/s <= 10 {
			return s
		}
	}
	return 30 * 24 * time.Hour * time.Duration(1+span/(300*24*time.Hour))
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func clipRunes(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// HTML writes the report as one self-contained HTML page: styles inline,
// the timeline as inline SVG, no scripts and nothing fetched from
// elsewhere. Everything from the log is escaped by html/template.
func (r *Report) HTML(w io.Writer) error {
	v := r.view()
	v.Timeline = r.timeline()
	return reportHTML().Execute(w, v)
}

// reportHTMLText is the page HTML fills in with a reportView: styles, the
// timeline's SVG and the tables.
//
//go:embed report.html.tmpl
var reportHTMLText string

// reportHTML is parsed on first use: every jitssh command links this
// package, and most never write a report.
var reportHTML = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Parse(reportHTMLText))
})
