package approvals

import (
	"maps"
	"sync"
	"time"
)

// countSettle is how old a request's ID must be before StateCounter takes
// its state as final: an ID is taken a moment before its request is
// applied, and applying gives up after applyTimeout, so after this no
// request with an older ID can still arrive.
const countSettle = time.Minute

// StateCounter counts requests by state without reading every request
// each time. Only a pending request changes state, so the counter keeps
// the counts of the oldest requests up to the first one still pending (or
// too recent to be sure of) and reads only the requests after it: those
// of the last request timeout or so, however long the daemon has run.
type StateCounter struct {
	s *Service

	mu     sync.Mutex
	store  *stateStore   // the store counted; a snapshot restore replaces it
	frozen map[State]int // the requests up to mark, all final
	mark   string        // the ID of the newest of them
	prunes int           // prune commands the frozen counts were made after
}

// NewStateCounter returns a counter of s's requests by state.
func (s *Service) NewStateCounter() *StateCounter { return &StateCounter{s: s} }

// Counts returns how many requests are in each state now.
func (c *StateCounter) Counts() (map[State]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.s.fsm.State()
	// Requests pruned from the state count where they ended; those frozen
	// may be among them, so a prune starts the frozen counts over.
	pruned, err := st.pruned()
	if err != nil {
		return nil, err
	}
	if st != c.store || pruned.Commands != c.prunes {
		c.store, c.frozen, c.mark, c.prunes = st, map[State]int{}, "", pruned.Commands
	}
	settled := c.s.clock().Add(-countSettle)
	it, err := st.db.Txn(false).LowerBound(tableRequests, indexID, c.mark)
	if err != nil {
		return nil, err
	}
	counts := maps.Clone(c.frozen)
	for state, n := range pruned.States {
		counts[state] += n
	}
	advancing := true
	for obj := it.Next(); obj != nil; obj = it.Next() {
		r := obj.(*Request)
		if r.ID == c.mark {
			continue
		}
		counts[r.State]++
		if advancing && r.State != StatePending && r.CreatedAt.Before(settled) {
			c.frozen[r.State]++
			c.mark = r.ID
			continue
		}
		advancing = false
	}
	return counts, nil
}
