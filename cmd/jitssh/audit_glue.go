package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/sshd"
)

// Audit entry kinds of Git decisions: auditKindGit is the one record of
// each operation, what it did (or why it was refused); auditKindGitDecided
// is the record of an allowed operation's decision, written before it acts
// (sshd.StageDecided), kept apart so that each operation is counted once.
const (
	auditKindGit        = "git"
	auditKindGitDecided = "git.decided"
)

// auditRecorder puts Git decisions on the hash-chained audit log, with the
// certificate's key ID as the actor.
type auditRecorder struct{ log *audit.Log }

func (r auditRecorder) Record(_ context.Context, e sshd.Event) error {
	kind := auditKindGit
	if e.Stage == sshd.StageDecided {
		kind = auditKindGitDecided
	}
	if _, err := r.log.Append(kind, e.KeyID, e); err != nil {
		return fmt.Errorf("audit git decision (serial %d): %w", e.Serial, err)
	}
	return nil
}

// openAuditRecorder opens the audit log at path. A torn last line left by
// a process that crashed mid-write is moved aside to a sidecar file and
// recorded, so one crash does not lock every later Git client out.
func openAuditRecorder(path string, logger *slog.Logger) (sshd.Recorder, func(), error) {
	l, err := audit.Open(path, audit.Options{RepairTornTail: true, Logger: logger})
	if err != nil {
		return nil, nil, fmt.Errorf("open audit log: %w", err)
	}
	return auditRecorder{log: l}, func() { l.Close() }, nil
}
