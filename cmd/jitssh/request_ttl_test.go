package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/approvals"
)

// TestRequestTTLFlag: --request-ttl gives the request its own time to
// wait, within the daemon's request_timeout, and a bad value is a usage
// error that files nothing.
func TestRequestTTLFlag(t *testing.T) {
	needTool(t, "ssh-agent")
	d := startInProcessDaemon(t, "")
	env := append(d.env("alice"), "SSH_AUTH_SOCK="+newAgent(t))
	args := []string{"request", "--repo", "demo/app", "--branch", "feature/t", "--access", "write", "--reason", "x", "--no-wait", "--json"}

	before := time.Now()
	r := runJitssh(t, env, append(args, "--request-ttl", "5m")...)
	require.Equal(t, 0, r.code, r.stderr)
	var req approvals.Request
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &req))
	assert.WithinDuration(t, before.Add(5*time.Minute), req.ExpiresAt, 30*time.Second)

	for _, tt := range []struct{ value, want string }{
		{"10", "a duration needs a unit"},
		{"0s", "a request needs a positive time to wait"},
	} {
		text := args[: len(args)-1 : len(args)-1] // without --json: the error as text
		assertOneLineError(t, runJitssh(t, env, append(text, "--request-ttl", tt.value)...), exitUsage, tt.want)
	}
	r = runJitssh(t, env, append(args, "--request-ttl", "48h")...)
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, "longer than the 1h0m0s a request may wait here (request_timeout)")

	list, err := d.client(t, "alice").call(methodList, apiRequest{Mine: true})
	require.NoError(t, err)
	assert.Len(t, list.Requests, 1, "refused flags filed nothing")
}
