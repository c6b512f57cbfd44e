package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/internal/atomicfile"
)

// --- export ---

func auditExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write the logs' entries as JSON Lines or CSV",
		UsageText: "jitssh audit export --log FILE [--log FILE...] [--format json|csv] [--since T] [--until T]",
		Description: "Verifies each log's chain, then writes the entries to stdout. json: JSON Lines, each entry's\n" +
			"line exactly as stored, so an export of a whole log is the log, and verifies as one; with\n" +
			"several logs, merged by time, each line is {\"log\":FILE,\"entry\":LINE} instead.\n" +
			"csv: a header, then seq,time,kind,actor,serial,repo,summary (log first, with several logs);\n" +
			"a text cell that a spreadsheet would take for a formula (starting with = + - @) is prefixed\n" +
			"with a quote (').",
		Flags: []cli.Flag{
			auditLogFlag(),
			onceString{&cli.StringFlag{Name: "format", Value: "json", Usage: "json or csv"}},
			auditSinceFlag("entries from this time on"),
			auditUntilFlag(),
		},
		Action: cliAction(auditExport),
	}
}

func auditExport(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	format := c.String("format")
	if format != "json" && format != "csv" {
		return usageError("--format %q: want json or csv", format)
	}
	now := time.Now()
	since, err := timeFlag(c, "since", now)
	if err != nil {
		return err
	}
	until, err := timeFlag(c, "until", now)
	if err != nil {
		return err
	}
	paths, err := logPaths(c)
	if err != nil {
		return err
	}
	streams, closeAll, err := openLogStreams(paths)
	if err != nil {
		return err
	}
	defer closeAll()
	several := len(paths) > 1

	out := bufio.NewWriterSize(c.App.Writer, 1<<16)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(out)
		head := []string{"seq", "time", "kind", "actor", "serial", "repo", "summary"}
		if several {
			head = append([]string{"log"}, head...)
		}
		cw.Write(head)
	}
	err = mergeStreams(streams, func(s *logStream) error {
		e := s.e
		if !since.IsZero() && e.Time.Before(since) || !until.IsZero() && !e.Time.Before(until) {
			return nil
		}
		switch {
		case cw != nil:
			serial, repo := entryRefs(e)
			row := []string{strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), csvText(e.Kind), csvText(e.Actor),
				serial, csvText(repo), csvText(audit.Summarize(e))}
			if several {
				row = append([]string{csvText(s.path)}, row...)
			}
			return cw.Write(row)
		case several:
			// The line as stored, inside an object naming its log.
			name, err := json.Marshal(s.path)
			if err != nil {
				return err
			}
			out.WriteString(`{"log":`)
			out.Write(name)
			out.WriteString(`,"entry":`)
			out.Write(s.line)
			out.WriteString("}\n")
		default:
			out.Write(s.line)
			out.WriteByte('\n')
		}
		return nil
	})
	if err != nil {
		return err
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	}
	return out.Flush()
}

// csvText defuses a cell that a spreadsheet would evaluate as a formula.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// --- report ---

func auditReportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "the compliance report: grants, approvals, denials, revocations, break-glass, Git use",
		UsageText: "jitssh audit report --log FILE [--log FILE...] [--since T] [--format md|html] [--out FILE]",
		Description: "Reviews the logs from --since on (default: all of them): grants by repository and by person,\n" +
			"for each certificate how long access was held against how long was asked, time from request\n" +
			"to issue, denials, revocations, break-glass signings and Git operations per certificate.\n" +
			"html is one self-contained page with a timeline of every certificate. The report's clock is\n" +
			"the last entry of the logs, so the same logs always give the same report.",
		Flags: []cli.Flag{
			auditLogFlag(),
			auditSinceFlag("review from this time on"),
			onceString{&cli.StringFlag{Name: "format", Value: "md", Usage: "md (Markdown) or html"}},
			onceString{&cli.StringFlag{Name: "out", Usage: "write the report to this file instead of stdout", TakesFile: true}},
			auditIndexDirFlag(),
		},
		Action: cliAction(auditReport),
	}
}

func auditReport(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	format := c.String("format")
	if format != "md" && format != "html" {
		return usageError("--format %q: want md or html", format)
	}
	since, err := timeFlag(c, "since", time.Now())
	if err != nil {
		return err
	}
	var out *atomicfile.Pending
	if path := c.String("out"); path != "" {
		if out, err = atomicfile.Create(path); err != nil {
			return err
		}
		defer out.Abort()
	}
	logs, err := loadAuditLogs(c)
	if err != nil {
		return err
	}
	defer logs.close()
	var summaries []audit.ReportLog
	entries, err := logs.collect(func(ix *audit.IndexFile) ([]audit.Entry, error) {
		entries, err := entriesOfKinds(ix, audit.KindRequest, audit.KindDeny, audit.KindIssue, audit.KindCASign,
			audit.KindRevoke, audit.KindRelease, audit.KindOffboard)
		if err != nil {
			return nil, err
		}
		git, err := ix.List(audit.Filter{Kind: audit.KindGit, Since: since})
		if err != nil {
			return nil, err
		}
		entries = append(entries, git...)
		var last audit.Entry
		if n := ix.Len(); n > 0 {
			if last, _, err = ix.Get(n); err != nil {
				return nil, err
			}
			entries = append(entries, last) // the report's clock
		}
		summaries = append(summaries, audit.ReportLog{Entries: ix.Len(), Head: headOf(last)})
		return entries, nil
	})
	if err != nil {
		return err
	}
	rep := audit.BuildReport(entriesOf(entries), since)
	if logs.several() {
		for i := range summaries {
			summaries[i].Name = logs.names[i]
		}
		rep.Logs = summaries
	} else {
		rep.LogEntries, rep.Head = summaries[0].Entries, summaries[0].Head
	}

	var b bytes.Buffer
	if format == "html" {
		err = rep.HTML(&b)
	} else {
		err = rep.Markdown(&b)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if out != nil {
		if _, err := out.Write(b.Bytes()); err != nil {
			return err
		}
		return out.Commit(0o644)
	}
	_, err = c.App.Writer.Write(b.Bytes())
	return err
}

// headOf is the head hash of a log whose last entry is e: the SHA-256 of
// its line, which is the entry's canonical JSON encoding.
func headOf(e audit.Entry) string {
	if e.Seq == 0 {
		return audit.GenesisHash
	}
	line, err := json.Marshal(e)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}
