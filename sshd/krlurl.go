package sshd

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/ca"
)

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// Defaults for KRLURL.
const (
	DefaultKRLRefresh  = 5 * time.Second
	DefaultKRLMaxStale = 5 * time.Minute
	maxKRLSize         = 64 << 20
)

// ErrRevocationStale is the error KRLURL gives while its list is stale.
var ErrRevocationStale = errors.New("revocation list is stale")

// KRLURL is a RevocationChecker that polls a KRL over HTTP, as the approval
// daemon publishes it. Its fail-closed rule: when no fetch has succeeded
// for MaxStale, every certificate's status is unknown, and so refused,
// until a fetch succeeds again. It logs at Error once when the list goes
// stale, and at Info once when it is fresh again, however many
// certificates it refuses in between.
type KRLURL struct {
	url      string
	refresh  time.Duration
	maxStale time.Duration
	client   *http.Client
	logger   *slog.Logger
	now      func() time.Time

	mu      sync.RWMutex
	krl     *ca.KRL
	fetched time.Time
	lastErr error
	// stale is whether the Error line for the current stale spell was
	// written.
	stale atomic.Bool
}

// NewKRLURL returns a source for url; Run starts polling.
func NewKRLURL(url string, refresh, maxStale time.Duration, logger *slog.Logger) *KRLURL {
	if refresh <= 0 {
		refresh = DefaultKRLRefresh
	}
	if maxStale <= 0 {
		maxStale = DefaultKRLMaxStale
	}
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	return &KRLURL{url: url, refresh: refresh, maxStale: maxStale, logger: logger, now: time.Now,
		client: &http.Client{Timeout: 10 * time.Second}}
}

// Run polls until ctx is done.
func (k *KRLURL) Run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		if err := k.Fetch(ctx); err != nil {
			k.logger.Warn("revocation list fetch failed", "url", k.url, "err", err)
			// Said here too, so a server nobody connects to says it.
			_ = k.staleness()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Fetch fetches the KRL once.
func (k *KRLURL) Fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return k.fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return k.fail(fmt.Errorf("GET %s: %s", k.url, resp.Status))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKRLSize))
	if err != nil {
		return k.fail(err)
	}
	krl, err := ca.ParseKRL(data)
	if err != nil {
		return k.fail(err)
	}
	k.mu.Lock()
	k.krl, k.fetched, k.lastErr = krl, k.now(), nil
	k.mu.Unlock()
	if k.stale.CompareAndSwap(true, false) {
		k.logger.Info("revocation list is fresh again; certificates are accepted again", "url", k.url)
	}
	return nil
}

func (k *KRLURL) fail(err error) error {
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
	return err
}

// Revoked reports whether cert is revoked by the last fetched KRL.
func (k *KRLURL) Revoked(cert *ssh.Certificate) (bool, error) {
	if err := k.staleness(); err != nil {
		return false, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.krl.IsRevoked(cert), nil
}

// staleness returns the error every certificate gets while the list is
// stale, and logs the first one of a stale spell at Error.
func (k *KRLURL) staleness() error {
	k.mu.RLock()
	krl, fetched, lastErr := k.krl, k.fetched, k.lastErr
	k.mu.RUnlock()
	if krl != nil && k.now().Sub(fetched) <= k.maxStale {
		return nil
	}
	since := "yet"
	if krl != nil {
		since = "for " + k.now().Sub(fetched).Round(time.Second).String()
	}
	err := fmt.Errorf("%w: no fetch of %s has succeeded %s (last error: %v); every certificate is refused until one does",
		ErrRevocationStale, k.url, since, lastErr)
	if k.stale.CompareAndSwap(false, true) {
		k.logger.Error("revocation list is stale; refusing every certificate until a fetch succeeds",
			"url", k.url, "max_stale", k.maxStale.String(), "err", err)
	}
	return err
}
