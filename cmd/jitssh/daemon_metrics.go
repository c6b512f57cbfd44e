package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitssh/jitssh/approvals"
)

// daemonMetrics are the approval daemon's Prometheus metrics.
type daemonMetrics struct {
	issued          prometheus.Counter
	approvalLatency prometheus.Histogram
	apiErrors       *prometheus.CounterVec
}

func newDaemonMetrics(reg prometheus.Registerer, svc *approvals.Service) *daemonMetrics {
	m := &daemonMetrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitssh_certificates_issued_total", Help: "Certificates issued by the daemon.",
		}),
		approvalLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitssh_approval_latency_seconds", Help: "Time from request to issued certificate.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
		}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitssh_api_errors_total", Help: "API calls that failed, by method.",
		}, []string{"method"}),
	}
	reg.MustRegister(m.issued, m.approvalLatency, m.apiErrors, requestsCollector{svc: svc})
	return m
}

func (m *daemonMetrics) submitted(r *approvals.Request) { m.decided(r) }

func (m *daemonMetrics) decided(r *approvals.Request) {
	if r != nil && r.Serial != 0 && r.State == approvals.StateApproved {
		m.issued.Inc()
		m.approvalLatency.Observe(r.UpdatedAt.Sub(r.CreatedAt).Seconds())
	}
}

func (m *daemonMetrics) apiError(method string) {
	if len(method) > 20 {
		method = "other"
	}
	m.apiErrors.WithLabelValues(method).Inc()
}

// requestsCollector counts requests by state at scrape time.
type requestsCollector struct{ svc *approvals.Service }

var requestsDesc = prometheus.NewDesc("jitssh_requests", "Requests by state.", []string{"state"}, nil)

func (c requestsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc }

func (c requestsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[approvals.State]int{}
	for _, r := range c.svc.List(approvals.ListFilter{}) {
		counts[r.State]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.GaugeValue, float64(n), string(state))
	}
}

// webhookEvent is what a webhook receives.
type webhookEvent struct {
	Event   string             `json:"event"` // "request.pending", "request.approved", ...
	Request *approvals.Request `json:"request"`
}

// Webhook delivery never blocks the request path: events queue here and
// are posted with retries in the background; a full queue drops the
// oldest and logs it.
const (
	webhookQueue    = 256
	webhookAttempts = 5
)

func runWebhooks(ctx context.Context, svc *approvals.Service, hooks []approvals.Webhook, logger *slog.Logger) {
	queue := make(chan webhookEvent, webhookQueue)
	go func() {
		for r := range svc.Events(ctx) {
			if !svc.Leads() {
				continue // in a cluster, the leader posts
			}
			ev := webhookEvent{Event: "request." + string(r.State), Request: r}
			select {
			case queue <- ev:
			default:
				<-queue
				queue <- ev
				logger.Warn("webhook queue full; dropped the oldest event")
			}
		}
		close(queue)
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	for ev := range queue {
		body, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		for _, h := range hooks {
			deliverWebhook(ctx, client, h, body, logger)
		}
	}
}

// deliverWebhook posts body with an HMAC-SHA256 signature of it, retrying
// with exponential backoff.
func deliverWebhook(ctx context.Context, client *http.Client, h approvals.Webhook, body []byte, logger *slog.Logger) {
	mac := hmac.New(sha256.New, []byte(h.Secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	backoff := 500 * time.Millisecond
	for attempt := 1; attempt <= webhookAttempts; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
		if err != nil {
			logger.Error("webhook", "url", h.URL, "error", err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Jitssh-Signature", sig)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		logger.Warn("webhook delivery failed", "url", h.URL, "attempt", attempt, "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
