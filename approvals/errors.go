package approvals

import "errors"

// Errors callers branch on. Every error the Service returns for a refused
// call wraps one of them, with a message that can be shown to the user as
// it is.
var (
	// ErrNotFound: no request has that ID, or no certificate that serial.
	ErrNotFound = errors.New("not found")
	// ErrNotPending: the request has ended (approved, denied, expired or
	// cancelled), so it can no longer be approved, denied or cancelled.
	ErrNotPending = errors.New("request is not pending")
	// ErrSelfApproval: a requester tried to approve or deny their own
	// request.
	ErrSelfApproval = errors.New("nobody approves their own request")
	// ErrNotApprover: the person is in none of the groups whose approval
	// the request needs.
	ErrNotApprover = errors.New("not an approver of this request")
	// ErrAlreadyApproved: the person has approved this request already; one
	// approver counts once.
	ErrAlreadyApproved = errors.New("already approved by this person")
	// ErrNoRule: no policy rule lets this person request this access.
	ErrNoRule = errors.New("not allowed by policy")
	// ErrBadRequest: the input is malformed or out of bounds (repo, ref,
	// access, TTL, reason, key).
	ErrBadRequest = errors.New("bad request")
	// ErrTooManyPending: the requester has as many pending requests as the
	// policy allows.
	ErrTooManyPending = errors.New("too many pending requests")
	// ErrForbidden: the person may not do this (an unknown person, someone
	// else's request, a revocation by someone who is neither the requester
	// nor one of the request's approvers).
	ErrForbidden = errors.New("forbidden")
	// ErrNotActive: the request has no live certificate to revoke or
	// release: none was issued, or it expired or was revoked already.
	ErrNotActive = errors.New("no active certificate")
	// ErrIssue: the request is approved but its certificate could not be
	// issued yet; the Service keeps retrying in the background.
	ErrIssue = errors.New("certificate not issued")
	// ErrNoAccount: the request's rule issues certificates for a Git
	// host's accounts, and the policy lists none for the requester there.
	ErrNoAccount = errors.New("no Git host account")
	// ErrInvalidConfig is wrapped by every configuration error (see
	// ConfigError).
	ErrInvalidConfig = errors.New("invalid config")
	// ErrClosed: the Service has been closed.
	ErrClosed = errors.New("approvals service closed")
)
