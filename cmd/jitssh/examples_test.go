package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
	"github.com/jitssh/jitssh/sshd"
)

// TestExampleConfigs keeps the configuration files the README shows valid,
// and checks that they mean what the README says.
func TestExampleConfigs(t *testing.T) {
	cfg, err := approvals.LoadConfig(filepath.Join("..", "..", "testdata", "server.yaml"))
	require.NoError(t, err)
	policy, err := approvals.NewPolicy(cfg)
	require.NoError(t, err)
	rule, err := policy.Match("alice", "payments/api", "refs/heads/release/2.0", principals.Write)
	require.NoError(t, err)
	assert.Equal(t, "release-branches", rule.Name)
	assert.Len(t, rule.Approvals, 2, "one lead AND one security reviewer")
	_, err = policy.Match("alice", "payments/api", "refs/heads/main", principals.Write)
	require.ErrorIs(t, err, approvals.ErrNoRule)
	rule, err = policy.Match("alice", "github/site", "refs/heads/main", principals.Write)
	require.NoError(t, err)
	assert.Equal(t, "github", rule.Profile, "issued as a GitHub certificate")
	assert.Equal(t, "alice-gh", policy.Account("alice", ca.ProfileGitHub))

	g, err := sshd.LoadServerConfig(filepath.Join("..", "..", "testdata", "git-server.yaml"))
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, time.Duration(g.Revocation.Refresh))
	assert.Equal(t, 4, g.Limits.MaxSessionsPerConn)

	up, err := sshd.LoadServerConfig(filepath.Join("..", "..", "testdata", "git-server-upstream.yaml"))
	require.NoError(t, err)
	require.NotNil(t, up.Upstream)
	assert.Empty(t, up.Repos, "every repository is the Git host's")
	assert.Equal(t, "gitea", up.Upstream.Profile)
	assert.Equal(t, "alice-gitea", up.Upstream.Accounts["alice"])
	assert.Equal(t, 5*time.Minute, time.Duration(up.Upstream.TTL))
}
