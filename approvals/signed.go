package approvals

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/audit"
)

// People sign what they ask for and what they decide with the key they
// authenticated with (see audit.RequestStatement). The Service checks
// those signatures itself, so that every front-end checks them the same
// way, and stores each with the exact message it signs.

// SignedRequest is a request for access as its requester sent and signed
// it: every field in the spelling the signature covers.
type SignedRequest struct {
	Repo      string
	Ref       string
	Access    string
	TTL       string // as asked, e.g. "30m"; empty takes the rule's default
	Reason    string
	PublicKey string // the fresh key to certify, authorized_keys form
	Signature string // armored SSHSIG, namespace audit.NamespaceRequest
	DryRun    bool   // check and answer only: needs no signature, stores nothing
	// RequestTTL is how long the request may wait for a decision, e.g.
	// "15m"; empty takes the daemon's request_timeout. It only shortens a
	// wait, so it is not part of what the requester signs.
	RequestTTL string
}

// Statement is what person signs to make the request.
func (sr SignedRequest) Statement(person string) audit.RequestStatement {
	return audit.RequestStatement{Kind: "request", Requester: person, Repo: sr.Repo, Ref: sr.Ref,
		Access: sr.Access, TTL: sr.TTL, Reason: sr.Reason, PublicKey: sr.PublicKey}
}

// SubmitSigned checks that sr is signed by the key who authenticated with
// and submits it (see Submit). A dry run needs no signature.
func (s *Service) SubmitSigned(ctx context.Context, who Actor, sr SignedRequest) (*Request, error) {
	in := SubmitInput{Repo: sr.Repo, Ref: sr.Ref, Access: sr.Access, Reason: sr.Reason, Signature: sr.Signature, DryRun: sr.DryRun}
	if sr.TTL != "" {
		ttl, err := time.ParseDuration(sr.TTL)
		if err != nil {
			return nil, fmt.Errorf("%w: bad ttl %q", ErrBadRequest, sr.TTL)
		}
		in.TTL = ttl
	}
	if sr.RequestTTL != "" {
		d, err := time.ParseDuration(sr.RequestTTL)
		if err != nil {
			return nil, fmt.Errorf("%w: bad request ttl %q", ErrBadRequest, sr.RequestTTL)
		}
		in.RequestTTL = d
	}
	if sr.PublicKey != "" || !sr.DryRun {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(sr.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("%w: bad public key: %v", ErrBadRequest, err)
		}
		in.PublicKey = key
	}
	if !sr.DryRun {
		msg := sr.Statement(who.Person).Message()
		if err := verifySigned(who, audit.NamespaceRequest, msg, sr.Signature); err != nil {
			return nil, fmt.Errorf("%w: the request must be signed with your own key: %v", ErrBadRequest, err)
		}
		in.Statement = string(msg)
	}
	return s.Submit(ctx, who, in)
}

// SignedDecision is an approval or denial as its maker sent and signed
// it.
type SignedDecision struct {
	TTL       string // approvals only: a shorter grant, e.g. "30m"; empty leaves it
	Reason    string
	Signature string // armored SSHSIG, namespace audit.NamespaceApprove or NamespaceDeny
}

// Decision kinds, as the signed statement names them.
const (
	KindApprove = "approve"
	KindDeny    = "deny"
)

// Statement is what person signs to decide (kind KindApprove or KindDeny)
// on r: it names r by ID and by the hash of its requester's statement, so
// it cannot be moved to another request.
func (sd SignedDecision) Statement(kind, person string, r *Request) audit.DecisionStatement {
	return audit.DecisionStatement{Kind: kind, Request: r.ID, RequestSHA256: audit.StatementHash([]byte(r.Statement)),
		By: person, TTL: sd.TTL, Reason: sd.Reason}
}

// ApproveSigned checks that sd is signed by the key who authenticated
// with and approves request id (see Approve).
func (s *Service) ApproveSigned(ctx context.Context, who Actor, id string, sd SignedDecision) (*Request, error) {
	in, err := s.signedDecision(who, KindApprove, audit.NamespaceApprove, id, sd)
	if err != nil {
		return nil, err
	}
	return s.Approve(ctx, who, id, in)
}

// DenySigned checks that sd is signed by the key who authenticated with
// and denies request id (see Deny).
func (s *Service) DenySigned(ctx context.Context, who Actor, id string, sd SignedDecision) (*Request, error) {
	in, err := s.signedDecision(who, KindDeny, audit.NamespaceDeny, id, sd)
	if err != nil {
		return nil, err
	}
	return s.Deny(ctx, who, id, in)
}

func (s *Service) signedDecision(who Actor, kind, namespace, id string, sd SignedDecision) (DecisionInput, error) {
	in := DecisionInput{Reason: sd.Reason, Signature: sd.Signature}
	if sd.TTL != "" {
		ttl, err := time.ParseDuration(sd.TTL)
		if err != nil || ttl <= 0 {
			return in, fmt.Errorf("%w: bad ttl %q", ErrBadRequest, sd.TTL)
		}
		in.TTL = ttl
	}
	target, err := s.Get(who, id)
	if err != nil {
		return in, err
	}
	msg := sd.Statement(kind, who.Person, target).Message()
	if err := verifySigned(who, namespace, msg, sd.Signature); err != nil {
		return in, fmt.Errorf("%w: the decision must be signed with your own key: %v", ErrBadRequest, err)
	}
	in.Statement = string(msg)
	return in, nil
}

// verifySigned checks a statement signature by who's key, bounding the
// signature before it is parsed.
func verifySigned(who Actor, namespace string, msg []byte, sig string) error {
	if who.Key == nil {
		return fmt.Errorf("%s did not authenticate with a key", who.Person)
	}
	if len(sig) > MaxSignatureLen {
		return fmt.Errorf("signature is %d bytes; at most %d", len(sig), MaxSignatureLen)
	}
	return audit.VerifyStatement(who.Key, namespace, msg, sig)
}
