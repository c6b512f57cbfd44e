package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
)

// apiServer serves the daemon's API over SSH. It only translates: it
// decodes a call, hands it to the approvals Service as the actor the
// connection authenticated as, and encodes the answer. Who may see or do
// what, and the signatures on requests and decisions, are the Service's
// to check. People are identified by the plain public keys the policy
// lists; certificates identify nobody.
type apiServer struct {
	svc     *approvals.Service
	logger  *slog.Logger
	metrics *daemonMetrics
	gate    *connGate
	srv     *gliderssh.Server
}

type apiCtxKey string

const actorKey apiCtxKey = "jitssh-actor"

// keepaliveRequest is the global request OpenSSH and jitssh clients send
// to keep a quiet connection open; answering it is all the server does,
// since any traffic counts against the idle timeout.
const keepaliveRequest = "keepalive@openssh.com"

func newAPIServer(svc *approvals.Service, hostKeys []ssh.Signer, limits approvals.Limits, logger *slog.Logger, metrics *daemonMetrics) *apiServer {
	a := &apiServer{svc: svc, logger: logger, metrics: metrics, gate: newConnGate(limits, logger)}
	a.srv = &gliderssh.Server{
		Handler: a.handle,
		// Answers "would you accept this key?" only. The person is taken
		// from the key that then signed (below), never from an offer.
		PublicKeyHandler: func(_ gliderssh.Context, key gliderssh.PublicKey) bool {
			_, err := svc.Authenticate(key)
			return err == nil || mayBeWorkload(svc, key)
		},
		ServerConfigCallback: func(ctx gliderssh.Context) *ssh.ServerConfig {
			return &ssh.ServerConfig{
				MaxAuthTries: 32,
				VerifiedPublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
					who, err := svc.Authenticate(key)
					if err != nil {
						if !mayBeWorkload(svc, key) {
							return nil, errors.New("unknown key")
						}
						// A key nobody is listed for may only ask for a
						// workload certificate, for itself (handleWorkload).
						authenticated(ctx, approvals.Actor{Key: key})
						return &ssh.Permissions{ExtraData: map[any]any{workloadKey: key}}, nil
					}
					authenticated(ctx, who)
					return &ssh.Permissions{ExtraData: map[any]any{actorKey: who}}, nil
				},
			}
		},
		ConnCallback: a.gate.admit,
		PtyCallback:  func(gliderssh.Context, gliderssh.Pty) bool { return false },
		IdleTimeout:  limits.IdleTimeout.D(),
		Version:      "jitssh-daemon",
		RequestHandlers: map[string]gliderssh.RequestHandler{
			keepaliveRequest: func(gliderssh.Context, *gliderssh.Server, *ssh.Request) (bool, []byte) { return true, nil },
		},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
		ChannelHandlers:   map[string]gliderssh.ChannelHandler{"session": a.gate.limitSessions(gliderssh.DefaultSessionHandler)},
	}
	for _, k := range hostKeys {
		a.srv.AddHostKey(k)
	}
	return a
}

func (a *apiServer) Serve(l net.Listener) error {
	err := a.srv.Serve(l)
	if errors.Is(err, gliderssh.ErrServerClosed) {
		return nil
	}
	return err
}

func (a *apiServer) Close() error { return a.srv.Close() }

// policyChanged ends the connections of keys a reload removed.
func (a *apiServer) policyChanged() { a.gate.revalidate(a.svc) }

// actorOf is who the connection authenticated as.
func actorOf(ctx gliderssh.Context) (approvals.Actor, bool) {
	conn, ok := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if !ok || conn.Permissions == nil {
		return approvals.Actor{}, false
	}
	who, ok := conn.Permissions.ExtraData[actorKey].(approvals.Actor)
	return who, ok
}

var errUnauthenticated = fmt.Errorf("%w: unauthenticated", approvals.ErrForbidden)

