package approvals

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRequestSatisfied(t *testing.T) {
	r := &Request{Steps: []Step{{"leads", 1}, {"security", 1}}}
	assert.False(t, r.Satisfied())
	r.Approvals = []Approval{{By: "pat", Groups: []string{"leads", "security"}}}
	assert.False(t, r.Satisfied())
	r.Approvals = append(r.Approvals, Approval{By: "lee", Groups: []string{"leads"}})
	assert.True(t, r.Satisfied())
}

func TestParseState(t *testing.T) {
	for _, s := range []string{"pending", "approved", "denied", "expired", "cancelled"} {
		st, err := ParseState(s)
		assert.NoError(t, err)
		assert.Equal(t, State(s), st)
	}
	_, err := ParseState("Pending")
	assert.ErrorIs(t, err, ErrBadRequest)
}

func TestRequestCloneIsDeep(t *testing.T) {
	r := &Request{
		Steps:     []Step{{"approvers", 1}},
		Approvals: []Approval{{By: "bob", Groups: []string{"approvers"}}},
		Decision:  &Decision{By: "bob"},
		Revoked:   &Decision{By: "carol"},
	}
	c := r.clone()
	c.Steps[0].Count = 9
	c.Approvals[0].Groups[0] = "x"
	c.Decision.By = "x"
	c.Revoked.By = "x"
	assert.Equal(t, 1, r.Steps[0].Count)
	assert.Equal(t, "approvers", r.Approvals[0].Groups[0])
	assert.Equal(t, "bob", r.Decision.By)
	assert.Equal(t, "carol", r.Revoked.By)
}

func TestCertState(t *testing.T) {
	issued := &Request{Certificate: "c", ValidBefore: t0}
	assert.Equal(t, CertActive, issued.CertState(t0.Add(-time.Second)))
	assert.Equal(t, CertExpired, issued.CertState(t0))
	revoked := &Request{Certificate: "c", ValidBefore: t0, Revoked: &Decision{}}
	assert.Equal(t, CertRevoked, revoked.CertState(t0.Add(-time.Second)))
	assert.Equal(t, CertState(""), (&Request{}).CertState(t0), "no certificate, no state")
}

func TestRequestIssuing(t *testing.T) {
	tests := []struct {
		name string
		r    Request
		want bool
	}{
		{"pending", Request{State: StatePending}, false},
		{"approved, serial taken, no certificate yet", Request{State: StateApproved, Serial: 7}, true},
		{"approved and issued", Request{State: StateApproved, Serial: 7, Certificate: "c"}, false},
		{"approved, revoked before it was stored", Request{State: StateApproved, Revoked: &Decision{}}, false},
		{"denied", Request{State: StateDenied}, false},
	}
	for _, tt := range tests {
		if got := tt.r.Issuing(); got != tt.want {
			t.Errorf("%s: Issuing() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
