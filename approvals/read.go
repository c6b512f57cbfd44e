package approvals

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/go-memdb"
)

// ListFilter selects requests for List; the zero value selects all.
type ListFilter struct {
	States       []State
	Requester    string
	ApprovableBy string // only pending requests this person may approve now
	Limit        int    // 0 for no limit
}

// Get returns the request with that ID, whatever its state.
func (s *Service) Get(id string) (*Request, error) {
	r, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	r, _ = s.visible(r)
	return r.clone(), nil
}

// List returns the requests f selects, newest first.
func (s *Service) List(f ListFilter) []*Request {
	q := listQuery{requester: f.Requester, states: f.States, limit: max(f.Limit, 0)}
	if f.ApprovableBy != "" {
		groups := s.Policy().Groups(f.ApprovableBy)
		now := s.clock()
		q.keep = func(r *Request) bool {
			return r.State == StatePending && now.Before(r.ExpiresAt) && r.Requester != f.ApprovableBy &&
				!r.approvedBy(f.ApprovableBy) && slices.ContainsFunc(groups, r.stepGroup)
		}
		if len(q.states) == 0 {
			q.states = []State{StatePending}
		}
	}
	reqs, err := s.fsm.State().listRequests(nil, q)
	if err != nil {
		s.logger.Error("list requests", "err", err)
		return nil
	}
	out := make([]*Request, len(reqs))
	for i, r := range reqs {
		r, _ = s.visible(r)
		out[i] = r.clone()
	}
	return out
}

// Wait returns the request as soon as its Version is above afterVersion:
// at once if it already is, else when the next change is applied. It is
// woken by the state store, not by polling. It fails when ctx ends or the
// Service closes.
func (s *Service) Wait(ctx context.Context, id string, afterVersion uint64) (*Request, error) {
	if !validID(id) {
		return nil, notFound(id)
	}
	for {
		st := s.fsm.State()
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		ws.Add(s.stop)
		r, err := st.requestByID(ws, id)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, notFound(id)
		}
		if r.Version > afterVersion {
			v, notYet := s.visible(r)
			if notYet == nil {
				return v.clone(), nil
			}
			ws.Add(notYet) // its certificate leaves once its entry is durable
		}
		if s.closed() {
			return nil, ErrClosed
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return nil, fmt.Errorf("wait for %s: %w", id, err)
		}
	}
}

// Events returns every change to every request from now on, each as the
// request after the change, until ctx ends or the Service closes; then the
// channel is closed. A subscriber that falls behind loses the oldest
// changes first: the write path never waits for a reader.
func (s *Service) Events(ctx context.Context) <-chan *Request {
	return s.events.subscribe(ctx)
}
