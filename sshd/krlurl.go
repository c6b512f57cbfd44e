package sshd

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
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

// KRLURL is a RevocationChecker that polls a KRL over HTTP, as the approval
// daemon publishes it. Its fail-closed rule: when no fetch has succeeded
// for MaxStale, every certificate's status is unknown, and so refused,
// until a fetch succeeds again.
type KRLURL struct {
	url      string
	refresh  time.Duration
	maxStale time.Duration
	client   *http.Client
	logger   *slog.Logger

	mu      sync.RWMutex
	krl     *ca.KRL
	fetched time.Time
	lastErr error
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
	return &KRLURL{url: url, refresh: refresh, maxStale: maxStale, logger: logger,
		client: &http.Client{Timeout: 10 * time.Second}}
}

// Run polls until ctx is done.
func (k *KRLURL) Run(ctx context.Context) {
	t := time.NewTicker(k.refresh)
	defer t.Stop()
	for {
		if err := k.Fetch(ctx); err != nil {
			k.logger.Warn("revocation list fetch failed", "url", k.url, "err", err)
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
	k.krl, k.fetched, k.lastErr = krl, time.Now(), nil
	k.mu.Unlock()
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
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.krl == nil || time.Since(k.fetched) > k.maxStale {
		return false, fmt.Errorf("revocation list from %s is stale (last error: %v)", k.url, k.lastErr)
	}
	return k.krl.IsRevoked(cert), nil
}