func (a *apiServer) handle(sess gliderssh.Session) {
	ctx := sess.Context()
	enc := json.NewEncoder(sess)
	method := sess.RawCommand()
	who, ok := actorOf(ctx)
	fail := func(err error) {
		a.refuse(enc, who.Person, method, err)
		_ = sess.Exit(1)
	}
	if key, isWorkload := workloadKeyOf(ctx); !ok && isWorkload {
		a.handleWorkload(sess, key, method)
		return
	}
	if !ok {
		fail(errUnauthenticated)
		return
	}
	if method == methodWorkloadSubmit {
		fail(fmt.Errorf("%w: %s is for CI/CD jobs, which authenticate with the fresh key they want certified; people use submit", approvals.ErrForbidden, methodWorkloadSubmit))
		return
	}
	// Every call checks the caller against the policy in force again, and
	// counts against the calls they may have at once.
	who, end, err := a.svc.BeginCall(who)
	if err != nil {
		fail(err)
		return
	}
	defer end()
	req, err := readAPIRequest(sess)
	if err != nil {
		fail(err)
		return
	}
	switch method {
	case methodWait:
		err = a.wait(ctx, who, req, enc)
	case methodWatch:
		err = a.watch(ctx, who, enc)
	default:
		var resp *apiResponse
		if resp, err = a.call(ctx, who, method, req); err == nil {
			resp.OK = true
			_ = enc.Encode(resp)
		}
	}
	if err != nil {
		fail(err)
		return
	}
	_ = sess.Exit(0)
}

// readAPIRequest reads and decodes one call's body.
func readAPIRequest(r io.Reader) (apiRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxAPIBody+1))
	if err != nil {
		return apiRequest{}, fmt.Errorf("read request: %w", err)
	}
	if len(body) > maxAPIBody {
		return apiRequest{}, fmt.Errorf("%w: request larger than %d bytes", approvals.ErrBadRequest, maxAPIBody)
	}
	return decodeAPIRequest(body)
}

func (a *apiServer) call(ctx context.Context, who approvals.Actor, method string, req apiRequest) (*apiResponse, error) {
	switch method {
	case methodWhoami:
		node := a.svc.Status()
		return &apiResponse{Person: who.Person, Groups: who.Groups, Key: ssh.FingerprintSHA256(who.Key), Node: &node}, nil
	case methodSubmit:
		r, err := a.svc.SubmitSigned(ctx, who, signedRequest(req))
		if err != nil {
			return nil, err
		}
		if !req.DryRun {
			a.metrics.submitted(r)
		}
		return &apiResponse{Request: r, CanApprove: a.svc.CanApprove(r)}, nil
	case methodApprove, methodDeny:
		decide := a.svc.ApproveSigned
		if method == methodDeny {
			decide = a.svc.DenySigned
		}
		r, err := decide(ctx, who, req.ID, signedDecision(req))
		if err != nil {
			return nil, err
		}
		a.metrics.decided(r)
		return &apiResponse{Request: r}, nil
	case methodCancel:
		r, err := a.svc.Cancel(ctx, who, req.ID)
		return &apiResponse{Request: r}, err
	case methodRevoke:
		r, err := a.svc.Revoke(ctx, who, req.ID, req.Serial, req.Reason)
		return &apiResponse{Request: r}, err
	case methodRelease:
		r, err := a.svc.Release(ctx, who, req.ID)
		return &apiResponse{Request: r}, err
	case methodGet:
		r, err := a.svc.Get(who, req.ID)
		if err != nil {
			return nil, err
		}
		return &apiResponse{Request: r, CanApprove: a.svc.CanApprove(r)}, nil
	case methodList:
		f := approvals.ListFilter{Limit: req.Limit, After: req.AfterID}
		for _, s := range req.States {
			f.States = append(f.States, approvals.State(s))
		}
		if req.Mine {
			f.Requester = who.Person
		}
		page, err := a.svc.List(who, f)
		if err != nil {
			return nil, err
		}
		return &apiResponse{Requests: page.Requests, Next: page.Next}, nil
	case methodAllowed:
		allowed, err := a.svc.Allowed(who)
		if err != nil {
			return nil, err
		}
		var rules []ruleSummary
		for _, r := range allowed {
			rules = append(rules, ruleSummary{
				Name: r.Name, Repos: r.Repos, Refs: r.Refs, Access: r.Access, AutoApprove: r.AutoApprove,
				Approvals: r.Approvals, DefaultTTL: time.Duration(r.DefaultTTL).String(), MaxTTL: time.Duration(r.MaxTTL).String(),
			})
		}
		return &apiResponse{Rules: rules}, nil
	}
	return nil, fmt.Errorf("%w: unknown method %q", approvals.ErrBadRequest, truncateMethod(method))
}

