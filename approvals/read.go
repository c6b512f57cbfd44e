package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"
)

// ListFilter selects requests for List; the zero value selects the first
// page of all the caller may see.
type ListFilter struct {
	States       []State
	Requester    string
	ApprovableBy string // only pending requests this person may approve now
	Limit        int    // at most this many, and never more than MaxListPage; 0 for MaxListPage
	After        string // a ListPage.Next: the page after the one it ended
}

// ListPage is one page of List.
type ListPage struct {
	Requests []*Request
	// Next, when not empty, is the After of the next page: there may be
	// more.
	Next string
}

// Get returns the request with that ID, whatever its state, if who may
// see it; a request they may not see is refused as an unknown one.
func (s *Service) Get(who Actor, id string) (*Request, error) {
	p := s.Policy()
	a, err := p.resolve(who)
	if err != nil {
		return nil, err
	}
	r, err := s.lookup(id)
	if errors.Is(err, ErrNotFound) && s.archive != nil {
		// Ended long ago and pruned from the state: the audit log still
		// has it, under the same rule of who may see it.
		r, err = s.archived(id)
		if err != nil {
			return nil, err
		}
		if !p.mayView(a, r) {
			return nil, notFound(id)
		}
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	if !p.mayView(a, r) {
		return nil, notFound(id)
	}
	r, _ = s.visible(r)
	return s.withDetail(r), nil
}

// List returns a page of the requests f selects among those who may see,
// newest first.
func (s *Service) List(who Actor, f ListFilter) (ListPage, error) {
	p := s.Policy()
	a, err := p.resolve(who)
	if err != nil {
		return ListPage{}, err
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxListPage {
		limit = MaxListPage
	}
	reqs, err := s.list(f, limit+1, func(r *Request) bool { return p.mayView(a, r) })
	if err != nil {
		return ListPage{}, err
	}
	var page ListPage
	if len(reqs) > limit {
		reqs = reqs[:limit]
		page.Next = reqs[limit-1].ID
	}
	page.Requests = reqs
	return page, nil
}

// list returns up to limit requests (all when 0) that f selects and keep
// accepts, newest first, each the caller's own copy.
func (s *Service) list(f ListFilter, limit int, keep func(*Request) bool) ([]*Request, error) {
	q := listQuery{requester: f.Requester, states: f.States, limit: limit}
	var approvable func(*Request) bool
	if f.ApprovableBy != "" {
		groups := s.Policy().Groups(f.ApprovableBy)
		now := s.clock()
		approvable = func(r *Request) bool {
			return r.State == StatePending && now.Before(r.ExpiresAt) && r.Requester != f.ApprovableBy &&
				!r.approvedBy(f.ApprovableBy) && slices.ContainsFunc(groups, r.stepGroup)
		}
		if len(q.states) == 0 {
			q.states = []State{StatePending}
		}
	}
	q.keep = func(r *Request) bool {
		// IDs sort by creation, and the list runs newest first.
		return (f.After == "" || r.ID < f.After) &&
			(approvable == nil || approvable(r)) && (keep == nil || keep(r))
	}
	reqs, err := s.fsm.State().listRequests(nil, q)
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	out := make([]*Request, len(reqs))
	for i, r := range reqs {
		r, _ = s.visible(r)
		out[i] = r.clone()
	}
	return out, nil
}

// Wait returns the request as soon as its Version is above afterVersion:
// at once if it already is, else when the next change is applied. It is
// woken by the state store, not by polling. Each time it wakes it checks
// who against the policy in force again. It fails when who may not see the
// request (as for an unknown one), when ctx ends or the Service closes.
func (s *Service) Wait(ctx context.Context, who Actor, id string, afterVersion uint64) (*Request, error) {
	return s.wait(ctx, id, afterVersion, func(r *Request) error {
		p := s.Policy()
		a, err := p.resolve(who)
		if err != nil {
			return err
		}
		if !p.mayView(a, r) {
			return notFound(id)
		}
		return nil
	})
}

// anyone is the check of a wait on the Service's own behalf.
func anyone(*Request) error { return nil }

// wait is Wait, with check deciding whether the caller may go on seeing r.
func (s *Service) wait(ctx context.Context, id string, afterVersion uint64, check func(*Request) error) (*Request, error) {
	if !validID(id) {
		return nil, notFound(id)
	}
	synced := s.cluster == nil
	for {
		st := s.fsm.State()
		ws := memdb.NewWatchSet()
		ws.Add(st.AbandonCh())
		ws.Add(s.stop)
		r, err := st.requestByID(ws, id)
		if err != nil {
			return nil, err
		}
		if r == nil && !synced {
			// A request another node has just made may not be applied
			// here yet (see lookup).
			synced = true
			sctx, cancel := context.WithTimeout(ctx, s.applyWait)
			err := s.syncWithLeader(sctx)
			cancel()
			if err == nil {
				continue
			}
		}
		if r == nil {
			return nil, notFound(id)
		}
		if err := check(r); err != nil {
			return nil, err
		}
		if r.Version > afterVersion {
			v, notYet := s.visible(r)
			if notYet == nil {
				return s.withDetail(v), nil
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

// Events returns every change to a request who may see, from now on, each
// as the request after the change, until ctx ends, the Service closes or
// who no longer passes the check against the policy in force; then the
// channel is closed. A subscriber that falls behind loses the oldest
// changes first: the write path never waits for a reader.
func (s *Service) Events(ctx context.Context, who Actor) <-chan *Request {
	ctx, cancel := context.WithCancel(ctx)
	in := s.events.subscribe(ctx)
	out := make(chan *Request, eventBuffer)
	go func() {
		defer close(out)
		defer cancel()
		for r := range in {
			p := s.Policy()
			a, err := p.resolve(who)
			if err != nil {
				return
			}
			if !p.mayView(a, r) {
				continue
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// AllEvents is Events for the daemon's own subscribers (webhooks,
// metrics), which see every change. Never hand it to a caller.
func (s *Service) AllEvents(ctx context.Context) <-chan *Request {
	return s.events.subscribe(ctx)
}

// Allowed returns the rules who may request under, in file order.
func (s *Service) Allowed(who Actor) ([]Rule, error) {
	p := s.Policy()
	a, err := p.resolve(who)
	if err != nil {
		return nil, err
	}
	return p.Allowed(a.Person), nil
}

// Revoked returns the serials of every certificate the Service issued and
// then revoked, in increasing order, or why they cannot be read: a caller
// that publishes them must fail closed rather than publish none.
func (s *Service) Revoked() ([]uint64, error) {
	serials, _, _, err := s.revoked(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("read revoked serials: %w", err)
	}
	return serials, nil
}
