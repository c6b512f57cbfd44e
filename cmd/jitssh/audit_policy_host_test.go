package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/audit"
)

// TestAuditPolicyHostRules: the auditor's copy of a policy knows which
// rules issue Git host certificates, and for whose account.
func TestAuditPolicyHostRules(t *testing.T) {
	trust, err := loadPolicies([]string{filepath.Join("..", "..", "testdata", "server.yaml")})
	require.NoError(t, err)
	require.Len(t, trust.versions, 1)
	rules := trust.versions[0].Rules
	require.NotNil(t, rules["github-write"].HostCert)
	shape, ok := rules["github-write"].HostCert("alice")
	require.True(t, ok)
	assert.Equal(t, audit.HostCert{Principals: []string{"alice-gh"}, Extensions: map[string]string{"login@github.com": "alice-gh"}}, shape)
	_, ok = rules["github-write"].HostCert("sam")
	assert.False(t, ok, "sam lists no GitHub account")
	assert.Nil(t, rules["read-anything"].HostCert, "a grant rule")
}
