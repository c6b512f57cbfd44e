package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/sshd"
)

// auditKindGit is the audit entry kind of every Git decision.
const auditKindGit = "git"

// auditRecorder puts Git decisions on the hash-chained audit log, with the
// certificate's key ID as the actor.
type auditRecorder struct{ log *audit.Log }

func (r auditRecorder) Record(_ context.Context, e sshd.Event) error {
	if _, err := r.log.Append(auditKindGit, e.KeyID, e); err != nil {
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
