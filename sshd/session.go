package sshd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/crypto/ssh"
)

// pipeline is the one path an exec request takes on either front-end:
// verify, decide, run git, record. The native server verifies the key
// during the handshake and git-shell the certificate OpenSSH exposed; from
// there on both run this.
type pipeline struct {
	repos *Repos
	git   *Git
	// upstream, when set, serves every repository from a Git host,
	// instead of repos and git.
	upstream *Upstream
	recorder Recorder
	logger   *slog.Logger
	metrics  *Metrics
}

// execRequest is one exec request on a session.
type execRequest struct {
	// id is the verified identity; when nil, refused says why there is
	// none.
	id *Identity
	// refused, when set, refuses the request before it is decided.
	refused error
	remote  string
	command string
	// gitProtocol is the client's GIT_PROTOCOL, "" when it sent none.
	gitProtocol string
	stdio       Stdio
	// exit ends the session with the exit status, before the outcome is
	// recorded: the client need not wait for that.
	exit func(code int)
}

// serve decides r, runs what is allowed, and records it. The audit rule
// is one for both front-ends: an allowed operation acts only once its
// decision is on the record (a fetch or archive before git starts, a push
// before git changes any ref), and is refused when that record cannot be
// written. The record of what it did follows; should that one fail, the
// server's log says so.
func (p *pipeline) serve(ctx context.Context, r execRequest) {
	started := time.Now()
	d := Decision{Identity: r.id, Err: r.refused}
	if d.Err == nil {
		d = p.decide(r.id, r.command)
	}
	p.metrics.authorized(time.Since(started))
	ev := NewEvent(d, r.remote, r.command)
	if d.Allowed() && d.Command.Service != ReceivePack {
		if err := p.record(ctx, ev.decided(nil)); err != nil {
			d.Err = fmt.Errorf("%w: %w", ErrAuditUnavailable, err)
			ev = NewEvent(d, r.remote, r.command)
		}
	}
	if !d.Allowed() {
		fmt.Fprintln(r.stdio.Err, ClientMessage(d.Err))
		r.exit(1)
		p.metrics.operation(string(d.Command.Service), Deny)
		p.record(ctx, ev)
		return
	}
	res, err := p.run(ctx, d, r.gitProtocol, r.stdio, func(updates []RefUpdate) error {
		return p.record(ctx, ev.decided(updates))
	})
	for _, h := range res.HookErrors {
		p.logger.Error("git hook failed", "hook", h.Hook, "err", h.Err, "serial", ev.Serial, "key_id", ev.KeyID, "repo", ev.Repo)
	}
	code := 0
	if err != nil {
		code = 1
	}
	r.exit(code)
	ev.Complete(res, err, time.Since(started))
	p.metrics.operation(string(d.Command.Service), Allow)
	p.metrics.transferred(res.BytesIn, res.BytesOut)
	p.record(ctx, ev)
}

// decide is Decide, on the repositories on disk or on the Git host.
func (p *pipeline) decide(id *Identity, command string) Decision {
	if p.upstream != nil {
		return p.upstream.Decide(id, command)
	}
	return Decide(p.repos, id, command)
}

// run serves an allowed decision from disk or from the Git host.
func (p *pipeline) run(ctx context.Context, d Decision, gitProtocol string, stdio Stdio, beforeUpdate func([]RefUpdate) error) (Result, error) {
	if p.upstream != nil {
		return p.upstream.Serve(ctx, d, gitProtocol, stdio, beforeUpdate)
	}
	return p.git.Serve(ctx, d, gitProtocol, stdio, beforeUpdate)
}

// record hands e to the recorder; a failure is the server's to know.
func (p *pipeline) record(ctx context.Context, e Event) error {
	if p.recorder == nil {
		return nil
	}
	err := p.recorder.Record(ctx, e)
	if err != nil {
		p.logger.Error("audit record failed", "err", err, "serial", e.Serial, "key_id", e.KeyID, "decision", e.Decision, "repo", e.Repo)
	}
	return err
}

// decided is the record of e's decision, written before the operation
// acts, with a push's decided updates.
func (e Event) decided(updates []RefUpdate) Event {
	e.Time = time.Now().UTC()
	e.Stage = StageDecided
	e.Updates = updates
	return e
}

// authEvent is the record of a key refused at authentication, naming the
// certificate and its CA when the key is one.
func authEvent(key ssh.PublicKey, err error, remote, command string) Event {
	e := Event{Time: time.Now().UTC(), Decision: Deny, Reason: err.Error(), Remote: remote, Command: command}
	if cert, ok := key.(*ssh.Certificate); ok {
		e.Serial, e.KeyID, e.Principals = cert.Serial, cert.KeyId, cert.ValidPrincipals
		if cert.SignatureKey != nil {
			e.CA = ssh.FingerprintSHA256(cert.SignatureKey)
		}
	}
	return e
}
