package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		{"released", approvals.Request{State: approvals.StateApproved, Serial: 7, Certificate: "c", ValidBefore: now.Add(time.Hour),
			Revoked: &approvals.Decision{At: now.Add(-3 * time.Minute), Release: true}}, "approved/released", "released 3m ago"},
		{"denied", approvals.Request{State: approvals.StateDenied, UpdatedAt: now.Add(-time.Hour)}, "denied", "1h00m ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.state, displayState(&tt.r, now))
			assert.Equal(t, tt.when, relativeWhen(&tt.r, now))
		})
	}
}

func TestWaitingLineFitsTheWidth(t *testing.T) {
	created := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r := &approvals.Request{ID: "req-01JTESTAAAAAAAAAAAAAAAAAAA", State: approvals.StatePending, CreatedAt: created,
		Steps: []approvals.Step{{Group: "approvers", Count: 2}}, Approvals: []approvals.Approval{{By: "bob"}}}
	who := []string{"bob", "carol", "dave"}
	now := created.Add(75 * time.Second)
	full := "req-01JTESTAAAAAAAAAAAAAAAAAAA waiting for approval: 1 approval(s) so far, needs 2 from approvers (bob, carol, dave can approve); waited 1m15s"
	for _, tt := range []struct {
		width int
		want  string
	}{
		{0, full}, // not a terminal: the whole line
		{200, full},
		{utf8.RuneCountInString(full), full},
		{120, "req-01JTESTAAAAAAAAAAAAAAAAAAA waiting for approval: 1 so far, needs 2 from approvers; waited 1m15s"},
		{77, "req-01JTESTAAAAAAAAAAAAAAAAAAA: 1/2 approvals; 1m15s"},
		{40, "req-01JTESTAAAAAAAAAAAAAAAAAAA: 1/2 app…"},
		{1, "…"},
		{-3, full},
	} {
		t.Run(strconv.Itoa(tt.width), func(t *testing.T) {
			got := waitingLine(r, who, now, tt.width)
			assert.Equal(t, tt.want, got)
		})
	}
	for width := 1; width <= 200; width++ {
		got := waitingLine(r, who, now, width)
		assert.LessOrEqual(t, utf8.RuneCountInString(got), width, "width %d: %q", width, got)
	}
}

func TestTerminalWidth(t *testing.T) {
	for _, tt := range []struct {
		columns string
		want    int
	}{
		{"", 80}, {"132", 132}, {"abc", 80}, {"-5", 80}, {"0", 80},
	} {
		t.Run(tt.columns, func(t *testing.T) {
			t.Setenv("COLUMNS", tt.columns)
			assert.Equal(t, tt.want, terminalWidth(&strings.Builder{}))
		})
	}
}

var ansi = regexp.MustCompile("\033\\[[0-9;]*m")

// TestRequestsTableAlignsWithColour: on a terminal the STATE column is
// coloured, and every column still starts where it does without colour.
func TestRequestsTableAlignsWithColour(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	steps := []approvals.Step{{Group: "approvers", Count: 2}}
	requests := []*approvals.Request{
		{ID: "req-1", Requester: "alice", Grant: "git:write:demo/app:refs/heads/main", State: approvals.StatePending, CreatedAt: now.Add(-time.Minute), Steps: steps},
		{ID: "req-2", Requester: "bob", Grant: "git:read:demo/app:*", State: approvals.StateApproved, Serial: 3, Certificate: "c",
			ValidBefore: now.Add(time.Hour), UpdatedAt: now},
		{ID: "req-3", Requester: "carol", Grant: "git:read:demo/app:*", State: approvals.StateDenied, UpdatedAt: now.Add(-time.Hour)},
		{ID: "req-4", Requester: "dave", Grant: "git:read:x:*", State: approvals.StateCancelled, UpdatedAt: now.Add(-time.Hour)},
		{ID: "req-5", Requester: "eve\033[2J", Grant: "git:read:x:*", State: approvals.StateExpired, UpdatedAt: now.Add(-time.Hour)},
	}
	var plain, coloured strings.Builder
	tab := requestsTable(requests, now)
	require.NoError(t, tab.write(&plain, false))
	require.NoError(t, tab.write(&coloured, true))
	assert.Contains(t, coloured.String(), "\033[32mapproved/active\033[0m")
	assert.Contains(t, coloured.String(), "\033[33mpending\033[0m")
	assert.Contains(t, coloured.String(), "\033[31mdenied\033[0m")
	assert.NotContains(t, plain.String(), "\033")
	assert.Equal(t, plain.String(), ansi.ReplaceAllString(coloured.String(), ""), "colour moved the columns")
	assert.Contains(t, plain.String(), `eve\u001b[2J`, "a requester's control characters reached the terminal")

	// Each column starts at the same place on every line.
	lines := strings.Split(strings.TrimSuffix(plain.String(), "\n"), "\n")
	head := lines[0]
	for _, col := range []string{"REQUESTER", "GRANT", "STATE", "APPROVALS", "WHEN"} {
		at := strings.Index(head, col)
		for _, line := range lines[1:] {
			require.Greater(t, len(line), at, line)
			assert.Equal(t, byte(' '), line[at-1], "%s: %q", col, line)
			assert.NotEqual(t, byte(' '), line[at], "%s: %q", col, line)
		}
	}
}
