package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitssh/jitssh/approvals"
)

// daemonMetrics are the approval daemon's Prometheus metrics. Every label
// takes values from a fixed set, so no caller can make the daemon keep
// one series per string they send.
type daemonMetrics struct {
	issued          prometheus.Counter
	approvalLatency prometheus.Histogram
	apiErrors       *prometheus.CounterVec
}

// apiMethods are the method labels; any other method name counts as
// "other".
var apiMethods = []string{methodWhoami, methodSubmit, methodApprove, methodDeny, methodCancel, methodRevoke,
	methodRelease, methodGet, methodList, methodWait, methodWatch, methodAllowed}

const otherMethod = "other"

func newDaemonMetrics(reg prometheus.Registerer, svc *approvals.Service, logger *slog.Logger) *daemonMetrics {
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
	for _, method := range append(apiMethods, otherMethod) {
		m.apiErrors.WithLabelValues(method)
	}
	reg.MustRegister(m.issued, m.approvalLatency, m.apiErrors,
		&requestsCollector{counter: svc.NewStateCounter(), logger: logger})
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
	m.apiErrors.WithLabelValues(methodLabel(method)).Inc()
}

// methodLabel is method when it is an API method, else "other".
func methodLabel(method string) string {
	for _, known := range apiMethods {
		if method == known {
			return method
		}
	}
	return otherMethod
}

// requestsCollector reports requests by state at scrape time, counted
// incrementally (see approvals.StateCounter).
type requestsCollector struct {
	counter *approvals.StateCounter
	logger  *slog.Logger
}

var requestsDesc = prometheus.NewDesc("jitssh_requests", "Requests by state.", []string{"state"}, nil)

// requestStates are the label values of jitssh_requests, each reported
// even at zero.
var requestStates = []approvals.State{approvals.StatePending, approvals.StateApproved, approvals.StateDenied,
	approvals.StateExpired, approvals.StateCancelled}

func (c *requestsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc }

func (c *requestsCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.counter.Counts()
	if err != nil {
		c.logger.Error("count requests for metrics", "err", err)
		ch <- prometheus.NewInvalidMetric(requestsDesc, err)
		return
	}
	for _, state := range requestStates {
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.GaugeValue, float64(counts[state]), string(state))
	}
}
