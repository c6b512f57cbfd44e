package main

import (
	"encoding/json"
	"fmt"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
)

// methodWorkloadSubmit is the one call a CI/CD job makes. It connects with
// the fresh key it wants certified, nobody's key in the policy, and sends
// its platform's OIDC token in the body; the daemon checks the token and
// certifies exactly the key that authenticated, which the job has thereby
// shown it holds. The answer is a stream like wait's: the request, then
// each change until it is settled.
const methodWorkloadSubmit = "workload-submit"

const workloadKey apiCtxKey = "jitssh-workload-key"

// mayBeWorkload reports whether a key nobody is listed for may connect as
// a CI/CD job: only while the policy trusts a token issuer, and only a
// plain key, which is what gets certified.
func mayBeWorkload(svc *approvals.Service, key ssh.PublicKey) bool {
	if _, isCert := key.(*ssh.Certificate); isCert {
		return false
	}
	return svc.Policy().AcceptsWorkloads()
}

// workloadKeyOf is the key a CI/CD job's connection authenticated with.
func workloadKeyOf(ctx gliderssh.Context) (ssh.PublicKey, bool) {
	conn, ok := ctx.Value(gliderssh.ContextKeyConn).(*ssh.ServerConn)
	if !ok || conn.Permissions == nil {
		return nil, false
	}
	key, ok := conn.Permissions.ExtraData[workloadKey].(ssh.PublicKey)
	return key, ok
}

// handleWorkload serves a connection whose key nobody is listed for: it
// may call workload-submit, and nothing else.
func (a *apiServer) handleWorkload(sess gliderssh.Session, key ssh.PublicKey, method string) {
	ctx := sess.Context()
	enc := json.NewEncoder(sess)
	label := "workload " + ssh.FingerprintSHA256(key)
	fail := func(err error) {
		a.refuse(enc, label, method, err)
		_ = sess.Exit(1)
	}
	if method != methodWorkloadSubmit {
		fail(fmt.Errorf("%w: the key %s is not listed for anyone in the daemon's policy: ask its admin to add it to your entry under people (a key nobody is listed for may only ask for a CI/CD workload certificate)",
			approvals.ErrForbidden, ssh.FingerprintSHA256(key)))
		return
	}
	req, err := readAPIRequest(sess)
	if err != nil {
		fail(err)
		return
	}
	in := approvals.WorkloadInput{Token: req.Token, Repo: req.Repo, Ref: req.Ref, Access: req.Access, Reason: req.Reason}
	if req.TTL != "" {
		if in.TTL, err = time.ParseDuration(req.TTL); err != nil || in.TTL <= 0 {
			fail(fmt.Errorf("%w: bad ttl %q", approvals.ErrBadRequest, req.TTL))
			return
		}
	}
	who := approvals.Actor{Key: key}
	r, err := a.svc.SubmitWorkload(ctx, who, in)
	if err != nil {
		fail(err)
		return
	}
	a.metrics.submitted(r)
	a.logger.Info("workload request", "id", r.ID, "requester", r.Requester, "rule", r.Rule, "state", string(r.State))
	for {
		if err := enc.Encode(apiResponse{OK: true, Request: r}); err != nil || settled(r) {
			_ = sess.Exit(0)
			return
		}
		r, err = a.svc.WaitWorkload(ctx, who, r.ID, r.Version)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
	}
}
