package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// One line per entry, and serials and durations, as people read them in
// lists, exports and reports.

// FormatSerial writes a serial the way people read it: decimal for the
// daemon's, hex for break-glass serials, whose top bit is set.
func FormatSerial(s uint64) string {
	if s&(1<<63) != 0 {
		return "0x" + strconv.FormatUint(s, 16)
	}
	return strconv.FormatUint(s, 10)
}

// Summarize describes an entry in one line of plain text for lists and
// exports. Free text from the record (reasons) is quoted, so it cannot
// break the line.
func Summarize(e Entry) string {
	switch e.Kind {
	case KindRequest:
		var d RequestData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("%s asks %s on %s %s for %s (%s): %q", d.Requester, d.Access, d.Repo, d.Ref, d.TTL, d.ID, d.Reason)
		}
	case KindWorkloadRefused:
		var d WorkloadRefusedData
		if json.Unmarshal(e.Data, &d) == nil {
			run := cmp.Or(d.Workload.Claims["run_id"], d.Workload.Claims["pipeline_id"])
			return fmt.Sprintf("%s refused %s on %s %s (sub %q, run %s): %q", d.Requester, d.Access, d.Repo, d.Ref,
				d.Workload.Subject, cmp.Or(run, "-"), d.Reason)
		}
	case KindApprove, KindDeny:
		var d DecisionData
		if json.Unmarshal(e.Data, &d) == nil {
			verb := "approves"
			if e.Kind == KindDeny {
				verb = "denies"
			}
			s := fmt.Sprintf("%s %s %s", d.By, verb, d.ID)
			if d.TTL != "" {
				s += " for " + d.TTL
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			return s
		}
	case KindIssue:
		var d IssueData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("serial %s %s %s until %s (%s, approved by %s)", FormatSerial(d.Serial), d.KeyID,
				strings.Join(d.Principals, ","), d.ValidBefore.UTC().Format(time.RFC3339), d.ID, orNone(d.Approvers))
		}
	case KindCASign:
		var d CASignData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("break-glass serial %s %s %s until %s", FormatSerial(d.Serial), d.KeyID,
				strings.Join(d.Principals, ","), d.ValidBefore.UTC().Format(time.RFC3339))
		}
	case KindRevoke, KindRelease, KindOffboard, KindExpire, KindCancel:
		var d EndData
		if json.Unmarshal(e.Data, &d) == nil {
			s := e.Kind
			if d.Serial != 0 {
				s += " serial " + FormatSerial(d.Serial)
			}
			if d.ID != "" {
				s += " " + d.ID
			}
			if by := cmp.Or(d.By, e.Actor); by != "" {
				s += " by " + by
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			return s
		}
	case KindGit:
		var d gitData
		if json.Unmarshal(e.Data, &d) == nil {
			s := fmt.Sprintf("%s %s %s serial %s", d.Decision, d.Service, d.Repo, FormatSerial(d.Serial))
			for _, u := range d.Updates {
				s += fmt.Sprintf("; %s %s..%s %s", u.Ref, shortHash(u.Old), shortHash(u.New), u.Result)
			}
			if d.Reason != "" {
				s += fmt.Sprintf(": %q", d.Reason)
			}
			if d.Error != "" {
				s += fmt.Sprintf(" (error %q)", d.Error)
			}
			return s
		}
	case KindPruned:
		var d PrunedData
		if json.Unmarshal(e.Data, &d) == nil {
			return summarizePruned(d)
		}
	case KindCheckpoint:
		var h Head
		if json.Unmarshal(e.Data, &h) == nil {
			return fmt.Sprintf("signed head at seq %d", h.Seq)
		}
	}
	if len(e.Data) == 0 {
		return ""
	}
	s := string(e.Data)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return strconv.QuoteToGraphic(s)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "policy (automatic)"
	}
	return strings.Join(names, ", ")
}

// shortHash abbreviates a Git object name as git does; the all-zero name
// (no object) stays recognisable.
func shortHash(h string) string {
	if strings.Trim(h, "0") == "" && h != "" {
		return "0000000"
	}
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

// FormatDuration writes a duration for people: "0s", "45s", "4m30s",
// "1h05m", "2d03h".
func FormatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		if s := d % time.Minute / time.Second; s != 0 {
			return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(s))
		}
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
