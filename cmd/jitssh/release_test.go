package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/approvals"
)

// TestReleaseNamesTheGrant: release without an ID ends the one live grant
// and says which; with several it asks; --all ends every live grant of
// the caller, in ssh-agent or written with --out, and names each.
func TestReleaseNamesTheGrant(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	bob := d.client(t, "bob")
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t))
	grant := func(args ...string) string {
		t.Helper()
		r := runJitssh(t, env, append([]string{"request", "--access", "read", "--ref", "*", "--ttl", "10m", "--reason", "x", "--json"}, args...)...)
		require.Equal(t, 0, r.code, r.stderr)
		var req approvals.Request
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &req))
		return req.ID
	}
	certState := func(id string) approvals.CertState {
		t.Helper()
		got, err := bob.call(methodGet, apiRequest{ID: id})
		require.NoError(t, err)
		return got.Request.CertState(time.Now())
	}

	app, other := grant("--repo", "demo/app"), grant("--repo", "demo/other")
	r := runJitssh(t, env, "release")
	assertOneLineError(t, r, exitUsage, "several live grants")
	assert.Contains(t, r.stderr, app+" (git:read:demo/app:*")
	assert.Contains(t, r.stderr, other+" (git:read:demo/other:*")
	assert.Contains(t, r.stderr, "jitssh release --all")
	assert.Equal(t, approvals.CertActive, certState(app))

	// Revoked by an approver, app's certificate is no grant any more:
	// the one left to release is other's.
	_, err := bob.call(methodRevoke, apiRequest{ID: app, Reason: "done"})
	require.NoError(t, err)
	r = runJitssh(t, env, "release")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, other+" released: git:read:demo/other:*, certificate serial", r.stdout[:len(other)+len(" released: git:read:demo/other:*, certificate serial")])
	assert.Contains(t, r.stdout, "removed from ssh-agent")
	assert.Equal(t, approvals.CertReleased, certState(other))

	// --all: one grant in the agent, one in a file; the revoked one still
	// sitting in the agent goes too.
	inAgent := grant("--repo", "demo/third")
	inFile := grant("--repo", "demo/other", "--out", filepath.Join(t.TempDir(), "key"))
	assertOneLineError(t, runJitssh(t, env, "release", "--all", inAgent), exitUsage, "not both")
	r = runJitssh(t, env, "release", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	assert.Contains(t, r.stdout, inAgent+" released: git:read:demo/third:*")
	assert.Contains(t, r.stdout, inFile+" released: git:read:demo/other:*")
	assert.Contains(t, r.stdout, app+" had already ended (git:read:demo/app:*): removed from ssh-agent")
	for _, id := range []string{inAgent, inFile} {
		assert.Equal(t, approvals.CertReleased, certState(id), id)
	}
	r = runJitssh(t, env, "status", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "[]\n", r.stdout)

	r = runJitssh(t, env, "release", "--all")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no live grants to release\n", r.stdout)
	r = runJitssh(t, env, "release")
	assertOneLineError(t, r, exitError, "no live jitssh grant in ssh-agent")
}
