package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// TestPrunedRequestsStillAnswer runs the approval engine with a retention
// of a day on a clock the test moves, prunes what ended, and checks that
// the pruned requests still answer: the engine's Get (what `jitssh
// requests show` calls) from the index of its audit log, under the same
// rule of who may see them, and `jitssh audit show` from the auditor's
// index; and that `jitssh audit verify` accepts the log with its
// state.pruned entry.
func TestPrunedRequestsStillAnswer(t *testing.T) {
	dir := t.TempDir()
	signers := map[string]ssh.Signer{"alice": auditSigner(t), "erin": auditSigner(t), "bob": auditSigner(t)}
	var people strings.Builder
	for _, name := range []string{"alice", "erin", "bob"} {
		groups := "[dev]"
		if name == "bob" {
			groups = "[dev, approvers]"
		}
		fmt.Fprintf(&people, "  - name: %s\n    groups: %s\n    keys: [%q]\n", name, groups, authorizedLine(signers[name].PublicKey())+" "+name)
	}
	config := filepath.Join(dir, "jitssh.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`listen: 127.0.0.1:2200
host_key: host_key
data_dir: data
ca_dir: ca
audit_log: audit.log
retention: 24h
people:
`+people.String()+`rules:
  - {name: read, groups: [dev], repos: [demo/app], refs: ["*"], access: [read], auto_approve: true}
  - name: feature
    groups: [dev]
    repos: [demo/app]
    refs: [refs/heads/feature/*]
    access: [write]
    approvals: [{group: approvers, count: 1}]
`), 0o600))
	cfg, err := approvals.LoadConfig(config)
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, cfg.Retention.D())
	policy, err := approvals.NewPolicy(cfg)
	require.NoError(t, err)
	clock := &fakeNow{t: time.Now().UTC().Truncate(time.Second)}
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	authority, err := ca.New(caPriv)
	require.NoError(t, err)
	authority.Now = clock.Now
	caPub := filepath.Join(dir, "ca.pub")
	require.NoError(t, os.WriteFile(caPub, []byte(authority.AuthorizedKey()+"\n"), 0o644))
	log, err := audit.Open(cfg.AuditLog, audit.Options{Journal: true})
	require.NoError(t, err)
	archive, err := openDaemonIndex(cfg.DataDir, cfg.AuditLog, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	svc, err := approvals.Open(approvals.Options{DataDir: cfg.DataDir, Policy: policy, Authority: authority, Audit: log,
		Now: clock.Now, Retention: cfg.Retention.D(), Archive: archive, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	ctx := context.Background()
	as := func(person string) approvals.Actor {
		t.Helper()
		who, err := svc.Authenticate(signers[person].PublicKey())
		require.NoError(t, err)
		return who
	}
	submit := func(person string, req apiRequest) *approvals.Request {
		t.Helper()
		key := auditSigner(t).PublicKey()
		req.PublicKey = authorizedLine(key) + " fresh-key"
		st := requestStatement(person, req)
		sig, err := audit.SignStatement(signers[person], audit.NamespaceRequest, st.Message())
		require.NoError(t, err)
		r, err := svc.Submit(ctx, as(person), approvals.SubmitInput{Repo: req.Repo, Ref: req.Ref, Access: req.Access, Reason: req.Reason,
			PublicKey: key, Signature: sig, Statement: string(st.Message())})
		require.NoError(t, err)
		return r
	}
	read := submit("alice", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", Reason: "look around"})
	require.NotZero(t, read.Serial)
	feature := submit("alice", apiRequest{Repo: "demo/app", Ref: "refs/heads/feature/x", Access: "write", Reason: "fix"})
	st := decisionStatement(methodApprove, "bob", feature, apiRequest{Reason: "ok"})
	sig, err := audit.SignStatement(signers["bob"], audit.NamespaceApprove, st.Message())
	require.NoError(t, err)
	feature, err = svc.Approve(ctx, as("bob"), feature.ID, approvals.DecisionInput{Reason: "ok", Signature: sig, Statement: string(st.Message())})
	require.NoError(t, err)
	require.NotZero(t, feature.Serial)
	_, err = svc.Release(ctx, as("alice"), feature.ID)
	require.NoError(t, err)
	erins := submit("erin", apiRequest{Repo: "demo/app", Ref: "*", Access: "read", Reason: "mine"})

	// Two hours on, the hour-long certificates expired or were released
	// over an hour ago: the state keeps the requests compacted (a listing, read
	// from memory, says so), and Get reads what compaction dropped back
	// from the index of the audit log.
	clock.add(2*time.Hour + time.Minute)
	_, err = svc.Prune()
	require.NoError(t, err)
	_, err = archive.CatchUp()
	require.NoError(t, err)
	page, err := svc.List(as("alice"), approvals.ListFilter{})
	require.NoError(t, err)
	require.Len(t, page.Requests, 2)
	for _, want := range []*approvals.Request{feature, read} {
		listed := page.Requests[0]
		page.Requests = page.Requests[1:]
		require.Equal(t, want.ID, listed.ID)
		assert.True(t, listed.Compacted)
		assert.Empty(t, listed.Certificate)
		got, err := svc.Get(as("alice"), want.ID)
		require.NoError(t, err)
		assert.False(t, got.Compacted || got.Archived)
		assert.Equal(t, want.Statement, got.Statement)
		assert.Equal(t, want.Signature, got.Signature)
		assert.Equal(t, want.PublicKey, got.PublicKey)
		assert.Equal(t, want.Certificate, got.Certificate)
		require.Len(t, got.Approvals, len(want.Approvals))
		for i, a := range want.Approvals {
			assert.Equal(t, a.Statement, got.Approvals[i].Statement)
			assert.Equal(t, a.Signature, got.Approvals[i].Signature)
		}
	}

	// A day past the certificates' hour, and the released one's hour on
	// the KRL: every request ended more than the retention ago.
	clock.add(25 * time.Hour)
	n, err := svc.Prune()
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = archive.CatchUp()
	require.NoError(t, err)

	for _, tc := range []struct {
		who, id string
		seen    bool
	}{
		{"alice", read.ID, true},
		{"alice", feature.ID, true},
		{"bob", feature.ID, true}, // an approver sees every request
		{"bob", erins.ID, true},
		{"erin", erins.ID, true},
		{"erin", read.ID, false}, // not hers, and she approves nothing
		{"alice", erins.ID, false},
	} {
		r, err := svc.Get(as(tc.who), tc.id)
		if !tc.seen {
			require.ErrorIs(t, err, approvals.ErrNotFound, "%s must not see %s", tc.who, tc.id)
			continue
		}
		require.NoError(t, err, "%s sees %s", tc.who, tc.id)
		assert.True(t, r.Archived)
		assert.Equal(t, tc.id, r.ID)
	}
	r, err := svc.Get(as("alice"), feature.ID)
	require.NoError(t, err)
	assert.Equal(t, approvals.StateApproved, r.State)
	assert.Equal(t, feature.Serial, r.Serial)
	require.Len(t, r.Approvals, 1)
	assert.Equal(t, "bob", r.Approvals[0].By)
	require.NotNil(t, r.Revoked, "released")
	assert.Equal(t, "alice", r.Revoked.By)
	_, err = svc.Get(as("alice"), strings.Replace(read.ID, read.ID[len(read.ID)-1:], "Z", 1))
	require.ErrorIs(t, err, approvals.ErrNotFound)

	require.NoError(t, svc.Close())
	require.NoError(t, archive.Close())
	require.NoError(t, log.Close())
	data, err := os.ReadFile(cfg.AuditLog)
	require.NoError(t, err)
	require.Contains(t, string(data), `"kind":"state.pruned"`)

	res := runJitssh(t, nil, "audit", "show", "--log", cfg.AuditLog, strconv.FormatUint(feature.Serial, 10))
	require.Equal(t, 0, res.code, res.stderr)
	for _, want := range []string{"state", "released", feature.ID, "approve", "bob"} {
		assert.Contains(t, res.stdout, want)
	}
	res = runJitssh(t, nil, "audit", "verify", "--log", cfg.AuditLog, "--ca", caPub, "--people", config)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "checked: 3 requests, 1 approvals, 0 denials, 3 certificates issued")
}
