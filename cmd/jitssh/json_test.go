package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJSONEverywhere: under --json (or JITSSH_JSON) a dry run answers
// {allowed, rule, approvals}, refused or not, and a failure is one JSON
// object on stderr with the daemon's code, never text.
func TestJSONEverywhere(t *testing.T) {
	d := startInProcessDaemon(t, "")
	env := d.env("alice")

	dry := func(t *testing.T, env []string, args ...string) (dryRunAnswer, cliResult) {
		t.Helper()
		r := runJitssh(t, env, append([]string{"request", "--dry-run", "--json"}, args...)...)
		var a dryRunAnswer
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &a), "stdout %q stderr %q", r.stdout, r.stderr)
		return a, r
	}
	a, r := dry(t, env, "--repo", "demo/app", "--branch", "main", "--access", "write")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, a.Allowed)
	assert.Equal(t, "write", a.Rule)
	assert.False(t, a.AutoApprove)
	assert.NotEmpty(t, a.Approvals)
	assert.Contains(t, r.stdout, `"approvals": [`)

	a, r = dry(t, env, "--repo", "demo/app", "--ref", "*", "--access", "read")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, a.AutoApprove)
	assert.Contains(t, r.stdout, `"approvals": []`, "none is an empty list, not null")

	a, r = dry(t, env, "--repo", "other/app", "--ref", "*", "--access", "read")
	assert.Equal(t, exitError, r.code)
	assert.False(t, a.Allowed)
	assert.Contains(t, a.Reason, "no rule")
	assert.Empty(t, r.stderr, "the answer is the output")

	jsonFailure := func(t *testing.T, r cliResult) jsonError {
		t.Helper()
		assert.Empty(t, r.stdout)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		var e jsonError
		require.NoError(t, json.Unmarshal([]byte(r.stderr), &e), r.stderr)
		assert.Equal(t, r.code, e.Exit)
		return e
	}
	e := jsonFailure(t, runJitssh(t, env, "requests", "show", "req-nope", "--json"))
	assert.Equal(t, "not_found", e.Code)
	assert.Contains(t, e.Error, `no request "req-nope"`)

	e = jsonFailure(t, runJitssh(t, append(env, "JITSSH_JSON=1"), "requets"))
	assert.Equal(t, "usage", e.Code)
	assert.Equal(t, exitUsage, e.Exit)

	// Every --json flag takes JITSSH_JSON, the CA's too.
	r = runJitssh(t, []string{"JITSSH_JSON=true"}, "ca", "pubkey", "--dir", filepath.Join(d.dir, "ca"))
	require.Equal(t, 0, r.code, r.stderr)
	var pub map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &pub), r.stdout)
}
