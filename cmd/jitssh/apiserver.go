package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
)

// apiServer serves the daemon's API over SSH. People are identified by
// the plain public keys the policy lists; certificates identify nobody.
type apiServer struct {
	svc     *approvals.Service
	logger  *slog.Logger
	metrics *daemonMetrics
	srv     *gliderssh.Server
}

type apiCtxKey string

const personKey apiCtxKey = "jitssh-person"

// caller is the person behind a connection.
type caller struct {
	name   string
	groups []string
	key    ssh.PublicKey // the key that completed authentication
}

func newAPIServer(svc *approvals.Service, hostKey ssh.Signer, logger *slog.Logger, metrics *daemonMetrics) *apiServer {
	a := &apiServer{svc: svc, logger: logger, metrics: metrics}
	a.srv = &gliderssh.Server{
		Handler: a.handle,
		// Answers "would you accept this key?" only. The person is taken
		// from the key that then signed (below), never from an offer.
		PublicKeyHandler: func(_ gliderssh.Context, key gliderssh.PublicKey) bool {
			_, _, ok := svc.Policy().Identify(key)
			return ok
		},
		ServerConfigCallback: func(gliderssh.Context) *ssh.ServerConfig {
			return &ssh.ServerConfig{
				MaxAuthTries: 32,
				VerifiedPublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
					name, groups, ok := svc.Policy().Identify(key)
					if !ok {
						return nil, errors.New("unknown key")
					}
					return &ssh.Permissions{ExtraData: map[any]any{personKey: caller{name: name, groups: groups, key: key}}}, nil
				},
			}
		},
		PtyCallback:       func(gliderssh.Context, gliderssh.Pty) bool { return false },
		IdleTimeout:       10 * time.Minute,
		Version:           "jitssh-daemon",
		RequestHandlers:   map[string]gliderssh.RequestHandler{},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
		ChannelHandlers:   map[string]gliderssh.ChannelHandler{"session": gliderssh.DefaultSessionHandler},
	}
	a.srv.AddHostKey(hostKey)
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

func callerOf(ctx gliderssh.Context) (caller, bool) {
	conn, ok := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if !ok || conn.Permissions == nil {
		return caller{}, false
	}
	c, ok := conn.Permissions.ExtraData[personKey].(caller)
	return c, ok
}

func (a *apiServer) handle(sess gliderssh.Session) {
	ctx := sess.Context()
	enc := json.NewEncoder(sess)
	who, ok := callerOf(ctx)
	method := sess.RawCommand()
	fail := func(err error) {
		a.metrics.apiError(method)
		a.logger.Info("api call refused", "person", who.name, "method", method, "error", err.Error())
		_ = enc.Encode(apiResponse{Error: err.Error(), Code: errorCode(err)})
		_ = sess.Exit(1)
	}
	if !ok {
		fail(errors.New("unauthenticated"))
		return
	}
	var req apiRequest
	body, err := io.ReadAll(io.LimitReader(sess, maxAPIBody+1))
	if err != nil {
		fail(fmt.Errorf("read request: %w", err))
		return
	}
	if len(body) > maxAPIBody {
		fail(fmt.Errorf("%w: request larger than %d bytes", approvals.ErrBadRequest, maxAPIBody))
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(fmt.Errorf("%w: malformed request: %v", approvals.ErrBadRequest, err))
			return
		}
	}
	switch method {
	case methodWait:
		if err := a.wait(ctx, who, req, enc); err != nil {
			fail(err)
			return
		}
	case methodWatch:
		if err := a.watch(ctx, who, enc); err != nil {
			fail(err)
			return
		}
	default:
		resp, err := a.call(ctx, who, method, req)
		if err != nil {
			fail(err)
			return
		}
		resp.OK = true
		_ = enc.Encode(resp)
	}
	_ = sess.Exit(0)
}

