package sshd

import (
	"context"
	"log/slog"
	"time"
)

// Event is the record of one decision on a Git connection, allowed or
// refused. It carries enough to answer "who touched what, under which
// certificate" without any other log.
type Event struct {
	Time       time.Time     `json:"time"`
	Decision   string        `json:"decision"` // "allow" or "deny"
	Reason     string        `json:"reason,omitempty"`
	Serial     uint64        `json:"serial"`
	KeyID      string        `json:"key_id,omitempty"`
	Principals []string      `json:"principals,omitempty"`
	CA         string        `json:"ca,omitempty"`
	Remote     string        `json:"remote,omitempty"`
	Command    string        `json:"command,omitempty"`
	Service    string        `json:"service,omitempty"`
	Repo       string        `json:"repo,omitempty"`
	Protocol   string        `json:"protocol,omitempty"`
	Updates    []RefUpdate   `json:"updates,omitempty"`
	BytesIn    int64         `json:"bytes_in,omitempty"`
	BytesOut   int64         `json:"bytes_out,omitempty"`
	Duration   time.Duration `json:"duration_ns,omitempty"`
	// Error is set when an allowed operation failed while running.
	Error string `json:"error,omitempty"`
	// Stage is StageDecided on the record written before an allowed
	// operation acts, and empty on the record of what it did.
	Stage string `json:"stage,omitempty"`
}

// StageDecided marks the record of an allowed operation that is written
// before the operation acts: before git starts for a fetch or an archive,
// and before git changes any ref for a push, listing each update and
// whether it may happen. When it cannot be written the operation is
// refused. The record of what the operation did follows it.
const StageDecided = "decided"

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Recorder receives every Event. The audit log implements it; Record must
// be durable before it returns when the caller relies on it.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// SlogRecorder writes events as structured log lines.
type SlogRecorder struct{ Logger *slog.Logger }

// Record logs e at Info for allowed operations and Warn for refusals.
func (r SlogRecorder) Record(ctx context.Context, e Event) error {
	level := slog.LevelInfo
	if e.Decision == Deny || e.Error != "" {
		level = slog.LevelWarn
	}
	msg := "git " + e.Decision
	if e.Stage != "" {
		msg += " " + e.Stage
	}
	r.Logger.LogAttrs(ctx, level, msg,
		slog.Uint64("serial", e.Serial),
		slog.String("key_id", e.KeyID),
		slog.String("remote", e.Remote),
		slog.String("service", e.Service),
		slog.String("repo", e.Repo),
		slog.String("reason", e.Reason),
		slog.Any("updates", e.Updates),
		slog.Int64("bytes_in", e.BytesIn),
		slog.Int64("bytes_out", e.BytesOut),
		slog.Duration("duration", e.Duration),
		slog.String("err", e.Error),
	)
	return nil
}

// NewEvent starts an event from a decision.
func NewEvent(d Decision, remote, command string) Event {
	e := Event{Time: time.Now().UTC(), Decision: Allow, Remote: remote, Command: truncate(command)}
	if d.Identity != nil {
		e.Serial = d.Identity.Serial
		e.KeyID = d.Identity.KeyID
		e.Principals = d.Identity.Cert.ValidPrincipals
		e.CA = d.Identity.CA
	}
	if d.Command.Service != "" {
		e.Service = string(d.Command.Service)
		e.Repo = d.Command.Repo
	}
	if d.Err != nil {
		e.Decision = Deny
		e.Reason = d.Err.Error()
	}
	return e
}

// Complete fills in what running the operation did.
func (e *Event) Complete(res Result, err error, took time.Duration) {
	e.Updates = res.Updates
	e.BytesIn, e.BytesOut = res.BytesIn, res.BytesOut
	e.Protocol = res.Protocol
	e.Duration = took
	if err != nil {
		e.Error = err.Error()
	}
}
