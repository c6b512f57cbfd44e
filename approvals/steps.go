package approvals

// canSatisfy reports whether approvers, given as the groups each one is in,
// meet every step: a step {G, n} needs n approvers who are in G, and each
// approver fills at most one place in one step, however many groups they
// are in. Someone in both "leads" and "security" therefore cannot alone
// meet "one lead and one security reviewer".
//
// It is a bipartite matching of step places to approvers (Kuhn's augmenting
// paths), so when approvers could be placed several ways, it finds a
// placement that meets all steps whenever one exists. Policies are small:
// a handful of places and approvers.
func canSatisfy(steps []Step, approvers [][]string) bool {
	var places []string // one entry per approval a step needs: its group
	for _, s := range steps {
		for range s.Count {
			places = append(places, s.Group)
		}
	}
	if len(places) > len(approvers) {
		return false
	}
	in := make([]map[string]bool, len(approvers))
	for i, groups := range approvers {
		in[i] = make(map[string]bool, len(groups))
		for _, g := range groups {
			in[i][g] = true
		}
	}
	placeOf := make([]int, len(approvers)) // approver → the place they fill, or -1
	for i := range placeOf {
		placeOf[i] = -1
	}
	// fill finds an approver for place p, moving others to other places
	// they can fill if need be.
	var fill func(p int, tried []bool) bool
	fill = func(p int, tried []bool) bool {
		for a := range approvers {
			if tried[a] || !in[a][places[p]] {
				continue
			}
			tried[a] = true
			if placeOf[a] < 0 || fill(placeOf[a], tried) {
				placeOf[a] = p
				return true
			}
		}
		return false
	}
	for p := range places {
		if !fill(p, make([]bool, len(approvers))) {
			return false
		}
	}
	return true
}
