package sshd

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the front-end's Prometheus metrics. A nil *Metrics records
// nothing, so tests and tools need not register any.
type Metrics struct {
	connections   prometheus.Gauge
	connsTotal    prometheus.Counter
	connsRefused  prometheus.Counter
	operations    *prometheus.CounterVec
	authLatency   prometheus.Histogram
	bytesReceived prometheus.Counter
	bytesSent     prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitssh_git_connections", Help: "Open SSH connections.",
		}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitssh_git_connections_total", Help: "SSH connections accepted.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitssh_git_connections_refused_total", Help: "SSH connections refused by a connection limit.",
		}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitssh_git_operations_total", Help: "Git operations and authentication refusals, by kind and decision.",
		}, []string{"kind", "decision"}),
		authLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitssh_git_authorization_seconds", Help: "Time to decide an exec request.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		bytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitssh_git_received_bytes_total", Help: "Bytes received from Git clients.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitssh_git_sent_bytes_total", Help: "Bytes sent to Git clients.",
		}),
	}
	reg.MustRegister(m.connections, m.connsTotal, m.connsRefused, m.operations, m.authLatency, m.bytesReceived, m.bytesSent)
	return m
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.connections.Inc()
		m.connsTotal.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.connections.Dec()
	}
}

func (m *Metrics) refusedConn() {
	if m != nil {
		m.connsRefused.Inc()
	}
}

func (m *Metrics) operation(kind, decision string) {
	if m != nil {
		if kind == "" {
			kind = "unknown"
		}
		m.operations.WithLabelValues(kind, decision).Inc()
	}
}

func (m *Metrics) authorized(d time.Duration) {
	if m != nil {
		m.authLatency.Observe(d.Seconds())
	}
}

func (m *Metrics) transferred(in, out int64) {
	if m != nil {
		m.bytesReceived.Add(float64(in))
		m.bytesSent.Add(float64(out))
	}
}
