package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jitssh/jitssh/approvals"
)

// webhookEvent is what a webhook receives. Delivery and Timestamp are in
// the signed body, so a receiver can refuse a replayed delivery: one
// whose ID it has seen, or whose timestamp is older than it accepts.
type webhookEvent struct {
	Delivery  string             `json:"delivery"`  // unique per event; the same on every retry of it
	Timestamp time.Time          `json:"timestamp"` // when the event was first sent
	Event     string             `json:"event"`     // "request.pending", "request.approved", ...
	Request   *approvals.Request `json:"request"`
}

// Headers of a webhook delivery. The signature is
// "sha256=" + hex(HMAC-SHA256(secret, body)); the delivery ID and the
// timestamp (Unix seconds) repeat the body's, for receivers that want
// them before parsing it.
const (
	headerSignature = "X-Jitssh-Signature"
	headerDelivery  = "X-Jitssh-Delivery"
	headerTimestamp = "X-Jitssh-Timestamp"
)

// Webhook delivery never blocks the request path: events queue here and
// are posted with retries in the background; a full queue drops the
// oldest and logs it.
const (
	webhookQueue    = 256
	webhookAttempts = 5
)

// webhookBackoff is the wait before the first retry; it doubles.
var webhookBackoff = 500 * time.Millisecond

func runWebhooks(ctx context.Context, svc *approvals.Service, hooks []approvals.Webhook, logger *slog.Logger) {
	queue := make(chan *approvals.Request, webhookQueue)
	go func() {
		for r := range svc.AllEvents(ctx) {
			if !svc.Leads() {
				continue // in a cluster, the leader posts
			}
			select {
			case queue <- r:
			default:
				<-queue
				queue <- r
				logger.Warn("webhook queue full; dropped the oldest event")
			}
		}
		close(queue)
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	for r := range queue {
		for _, h := range hooks {
			deliverWebhook(ctx, client, h, r, logger)
		}
	}
}

func deliveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// deliverWebhook posts the change to r, signed with an HMAC-SHA256 of
// the body, retrying with exponential backoff. Every attempt carries the
// same body, so a receiver that has the delivery already can tell a retry
// from news.
func deliverWebhook(ctx context.Context, client *http.Client, h approvals.Webhook, r *approvals.Request, logger *slog.Logger) {
	ev := webhookEvent{Delivery: deliveryID(), Timestamp: time.Now().UTC().Truncate(time.Second),
		Event: "request." + string(r.State), Request: r}
	body, err := json.Marshal(ev)
	if err != nil {
		logger.Error("webhook: encode event", "id", r.ID, "err", err)
		return
	}
	mac := hmac.New(sha256.New, []byte(h.Secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	backoff := webhookBackoff
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
		if err != nil {
			logger.Error("webhook", "url", h.URL, "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(headerSignature, sig)
		req.Header.Set(headerDelivery, ev.Delivery)
		req.Header.Set(headerTimestamp, strconv.FormatInt(ev.Timestamp.Unix(), 10))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		logger.Warn("webhook delivery failed", "url", h.URL, "delivery", ev.Delivery, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
