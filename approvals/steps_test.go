package approvals

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCanSatisfy(t *testing.T) {
	var (
		oneApprover = []Step{{"approvers", 1}}
		twoApprover = []Step{{"approvers", 2}}
		leadAndSec  = []Step{{"leads", 1}, {"security", 1}}
		twoAndOne   = []Step{{"leads", 2}, {"security", 1}}
	)
	g := func(groups ...string) []string { return groups }
	tests := []struct {
		name      string
		steps     []Step
		approvers [][]string
		want      bool
	}{
		{"no steps", nil, nil, true},
		{"nobody yet", oneApprover, nil, false},
		{"one of one", oneApprover, [][]string{g("approvers")}, true},
		{"wrong group", oneApprover, [][]string{g("dev")}, false},
		{"one of two", twoApprover, [][]string{g("approvers")}, false},
		{"two of two", twoApprover, [][]string{g("approvers"), g("approvers", "dev")}, true},
		{"more than needed", oneApprover, [][]string{g("approvers"), g("approvers")}, true},
		{"lead and security", leadAndSec, [][]string{g("leads"), g("security")}, true},
		{"two leads", leadAndSec, [][]string{g("leads"), g("leads")}, false},
		{"one person in both groups counts once", leadAndSec, [][]string{g("leads", "security")}, false},
		{"both-groups person fills the gap", leadAndSec, [][]string{g("leads", "security"), g("leads")}, true},
		{"both-groups person first, then security", leadAndSec, [][]string{g("leads", "security"), g("security")}, true},
		// Placing the first approver in the first step they fit would
		// leave security empty; the matching moves them.
		{"needs a reassignment", leadAndSec, [][]string{g("leads", "security"), g("leads")}, true},
		{"two leads and a reviewer", twoAndOne, [][]string{g("leads", "security"), g("leads"), g("leads")}, true},
		{"two leads and a reviewer, short", twoAndOne, [][]string{g("leads", "security"), g("leads", "security")}, false},
		{"empty groups", oneApprover, [][]string{nil, {}}, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, canSatisfy(tt.steps, tt.approvers), "%s: canSatisfy(%v, %v)", tt.name, tt.steps, tt.approvers)
	}
}
