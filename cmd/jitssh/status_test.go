package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatusAsksTheDaemon: a certificate revoked or released while it sits
// in ssh-agent is shown as such, not with time left to use; without the
// daemon, status still lists what the agent holds and says it could not
// check.
func TestStatusAsksTheDaemon(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t))
	grant := func(repo string) string {
		t.Helper()
		r := runJitssh(t, env, "request", "--repo", repo, "--access", "read", "--ref", "*", "--ttl", "10m", "--reason", "x", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var req struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &req))
		return req.ID
	}
	status := func(env []string) (map[string]liveCert, string) {
		t.Helper()
		r := runJitssh(t, env, "status", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var certs []liveCert
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &certs))
		byID := map[string]liveCert{}
		for _, c := range certs {
			byID[c.Request] = c
		}
		return byID, r.stderr
	}
	revoked, released, live := grant("demo/app"), grant("demo/other"), grant("demo/third")
	_, err := d.client(t, "bob").call(methodRevoke, apiRequest{ID: revoked, Reason: "leaked"})
	require.NoError(t, err)
	_, err = d.client(t, "alice").call(methodRelease, apiRequest{ID: released})
	require.NoError(t, err)

	got, stderr := status(env)
	require.Len(t, got, 3, "ended certificates stay in the agent until their lifetime ends")
	assert.Empty(t, stderr)
	assert.Equal(t, "revoked", got[revoked].State)
	assert.Equal(t, "-", got[revoked].Left)
	assert.Equal(t, "released", got[released].State)
	assert.Equal(t, "active", got[live].State)
	assert.NotEqual(t, "-", got[live].Left)

	r := runJitssh(t, env, "status")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, revoked+`\s+\d+\s+revoked\s`, r.stdout)

	offline := append(env[:len(env):len(env)], "JITSSH_SERVER=127.0.0.1:1")
	got, stderr = status(offline)
	require.Len(t, got, 3)
	for id, c := range got {
		assert.Equal(t, "unknown", c.State, id)
	}
	assert.Contains(t, stderr, "could not ask the daemon whether these grants were revoked")
}
