package sshd

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca/krl"
)

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// Defaults for KRLURL.
const (
	DefaultKRLRefresh  = 5 * time.Second
	DefaultKRLMaxStale = 5 * time.Minute
	maxKRLSize         = 64 << 20
	// maxKRLHold is the longest a long-poll asks the daemon to hold it.
	maxKRLHold = 30 * time.Second
)

// KRLGenerationHeader is the header the approval daemon sets on /v1/krl
// to the generation of the list it sends (the KRL's version). A daemon
// that sets it holds a request with ?wait=G until its generation is no
// longer G, or for ?timeout= at most.
const KRLGenerationHeader = "X-Jitssh-KRL-Generation"

// ErrRevocationStale is the error KRLURL gives while its list is stale.
var ErrRevocationStale = errors.New("revocation list is stale")

// KRLURL is a RevocationChecker that fetches a KRL over HTTP, as the
// approval daemon publishes it, from the first of several URLs (the
// nodes of a cluster) that answers.
//
// From a daemon that supports it, the list is followed: a long-poll that
// the daemon answers as soon as a revocation changes the list, so that a
// revocation is in force here within moments. When following fails, or
// the daemon does not support it, the list is polled every refresh,
// each URL in turn until one answers, and followed again once that works.
//
// Its fail-closed rule: when no URL has given a list for MaxStale, every
// certificate's status is unknown, and so refused, until a fetch succeeds
// again. It logs at Error once when the list goes stale, and at Info once
// when it is fresh again, however many certificates it refuses in between.
//
// A node that trails the others may answer with an older list than one
// already fetched: the newer one is kept alongside it, so a revocation
// once seen is never forgotten by moving to another node.
type KRLURL struct {
	urls     []string
	refresh  time.Duration
	maxStale time.Duration
	hold     time.Duration // what a long-poll asks the daemon to hold it for
	client   *http.Client  // for polls; a long-poll has its own deadline
	logger   *slog.Logger
	now      func() time.Time
	onChange atomic.Pointer[func()]

	mu sync.RWMutex
	// krl is the list last fetched, from whichever URL; newest, when not
	// nil, is a list of a higher version fetched before it, still in force.
	krl, newest *krl.List
	fetched     time.Time
	lastErr     error
	next        int  // index of the URL to try first: the last that answered
	follows     bool // that URL's daemon holds long-polls
	// stale is whether the Error line for the current stale spell was
	// written.
	stale atomic.Bool
}

// NewKRLURL returns a source for urls, tried in order; Run starts
// fetching.
func NewKRLURL(urls []string, refresh, maxStale time.Duration, logger *slog.Logger) *KRLURL {
	if refresh <= 0 {
		refresh = DefaultKRLRefresh
	}
	if maxStale <= 0 {
		maxStale = DefaultKRLMaxStale
	}
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	// A long-poll comes back at least twice per max_stale, so a quiet
	// daemon never lets the list go stale.
	hold := min(maxKRLHold, maxStale/2)
	return &KRLURL{urls: urls, refresh: refresh, maxStale: maxStale, hold: hold, logger: logger, now: time.Now,
		client: &http.Client{Timeout: 10 * time.Second}}
}

// OnChange sets fn to be called each time a fetched list's generation
// differs from the one before, such as when a revocation arrives.
func (k *KRLURL) OnChange(fn func()) { k.onChange.Store(&fn) }