func (a *apiServer) call(ctx context.Context, who caller, method string, req apiRequest) (*apiResponse, error) {
	switch method {
	case methodWhoami:
		return &apiResponse{Person: who.name, Groups: who.groups, Key: ssh.FingerprintSHA256(who.key)}, nil
	case methodSubmit:
		in, err := submitInput(req)
		if err != nil {
			return nil, err
		}
		stmt := requestStatement(who.name, req)
		if !req.DryRun {
			if err := audit.VerifyStatement(who.key, audit.NamespaceRequest, stmt.Message(), req.Signature); err != nil {
				return nil, fmt.Errorf("%w: the request must be signed with your own key: %v", approvals.ErrBadRequest, err)
			}
			in.Statement = string(stmt.Message())
		}
		r, err := a.svc.Submit(ctx, who.name, in)
		if err != nil {
			return nil, err
		}
		if !req.DryRun {
			a.metrics.submitted(r)
		}
		return &apiResponse{Request: r, CanApprove: a.canApprove(r)}, nil
	case methodApprove, methodDeny:
		in := approvals.DecisionInput{Reason: req.Reason, Signature: req.Signature}
		if req.TTL != "" {
			ttl, err := time.ParseDuration(req.TTL)
			if err != nil || ttl <= 0 {
				return nil, fmt.Errorf("%w: bad ttl %q", approvals.ErrBadRequest, req.TTL)
			}
			in.TTL = ttl
		}
		target, err := a.svc.Get(req.ID)
		if err != nil {
			return nil, err
		}
		if !a.canView(who, target) {
			return nil, hiddenRequest(req.ID)
		}
		stmt := decisionStatement(method, who.name, target, req)
		ns := audit.NamespaceApprove
		if method == methodDeny {
			ns = audit.NamespaceDeny
		}
		if err := audit.VerifyStatement(who.key, ns, stmt.Message(), req.Signature); err != nil {
			return nil, fmt.Errorf("%w: the decision must be signed with your own key: %v", approvals.ErrBadRequest, err)
		}
		in.Statement = string(stmt.Message())
		var r *approvals.Request
		if method == methodApprove {
			r, err = a.svc.Approve(ctx, who.name, req.ID, in)
		} else {
			r, err = a.svc.Deny(ctx, who.name, req.ID, in)
		}
		if err != nil {
			return nil, err
		}
		a.metrics.decided(r)
		return &apiResponse{Request: r}, nil
	case methodCancel:
		if err := a.mustView(who, req.ID); err != nil {
			return nil, err
		}
		r, err := a.svc.Cancel(ctx, who.name, req.ID)
		return &apiResponse{Request: r}, err
	case methodRevoke:
		if req.ID != "" {
			if err := a.mustView(who, req.ID); err != nil {
				return nil, err
			}
		}
		r, err := a.svc.Revoke(ctx, who.name, req.ID, req.Serial, req.Reason)
		if req.ID == "" && errors.Is(err, approvals.ErrForbidden) && !a.seesAll(who) {
			// Refused by serial: the caller is neither the requester nor
			// in a group the request needed, and sees only those, so the
			// certificate is one they may not know of.
			return nil, hiddenSerial(req.Serial)
		}
		return &apiResponse{Request: r}, err
	case methodRelease:
		if err := a.mustView(who, req.ID); err != nil {
			return nil, err
		}
		r, err := a.svc.Release(ctx, who.name, req.ID)
		return &apiResponse{Request: r}, err
	case methodGet:
		r, err := a.svc.Get(req.ID)
		if err != nil {
			return nil, err
		}
		if !a.canView(who, r) {
			return nil, hiddenRequest(req.ID)
		}
		return &apiResponse{Request: r, CanApprove: a.canApprove(r)}, nil
	case methodList:
		f := approvals.ListFilter{Limit: req.Limit}
		for _, s := range req.States {
			f.States = append(f.States, approvals.State(s))
		}
		if req.Mine {
			f.Requester = who.name
		}
		var out []*approvals.Request
		for _, r := range a.svc.List(f) {
			if a.canView(who, r) {
				out = append(out, r)
			}
		}
		return &apiResponse{Requests: out}, nil
	case methodAllowed:
		var rules []ruleSummary
		for _, r := range a.svc.Policy().Allowed(who.name) {
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

func submitInput(req apiRequest) (approvals.SubmitInput, error) {
	in := approvals.SubmitInput{Repo: req.Repo, Ref: req.Ref, Access: req.Access, Reason: req.Reason, Signature: req.Signature, DryRun: req.DryRun}
	if req.TTL != "" {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil {
			return in, fmt.Errorf("%w: bad ttl %q", approvals.ErrBadRequest, req.TTL)
		}
		in.TTL = ttl
	}
	if req.PublicKey != "" || !req.DryRun {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
		if err != nil {
			return in, fmt.Errorf("%w: bad public key: %v", approvals.ErrBadRequest, err)
		}
		in.PublicKey = key
	}
	return in, nil
}

// canView: people see their own requests; approvers and auditors see all.
func (a *apiServer) canView(who caller, r *approvals.Request) bool {
	if r.Requester == who.name {
		return true
	}
	for _, step := range r.Steps {
		if slices.Contains(who.groups, step.Group) {
			return true
		}
	}
	return a.seesAll(who)
}

// seesAll reports whether the person may see every request: auditors and
// approvers may.
func (a *apiServer) seesAll(who caller) bool {
	return slices.Contains(who.groups, "auditors") || a.isApprover(who)
}

// mustView refuses a request the person may not see exactly as it
// refuses an unknown one, and both before anything else about the call is
// checked, so that acting on someone else's request tells nobody that it
// exists or whose it is. Other errors looking it up are left for the call
// itself to report.
func (a *apiServer) mustView(who caller, id string) error {
	r, err := a.svc.Get(id)
	if errors.Is(err, approvals.ErrNotFound) {
		return hiddenRequest(id)
	}
	if err != nil || a.canView(who, r) {
		return nil
	}
	return hiddenRequest(id)
}

// hiddenRequest and hiddenSerial are the engine's answers for an unknown
// request ID and an unknown serial, word for word.
func hiddenRequest(id string) error {
	return fmt.Errorf("%w: no request %q", approvals.ErrNotFound, id)
}

func hiddenSerial(serial uint64) error {
	return fmt.Errorf("%w: no certificate with serial %d", approvals.ErrNotFound, serial)
}

// isApprover reports whether the person belongs to any group that
// approves under the current policy.
func (a *apiServer) isApprover(who caller) bool {
	for _, rule := range a.svc.Policy().Rules() {
		for _, step := range rule.Approvals {
			if slices.Contains(who.groups, step.Group) {
				return true
			}
		}
	}
	return false
}

// wait streams a request's state until it ends (issued, denied, expired,
// cancelled) or the caller hangs up.
func (a *apiServer) wait(ctx context.Context, who caller, req apiRequest, enc *json.Encoder) error {
	r, err := a.svc.Get(req.ID)
	if err != nil {
		return err
	}
	if !a.canView(who, r) {
		return hiddenRequest(req.ID)
	}
	after := req.After
	for {
		if r.Version > after {
			if err := enc.Encode(apiResponse{OK: true, Request: r, CanApprove: a.canApprove(r)}); err != nil {
				return nil
			}
			after = r.Version
		}
		if settled(r) {
			return nil
		}
		r, err = a.svc.Wait(ctx, req.ID, after)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// watch streams every change to requests the caller may see.
func (a *apiServer) watch(ctx context.Context, who caller, enc *json.Encoder) error {
	events := a.svc.Events(ctx)
	for _, r := range a.svc.List(approvals.ListFilter{States: []approvals.State{approvals.StatePending}}) {
		if a.canView(who, r) {
			if err := enc.Encode(apiResponse{OK: true, Request: r}); err != nil {
				return nil
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-events:
			if !ok {
				return nil
			}
			if a.canView(who, r) {
				if err := enc.Encode(apiResponse{OK: true, Request: r}); err != nil {
					return nil
				}
			}
		}
	}
}

// requestStatement is what the requester signed for req.
func requestStatement(person string, req apiRequest) audit.RequestStatement {
	return audit.RequestStatement{Kind: "request", Requester: person, Repo: req.Repo, Ref: req.Ref,
		Access: req.Access, TTL: req.TTL, Reason: req.Reason, PublicKey: req.PublicKey}
}

// decisionStatement is what an approver signs for a decision on r.
func decisionStatement(method, person string, r *approvals.Request, req apiRequest) audit.DecisionStatement {
	return audit.DecisionStatement{Kind: method, Request: r.ID, RequestSHA256: audit.StatementHash([]byte(r.Statement)),
		By: person, TTL: req.TTL, Reason: req.Reason}
}

// canApprove lists who may still approve r: members of its steps' groups,
// other than the requester and those who already approved.
func (a *apiServer) canApprove(r *approvals.Request) []string {
	if r == nil || r.State != approvals.StatePending {
		return nil
	}
	done := map[string]bool{r.Requester: true}
	for _, ap := range r.Approvals {
		done[ap.By] = true
	}
	var names []string
	p := a.svc.Policy()
	for _, step := range r.Steps {
		for _, m := range p.Members(step.Group) {
			if !done[m] {
				done[m] = true
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	return names
}
