package approvals

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
)

// maxSleep bounds how long the background loop sleeps without looking at
// the clock again, so a clock that jumps is noticed within it.
const maxSleep = time.Minute

// run is the Service's background loop: it expires pending requests when
// their time comes and retries certificates that could not be issued. It
// sleeps until the next deadline or until the set of pending requests
// changes, whichever is first. In a cluster it works only while this node
// leads (see leading).
func (s *Service) run() {
	defer close(s.done)
	led := false
	for {
		leads, ok := s.leading(led)
		if !ok {
			return
		}
		led = leads
		ws := memdb.NewWatchSet()
		ws.Add(s.stop)
		ws.Add(s.wake)
		if s.cluster != nil {
			// Approvals made on other nodes wake the leader too: it
			// adopts what they leave unissued.
			ws.Add(s.node.watchLeader())
			if _, err := s.fsm.State().unissuedRequests(ws); err != nil {
				s.logger.Error("find unissued requests", "err", err)
			}
		}
		nextExpiry := s.expireDue(ws)
		s.issueUnissued(false)
		nextPrune := s.pruneDue()

		sleep := maxSleep
		if !nextExpiry.IsZero() {
			sleep = min(sleep, nextExpiry.Sub(s.clock()))
		}
		if !nextPrune.IsZero() {
			sleep = min(sleep, nextPrune.Sub(s.clock()))
		}
		if next := s.nextRetry(); !next.IsZero() {
			sleep = min(sleep, time.Until(next))
		}
		timer := time.NewTimer(max(sleep, time.Millisecond))
		ws.Watch(timer.C)
		timer.Stop()
		if s.closed() {
			return
		}
	}
}

// expireDue expires every pending request whose time has come, and returns
// when the next one will be due (zero if none is pending). It adds the
// pending requests to ws, so that a new one wakes the loop.
func (s *Service) expireDue(ws memdb.WatchSet) time.Time {
	st := s.fsm.State()
	ws.Add(st.AbandonCh())
	pending, err := st.requestsInState(ws, StatePending)
	if err != nil {
		s.logger.Error("find pending requests", "err", err)
		return time.Time{}
	}
	now := s.clock()
	var next time.Time
	for _, r := range pending {
		if now.Before(r.ExpiresAt) {
			if next.IsZero() || r.ExpiresAt.Before(next) {
				next = r.ExpiresAt
			}
			continue
		}
		if err := s.expire(r, now); err != nil && !errors.Is(err, ErrNotPending) && !errors.Is(err, ErrClosed) {
			s.logger.Error("expire request", "id", r.ID, "err", err)
		}
	}
	return next
}

func (s *Service) expire(r *Request, now time.Time) error {
	reason := fmt.Sprintf("nobody decided within %v", r.ExpiresAt.Sub(r.CreatedAt))
	_, err := s.commit(msgExpire, expireCmd{ID: r.ID, At: now, Reason: reason})
	return err
}
