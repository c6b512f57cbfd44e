package approvals

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaitIsPushed(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))

	got, err := env.Wait(ctx, r.ID, r.Version-1)
	require.NoError(t, err)
	assert.Equal(t, r, got, "a version already passed returns at once")

	type result struct {
		r   *Request
		err error
	}
	// The waiter's deadline starts a second after the approval returns:
	// the certificate must reach it within that second.
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan result, 1)
	go func() {
		r, err := env.Wait(waitCtx, r.ID, r.Version)
		done <- result{r, err}
	}()
	approved := env.approve(t, "bob", r.ID)
	timer := time.AfterFunc(time.Second, cancel)
	defer timer.Stop()
	res := <-done
	require.NoError(t, res.err)
	// Wait returns on the first change after r.Version, which may be the
	// approval before the certificate is stored; waiting on from there
	// reaches the certificate.
	for res.r.Certificate == "" {
		res.r, res.err = env.Wait(waitCtx, r.ID, res.r.Version)
		require.NoError(t, res.err)
	}
	assert.Equal(t, approved.Certificate, res.r.Certificate)
}

func TestWaitEnds(t *testing.T) {
	env := newTestService(t, nil)
	r := env.submit(t, "alice", featureReq(t))

	_, err := env.Wait(ctx, "req-01ARZ3NDEKTSV4RRFFQ69G5FAV", 0)
	require.ErrorIs(t, err, ErrNotFound)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = env.Wait(cctx, r.ID, r.Version)
	require.ErrorIs(t, err, context.Canceled)

	done := make(chan error, 1)
	go func() {
		_, err := env.Wait(ctx, r.ID, r.Version)
		done <- err
	}()
	require.NoError(t, env.Close())
	require.ErrorIs(t, <-done, ErrClosed)
	_, err = env.Submit(ctx, "alice", featureReq(t))
	require.ErrorIs(t, err, ErrClosed)
}

func TestEvents(t *testing.T) {
	env := newTestService(t, nil)
	evCtx, cancel := context.WithCancel(ctx)
	events := env.Events(evCtx)

	r := env.submit(t, "alice", featureReq(t))
	env.approve(t, "bob", r.ID)

	var states []string
	for e := range events {
		states = append(states, fmt.Sprintf("%s:%d:%v", e.State, len(e.Approvals), e.Certificate != ""))
		if e.Certificate != "" {
			break
		}
	}
	assert.Equal(t, []string{
		"pending:0:false",  // submit
		"approved:1:false", // approval that met the step
		"approved:1:true",  // certificate stored with its serial
	}, states)
	cancel()
	for range events { // closed once ctx ends
	}
}

func TestBrokerDropsOldest(t *testing.T) {
	b := newBroker()
	defer b.close()
	ch := b.subscribe(ctx)
	for i := range eventBuffer + 10 {
		b.publish([]*Request{{Version: uint64(i)}})
	}
	require.Len(t, ch, eventBuffer)
	assert.Equal(t, uint64(10), (<-ch).Version, "the oldest were dropped")
}

func TestList(t *testing.T) {
	env := newTestService(t, nil)
	a1 := env.submit(t, "alice", featureReq(t))
	a2 := env.submit(t, "alice", mainReq(t))
	b1 := env.submit(t, "bob", featureReq(t))
	a3 := env.submit(t, "alice", readReq(t))
	env.approve(t, "carol", a2.ID)
	_, err := env.Deny(ctx, "carol", a1.ID, DecisionInput{Reason: "no"})
	require.NoError(t, err)

	tests := []struct {
		name string
		f    ListFilter
		want []*Request
	}{
		{"all, newest first", ListFilter{}, []*Request{a3, b1, a2, a1}},
		{"limit", ListFilter{Limit: 2}, []*Request{a3, b1}},
		{"requester", ListFilter{Requester: "alice"}, []*Request{a3, a2, a1}},
		{"state", ListFilter{States: []State{StatePending}}, []*Request{b1, a2}},
		{"states", ListFilter{States: []State{StateDenied, StateApproved}}, []*Request{a3, a1}},
		{"requester and state", ListFilter{Requester: "alice", States: []State{StatePending}}, []*Request{a2}},
		{"approvable by bob", ListFilter{ApprovableBy: "bob"}, []*Request{a2}},
		{"approvable by carol", ListFilter{ApprovableBy: "carol"}, []*Request{b1}},
		{"approvable by alice", ListFilter{ApprovableBy: "alice"}, nil},
		{"approvable by a stranger", ListFilter{ApprovableBy: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, ids(tt.want), ids(env.List(tt.f)))
		})
	}
}
