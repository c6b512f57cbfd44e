package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuditPolicyHostRules: the auditor's copy of a policy knows which
// rules issue Git host certificates, and for whose account.
func TestAuditPolicyHostRules(t *testing.T) {
	trust, err := loadPolicies([]string{filepath.Join("..", "..", "testdata", "server.yaml")})
	require.NoError(t, err)
	require.Len(t, trust.versions, 1)
	rules := trust.versions[0].Rules
	require.NotNil(t, rules["github-write"].HostPrincipals)
	assert.Equal(t, []string{"alice-gh"}, rules["github-write"].HostPrincipals("alice"))
	assert.Nil(t, rules["github-write"].HostPrincipals("sam"), "sam lists no GitHub account")
	assert.Nil(t, rules["read-anything"].HostPrincipals, "a grant rule")
}
