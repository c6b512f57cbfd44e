package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWhoami(t *testing.T) {
	d := startInProcessDaemon(t, "")

	r := runJitssh(t, d.env("alice"), "whoami", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var w whoami
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &w))
	assert.Equal(t, "alice", w.Person)
	assert.Equal(t, []string{"dev"}, w.Groups)
	assert.Regexp(t, `^SHA256:`, w.Key)
	require.NotNil(t, w.Node, "the daemon says how it is")
	assert.Equal(t, "leader", w.Node.Role)
	assert.True(t, w.Node.Healthy)

	r = runJitssh(t, d.env("bob"), "whoami")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "person  bob\n")
	assert.Regexp(t, `daemon  127\.0\.0\.1:\d+ \(node \S+, leader\), healthy\n`, r.stdout)

	assertOneLineError(t, runJitssh(t, d.env("alice"), "whoami", "extra"), exitUsage, `unexpected argument "extra"`)
}
