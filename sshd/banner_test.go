package sshd

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/crypto/ssh"
)

func TestCertRefusalBanner(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cert := &ssh.Certificate{
		Serial:          42,
		ValidAfter:      uint64(now.Add(-2 * time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(-90 * time.Minute).Unix()),
		ValidPrincipals: []string{"git:read:demo/app:*"},
	}
	many := *cert
	many.ValidPrincipals = []string{"git:read:a/b:*", "git:read:a/c:*", "git:read:a/d:*", "git:read:a/e:*", "git:read:a/f:*"}
	hostile := *cert
	hostile.ValidPrincipals = []string{"git:read:demo/app:\x1b[2J*"}
	tests := []struct {
		name string
		cert *ssh.Certificate
		err  error
		want string
	}{
		{"expired", cert, fmt.Errorf("%w: valid before 1", ErrExpired),
			"jitssh: not granted: certificate serial 42 (git:read:demo/app:*) expired 1h30m0s ago, at 2026-05-01T10:30:00Z; request a new grant\n"},
		{"not yet valid", cert, ErrNotYetValid,
			"jitssh: refused: certificate serial 42 (git:read:demo/app:*) is valid only from 2026-05-01T10:00:00Z; is this machine's clock right?\n"},
		{"revoked", cert, fmt.Errorf("%w: serial 42", ErrRevoked),
			"jitssh: refused: certificate serial 42 (git:read:demo/app:*) has been revoked\n"},
		{"many grants", &many, ErrRevoked,
			"jitssh: refused: certificate serial 42 (git:read:a/b:*, git:read:a/c:*, git:read:a/d:* and 2 more) has been revoked\n"},
		{"control characters", &hostile, ErrRevoked,
			"jitssh: refused: certificate serial 42 (git:read:demo/app:?[2J*) has been revoked\n"},
		// Nothing the holder could act on, or that the certificate does
		// not itself say, is explained.
		{"another CA", cert, ErrUntrustedCA, ""},
		{"bad signature", cert, ErrBadSignature, ""},
		{"source address", cert, ErrSourceAddress, ""},
		{"revocation unknown", cert, ErrRevocationUnknown, ""},
		{"no grants", cert, ErrNoGrants, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, certRefusalBanner(tt.cert, tt.err, now))
		})
	}
}
