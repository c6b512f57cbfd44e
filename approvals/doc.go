// Package approvals is the approval daemon's engine: the policy that says
// who may request what, the lifecycle of a request, and the durable state
// behind both.
//
// # Lifecycle
//
// A request asks for one grant (access on a repo at a ref or ref pattern)
// for a while, for a fresh public key:
//
//	                 approve (steps not all met yet)
//	                   ┌─────┐
//	                   ▼     │
//	submit ──┬────► pending ─┼─ approve that meets the last step ──► approved
//	         │               ├─ deny (an approver, with a reason) ──► denied
//	         │               ├─ cancel (the requester; offboarding) ─► cancelled
//	         │               └─ nobody decided by ExpiresAt ────────► expired
//	         └─ under an auto-approving rule ────────────────────────► approved
//
//	approved ── certificate issued ──► active ─┬─ ValidBefore passes ─────────► expired
//	                                           └─ revoke, release, offboarding ─► revoked
//
// Denied, cancelled, expired and approved are final. A rule's approval is
// a list of steps, all of which must be met: {G, n} needs n distinct people
// from group G. The certificate's lifetime is the requested TTL, shortened
// by any approver who asked for less, counted from the moment it is issued.
//
// # Invariants
//
//   - Durable before acknowledged. Every change is a command committed
//     through hashicorp/raft (log in bbolt, fsync'd) before the call that
//     made it returns, so nothing acknowledged is lost to a crash, SIGKILL
//     included.
//   - Audited before acknowledged. Each action goes to the Auditor before
//     the call reports success, and an issue before its certificate is
//     stored, so no certificate leaves without its audit entry.
//   - A serial is recorded before its certificate leaves. It is allocated
//     by a raft command, from a counter that only grows and stays below
//     2^63 (break-glass serials have the top bit), before the CA signs; the
//     signed certificate is audited and then stored by a second command,
//     and only then returned. No serial is ever handed out twice.
//   - Nothing vanishes. Requests are never deleted: ended requests, their
//     approvals, denials, serials and revocations stay queryable forever.
//   - One approver counts once. Approvals come from distinct people, each
//     filling at most one place in one step, even when in several groups.
//   - Nobody approves their own request, or denies it.
//   - One certificate per request. Approvals are applied one at a time by
//     the state machine, so of two approvers racing, exactly one meets the
//     last step, and only that one issues.
//
// # CI/CD jobs
//
// A CI/CD job is no person: it has no listed key, and proves who it is
// with its platform's OIDC ID token (package workload), under rules that
// name a workload instead of groups. It requests (SubmitWorkload) for the
// key it authenticated with, and follows that request (WaitWorkload);
// nothing else. Each token gets one request: the state remembers the
// tokens used (see useTokenTxn) until they could no longer be accepted.
//
// # Cluster
//
// With Options.Cluster the Service is one node of a raft cluster over
// mutual TLS (see forward.go). Every node takes every call: it checks the
// caller against its own policy and builds the command as a node on its
// own would, with everything the state machine needs in it; the leader
// commits it (a follower sends the encoded command, whose idempotency key
// makes sending it again harmless) and signs the certificates; every
// replica applies the same commands to the same state and writes the same
// audit log. A command decided under a policy that is not the cluster's
// is refused (ErrPolicyChanged), and a CI/CD token is used once in the
// whole cluster.
//
// The state lives in go-memdb (see schema.go), written only by the raft
// state machine. Reads take watch sets, so waiting for a change (Wait,
// Events) is pushed by the write, not polled.
package approvals
