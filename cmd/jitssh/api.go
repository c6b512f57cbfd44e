package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jitssh/jitssh/approvals"
)

// The approval daemon's API runs over SSH: each call is an exec request
// whose command is the method name, with one JSON object on stdin and one
// JSON object per line on stdout. A person is whoever holds the key that
// completed authentication; nothing in the body can change that.
const (
	methodWhoami  = "whoami"
	methodSubmit  = "submit"
	methodApprove = "approve"
	methodDeny    = "deny"
	methodCancel  = "cancel"
	methodRevoke  = "revoke"
	methodRelease = "release"
	methodGet     = "get"
	methodList    = "list"
	methodWait    = "wait"
	methodWatch   = "watch"
	methodAllowed = "allowed"
)

// maxAPIBody bounds one request body.
const maxAPIBody = 64 << 10

// apiRequest is every method's input; each uses the fields it needs.
type apiRequest struct {
	ID     string `json:"id,omitempty"`
	Serial uint64 `json:"serial,omitempty"`
	Repo   string `json:"repo,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Access string `json:"access,omitempty"`
	TTL    string `json:"ttl,omitempty"`
	// RequestTTL is submit's: how long the request may wait for a decision.
	RequestTTL string   `json:"request_ttl,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	PublicKey  string   `json:"public_key,omitempty"`
	Signature  string   `json:"signature,omitempty"`
	DryRun     bool     `json:"dry_run,omitempty"`
	After      uint64   `json:"after,omitempty"`
	States     []string `json:"states,omitempty"`
	Mine       bool     `json:"mine,omitempty"`
	Limit      int      `json:"limit,omitempty"`
	AfterID    string   `json:"after_id,omitempty"` // list: the Next of the page before
	Token      string   `json:"token,omitempty"`    // workload-submit: the CI/CD job's OIDC token
}

// apiResponse is every method's output.
type apiResponse struct {
	OK       bool                 `json:"ok"`
	Error    string               `json:"error,omitempty"`
	Code     string               `json:"code,omitempty"`
	Person   string               `json:"person,omitempty"`
	Key      string               `json:"key,omitempty"` // fingerprint of the key you authenticated with
	Groups   []string             `json:"groups,omitempty"`
	Request  *approvals.Request   `json:"request,omitempty"`
	Requests []*approvals.Request `json:"requests,omitempty"`
	Next     string               `json:"next,omitempty"` // list: the AfterID of the next page, when there may be one
	Rules    []ruleSummary        `json:"rules,omitempty"`
	// CanApprove names the people who may still approve Request.
	CanApprove []string `json:"can_approve,omitempty"`
	// Node is whoami's answer about the daemon that answered: its role in
	// the cluster, its leader, whether it takes writes.
	Node *approvals.NodeStatus `json:"node,omitempty"`
}

// ruleSummary tells a person what one rule lets them request.
type ruleSummary struct {
	Name        string           `json:"name"`
	Repos       []string         `json:"repos"`
	Refs        []string         `json:"refs"`
	Access      []string         `json:"access"`
	AutoApprove bool             `json:"auto_approve"`
	Approvals   []approvals.Step `json:"approvals,omitempty"`
	DefaultTTL  string           `json:"default_ttl"`
	MaxTTL      string           `json:"max_ttl"`
}

// settled reports whether a request has reached what a waiting requester
// waits for: a decision, and when approved, the certificate.
func settled(r *approvals.Request) bool {
	return r.State != approvals.StatePending && !r.Issuing()
}

// codeBadRequest is the code of input the daemon refuses as malformed or
// out of bounds; the CLI exits with exitUsage on it.
const codeBadRequest = "bad_request"

// codeInternal is the code of every failure that is not a refusal of the
// call: its detail stays in the daemon's log.
const codeInternal = "internal"

// errorCode maps the engine's sentinel errors to stable codes clients
// branch on.
func errorCode(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{
		{approvals.ErrNotFound, "not_found"},
		{approvals.ErrNotPending, "not_pending"},
		{approvals.ErrSelfApproval, "self_approval"},
		{approvals.ErrNotApprover, "not_approver"},
		{approvals.ErrAlreadyApproved, "already_approved"},
		{approvals.ErrNoRule, "no_rule"},
		{approvals.ErrBadRequest, codeBadRequest},
		{approvals.ErrTooManyPending, "too_many_pending"},
		{approvals.ErrForbidden, "forbidden"},
		{approvals.ErrNotActive, "not_active"},
		{approvals.ErrRateLimited, "rate_limited"},
		{approvals.ErrIssue, codeNotIssued},
		{approvals.ErrAudit, codeAuditUnavailable},
		{approvals.ErrPolicyChanged, codePolicyChanged},
		{approvals.ErrNoLeader, codeNoLeader},
		{approvals.ErrNotNode, codeNotNode},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return codeInternal
}

// codeNotIssued: the request is approved, and its certificate could not
// be issued yet; the daemon keeps trying. Why it could not is internal.
const codeNotIssued = "not_issued"

// codeAuditUnavailable: the change was applied, but the audit log cannot
// be written, so it is held, not acknowledged; it is recorded, and takes
// effect, once the log takes writes again.
const codeAuditUnavailable = "audit_unavailable"

// The cluster's refusals (see approvals.ErrPolicyChanged, ErrNoLeader,
// ErrNotNode): the node that took the call cannot have the cluster make
// the change now. What the client can do is ask again or ask another node;
// which peer or policy version is the operator's business.
const (
	codePolicyChanged = "policy_changed"
	codeNoLeader      = "no_leader"
	codeNotNode       = "not_node"
)

// internalMessages are what a client is told, in place of the error, for
// the codes whose detail stays in the log.
var internalMessages = map[string]string{
	codeInternal:         "internal error",
	codeAuditUnavailable: "audit log unavailable: your change is held until the daemon can record it; nothing depends on it until then",
	codeNotIssued:        "the request is approved, but its certificate is not issued yet; the daemon keeps trying, and waiting on the request picks it up",
	codePolicyChanged:    "this node's policy differs from the cluster's, so it decides nothing until an operator reloads it; nothing was changed: ask another node",
	codeNoLeader:         "the cluster has no leader this node can reach; the change was not acknowledged (reading the request tells whether it was made): try again shortly",
	codeNotNode:          "this node cannot reach the cluster's leader (a peer is not a node of this cluster); nothing was changed",
}

// errorID names one internal error in the log.
func errorID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// apiError is a failed call as the client sees it.
type apiError struct {
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

// ExitCode makes a refusal of the input itself (malformed, or outside
// the policy's bounds) a usage error, as if the CLI had caught it; every
// other refusal is an error. run reads it through cli.ExitCoder.
func (e *apiError) ExitCode() int {
	if e.Code == codeBadRequest {
		return exitUsage
	}
	return exitError
}

func decodeResponse(line []byte) (*apiResponse, error) {
	var r apiResponse
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("bad response from daemon: %w", err)
	}
	if !r.OK {
		return &r, &apiError{Code: r.Code, Message: r.Error}
	}
	return &r, nil
}