func truncateMethod(m string) string {
	if len(m) > 40 {
		return m[:40] + "..."
	}
	return m
}

// wait streams a request's state until it ends (issued, denied, expired,
// cancelled) or the caller hangs up.
func (a *apiServer) wait(ctx context.Context, who approvals.Actor, req apiRequest, enc *json.Encoder) error {
	r, err := a.svc.Get(who, req.ID)
	if err != nil {
		return err
	}
	after := req.After
	for {
		if r.Version > after {
			if err := enc.Encode(apiResponse{OK: true, Request: r, CanApprove: a.svc.CanApprove(r)}); err != nil {
				return nil
			}
			after = r.Version
		}
		if settled(r) {
			return nil
		}
		r, err = a.svc.Wait(ctx, who, req.ID, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// watch streams every change to requests the caller may see, after the
// pending ones as they stand.
func (a *apiServer) watch(ctx context.Context, who approvals.Actor, enc *json.Encoder) error {
	events := a.svc.Events(ctx, who)
	f := approvals.ListFilter{States: []approvals.State{approvals.StatePending}}
	for {
		page, err := a.svc.List(who, f)
		if err != nil {
			return err
		}
		for _, r := range page.Requests {
			if err := enc.Encode(apiResponse{OK: true, Request: r}); err != nil {
				return nil
			}
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-events:
			if !ok {
				return nil
			}
			if err := enc.Encode(apiResponse{OK: true, Request: r}); err != nil {
				return nil
			}
		}
	}
}

// refuse answers a failed call. A refusal the caller can act on is shown
// as it is; anything else (storage, raft, a bug) stays in the log, and the
// caller gets an ID to quote that finds it there.
func (a *apiServer) refuse(enc *json.Encoder, person, method string, err error) {
	a.metrics.apiError(method)
	code := errorCode(err)
	msg := err.Error()
	if public, hidden := internalMessages[code]; hidden {
		id := errorID()
		msg = public + " (id " + id + ")"
		a.logger.Error("api call failed", "id", id, "person", person, "method", truncateMethod(method), "code", code, "err", err)
	} else {
		a.logger.Info("api call refused", "person", person, "method", truncateMethod(method), "code", code, "err", err)
	}
	_ = enc.Encode(apiResponse{Error: msg, Code: code})
}

// requestStatement is what the requester signs for req.
func requestStatement(person string, req apiRequest) audit.RequestStatement {
	return signedRequest(req).Statement(person)
}

// decisionStatement is what an approver signs for a decision on r.
func decisionStatement(method, person string, r *approvals.Request, req apiRequest) audit.DecisionStatement {
	return signedDecision(req).Statement(method, person, r)
}

func signedRequest(req apiRequest) approvals.SignedRequest {
	return approvals.SignedRequest{Repo: req.Repo, Ref: req.Ref, Access: req.Access, TTL: req.TTL, Reason: req.Reason,
		PublicKey: req.PublicKey, Signature: req.Signature, DryRun: req.DryRun, RequestTTL: req.RequestTTL}
}

func signedDecision(req apiRequest) approvals.SignedDecision {
	return approvals.SignedDecision{TTL: req.TTL, Reason: req.Reason, Signature: req.Signature}
}