// Run fetches until ctx is done: it follows the list while a daemon holds
// long-polls, and polls every refresh otherwise.
func (k *KRLURL) Run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	warned := false // about following, since it last worked
	for {
		err := k.Fetch(ctx)
		if err != nil {
			k.logger.Warn("revocation list fetch failed", "url", strings.Join(k.urls, " "), "err", err)
			// Said here too, so a server nobody connects to says it.
			_ = k.staleness()
		} else if k.canFollow() {
			answered, err := k.follow(ctx)
			if ctx.Err() != nil {
				return
			}
			if answered > 0 || !warned {
				k.logger.Warn("following the revocation list failed; polling it every refresh until following works again",
					"refresh", k.refresh.String(), "err", err)
				warned = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (k *KRLURL) canFollow() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.follows
}

// Fetch fetches the list once, from the URL that last answered and then
// each other in turn until one does.
func (k *KRLURL) Fetch(ctx context.Context) error {
	k.mu.RLock()
	first := k.next
	k.mu.RUnlock()
	var errs []string
	for i := range k.urls {
		at := (first + i) % len(k.urls)
		err := k.fetchFrom(ctx, at, k.client, nil)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(k.urls) == 1 {
			return k.fail(err)
		}
		errs = append(errs, fmt.Sprintf("%s: %v", k.urls[at], err))
	}
	return k.fail(errors.New(strings.Join(errs, "; ")))
}

// follow long-polls the URL that last answered until a long-poll fails,
// and says how many were answered before that.
func (k *KRLURL) follow(ctx context.Context) (answered int, err error) {
	// No client timeout: the request's own deadline allows for the hold.
	waiter := &http.Client{Transport: k.client.Transport}
	for {
		k.mu.RLock()
		at, gen := k.next, k.krl.Version
		k.mu.RUnlock()
		start := k.now()
		wctx, cancel := context.WithTimeout(ctx, k.hold+10*time.Second)
		err := k.fetchFrom(wctx, at, waiter, url.Values{
			"wait":    {strconv.FormatUint(gen, 10)},
			"timeout": {k.hold.String()},
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return answered, ctx.Err()
			}
			return answered, k.fail(fmt.Errorf("%s: %w", k.urls[at], err))
		}
		k.mu.RLock()
		follows, same := k.follows, k.krl.Version == gen
		k.mu.RUnlock()
		switch {
		case !follows:
			return answered, fmt.Errorf("%s no longer holds long-polls", k.urls[at])
		case same && k.now().Sub(start) < k.hold/2:
			// Answered early with nothing new: the daemon is going away,
			// or does not hold as it says. Poll instead of spinning.
			return answered, fmt.Errorf("%s answered a long-poll early with nothing new", k.urls[at])
		}
		answered++
	}
}

// fetchFrom fetches the list from urls[at], with query added, and makes it
// the list in force.
func (k *KRLURL) fetchFrom(ctx context.Context, at int, client *http.Client, query url.Values) error {
	u := k.urls[at]
	if len(query) > 0 {
		parsed, err := url.Parse(u)
		if err != nil {
			return err
		}
		q := parsed.Query()
		for name, v := range query {
			q[name] = v
		}
		parsed.RawQuery = q.Encode()
		u = parsed.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", k.urls[at], resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKRLSize))
	if err != nil {
		return err
	}
	list, err := krl.Parse(data)
	if err != nil {
		return err
	}
	k.apply(at, list, resp.Header.Get(KRLGenerationHeader) != "")
	return nil
}

// apply makes list, just fetched from urls[at], the list in force.
func (k *KRLURL) apply(at int, list *krl.List, follows bool) {
	k.mu.Lock()
	prev, newest := k.krl, k.newest
	if newest == nil {
		newest = prev
	}
	switch {
	case newest != nil && list.Version < newest.Version:
		// This node trails: keep the newer list in force with it.
		k.newest = newest
	default:
		k.newest = nil
	}
	k.krl, k.fetched, k.lastErr, k.next, k.follows = list, k.now(), nil, at, follows
	k.mu.Unlock()
	if k.stale.CompareAndSwap(true, false) {
		k.logger.Info("revocation list is fresh again; certificates are accepted again", "url", k.urls[at])
	}
	if prev != nil && prev.Version != list.Version {
		k.logger.Info("revocation list updated", "url", k.urls[at], "generation", list.Version, "was", prev.Version)
		if fn := k.onChange.Load(); fn != nil {
			(*fn)()
		}
	}
}

func (k *KRLURL) fail(err error) error {
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
	return err
}

// Revoked reports whether cert is revoked by the lists in force.
func (k *KRLURL) Revoked(cert *ssh.Certificate) (bool, error) {
	if err := k.staleness(); err != nil {
		return false, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.newest != nil && k.newest.IsRevoked(cert) {
		return true, nil
	}
	return k.krl.IsRevoked(cert), nil
}

// staleness returns the error every certificate gets while the list is
// stale, and logs the first one of a stale spell at Error.
func (k *KRLURL) staleness() error {
	k.mu.RLock()
	list, fetched, lastErr := k.krl, k.fetched, k.lastErr
	k.mu.RUnlock()
	if list != nil && k.now().Sub(fetched) <= k.maxStale {
		return nil
	}
	since := "yet"
	if list != nil {
		since = "for " + k.now().Sub(fetched).Round(time.Second).String()
	}
	what := k.urls[0]
	if len(k.urls) > 1 {
		what = "any of " + strings.Join(k.urls, ", ")
	}
	err := fmt.Errorf("%w: no fetch of %s has succeeded %s (last error: %v); every certificate is refused until one does",
		ErrRevocationStale, what, since, lastErr)
	if k.stale.CompareAndSwap(false, true) {
		k.logger.Error("revocation list is stale; refusing every certificate until a fetch succeeds",
			"url", strings.Join(k.urls, " "), "max_stale", k.maxStale.String(), "err", err)
	}
	return err
}
