package ca_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
)

func TestKeyIDRoundTrip(t *testing.T) {
	tests := []struct{ person, request string }{
		{"alice", "req-01JD5Z"},
		// A workload's name holds its repository and ref, slashes and all.
		{"ci:dev:acme/payments@refs/heads/main", "req-01JD60"},
	}
	for _, tt := range tests {
		id := ca.KeyID(tt.person, tt.request)
		person, request := ca.ParseKeyID(id)
		require.Equal(t, tt.person, person, id)
		require.Equal(t, tt.request, request, id)
	}
}

func TestParseKeyIDWithoutRequest(t *testing.T) {
	person, request := ca.ParseKeyID("bob")
	require.Equal(t, "bob", person)
	require.Empty(t, request)
}
