package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/jitssh/jitssh/approvals"
)

func TestRequestStateWords(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		r           approvals.Request
		state, when string
	}{
		{"pending", approvals.Request{State: approvals.StatePending, CreatedAt: now.Add(-3 * time.Minute)}, "pending", "waiting 3m"},
		{"approved, serial recorded, certificate not yet stored",
			approvals.Request{State: approvals.StateApproved, Serial: 7, UpdatedAt: now.Add(-time.Second)}, "approved", "1s ago"},
		{"active", approvals.Request{State: approvals.StateApproved, Serial: 7, Certificate: "c", ValidBefore: now.Add(42 * time.Minute)}, "approved/active", "expires in 42m"},
		{"expired", approvals.Request{State: approvals.StateApproved, Serial: 7, Certificate: "c", ValidBefore: now.Add(-5 * time.Minute)}, "approved/expired", "expired 5m ago"},
		{"revoked", approvals.Request{State: approvals.StateApproved, Serial: 7, Certificate: "c", ValidBefore: now.Add(time.Hour),
			Revoked: &approvals.Decision{At: now.Add(-2 * time.Minute)}}, "approved/revoked", "revoked 2m ago"},
		{"denied", approvals.Request{State: approvals.StateDenied, UpdatedAt: now.Add(-time.Hour)}, "denied", "1h00m ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.state, displayState(&tt.r, now))
			assert.Equal(t, tt.when, relativeWhen(&tt.r, now))
		})
	}
}
