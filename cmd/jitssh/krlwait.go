package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/ca/krl"
	"github.com/jitssh/jitssh/sshd"
)

// /v1/krl answers at once with the KRL and its generation (the KRL's
// version, which grows with each revocation) in sshd.KRLGenerationHeader.
// With ?wait=G it is a long-poll: the answer comes as soon as the
// generation is no longer G, or after ?timeout= (krlDefaultHold when not
// given, krlMaxHold at most), whichever is first. Git servers following it
// apply a revocation within moments instead of at their next poll.

const (
	krlDefaultHold = 30 * time.Second
	krlMaxHold     = time.Minute
	// krlMaxWaiters bounds the long-polls held at once: the endpoint is
	// public, and each holds a subscription to every change. Beyond it a
	// long-poll is answered at once, as a plain fetch.
	krlMaxWaiters = 256
)

// krlHandler serves /v1/krl. It fails closed: when the state cannot be
// read, it answers 503 rather than an empty list.
func krlHandler(svc publicState, reg prometheus.Registerer, logger *slog.Logger) http.HandlerFunc {
	waiters := make(chan struct{}, krlMaxWaiters)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jitssh_krl_followers",
		Help: "Long-polls held on /v1/krl now: Git servers following revocations from this node.",
	}, func() float64 { return float64(len(waiters)) }))
	return func(w http.ResponseWriter, r *http.Request) {
		wait, hold, err := krlWaitQuery(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var changes <-chan *approvals.Request
		if hold > 0 {
			select {
			case waiters <- struct{}{}:
				defer func() { <-waiters }()
				ctx, cancel := context.WithTimeout(r.Context(), hold)
				defer cancel()
				// Subscribed before the list is read: a revocation
				// committed in between is not missed.
				changes = svc.AllEvents(ctx)
			default:
				hold = 0
			}
		}
		for {
			data, gen, err := currentKRL(svc)
			if err != nil {
				logger.Error("serve /v1/krl", "err", err)
				http.Error(w, "revocation list unavailable", http.StatusServiceUnavailable)
				return
			}
			if hold == 0 || gen != wait || !awaitRevocation(changes) {
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("Cache-Control", "no-store")
				w.Header().Set(sshd.KRLGenerationHeader, strconv.FormatUint(gen, 10))
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data)
				return
			}
		}
	}
}

// krlWaitQuery reads ?wait= and ?timeout=; hold is zero for a plain fetch.
func krlWaitQuery(r *http.Request) (wait uint64, hold time.Duration, err error) {
	q := r.URL.Query()
	if !q.Has("wait") {
		return 0, 0, nil
	}
	wait, err = strconv.ParseUint(q.Get("wait"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("wait=%.40q: want the generation the caller has, a whole number", q.Get("wait"))
	}
	hold = krlDefaultHold
	if t := q.Get("timeout"); t != "" {
		if hold, err = time.ParseDuration(t); err != nil || hold <= 0 {
			return 0, 0, fmt.Errorf("timeout=%.40q: want a positive duration such as 30s", t)
		}
	}
	return wait, min(hold, krlMaxHold), nil
}

// awaitRevocation waits for a change that may have changed the KRL, and
// reports false when the wait is over (its time is up, or the caller or
// the daemon went away) without one.
func awaitRevocation(changes <-chan *approvals.Request) bool {
	for r := range changes {
		if r.Revoked != nil {
			return true
		}
	}
	return false
}

// currentKRL returns the KRL and its generation.
func currentKRL(svc publicState) ([]byte, uint64, error) {
	data, err := svc.KRL()
	if err != nil {
		return nil, 0, err
	}
	k, err := krl.Parse(data)
	if err != nil {
		return nil, 0, fmt.Errorf("read back the KRL: %w", err)
	}
	return data, k.Version, nil
}
