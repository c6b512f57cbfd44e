package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/sshd"
)

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "run the approval daemon and certificate signer",
		Description: "Takes requests over SSH, applies the policy in the config file, collects\n" +
			"approvals and signs certificates. SIGHUP reloads the policy (a bad file keeps\n" +
			"the running one); SIGTERM stops it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration and policy file (YAML)", EnvVars: []string{"JITSSH_SERVER_CONFIG"}, Required: true},
			&cli.BoolFlag{Name: "check", Usage: "check the configuration and what it names (policy, CA, keys, directories, cluster TLS), then exit without serving"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("check") {
				return checkDaemonConfig(c)
			}
			return serveAction(func(ctx context.Context, config string, logger *slog.Logger) error {
				return runDaemon(ctx, config, logger, nil)
			})(c)
		},
	}
}

// checkDaemonConfig is `server --check`: everything a start would load,
// loaded, and nothing served or written.
func checkDaemonConfig(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError("unexpected argument %q", c.Args().First())
	}
	setup, err := loadDaemonSetup(c.String("config"))
	if err != nil {
		return err
	}
	lines, err := setup.check()
	if err != nil {
		return err
	}
	printCheck(c.App.Writer, setup.path, lines)
	return nil
}

// daemonAddrs are where a running daemon listens; Metrics is nil when
// /metrics is served on HTTP. Reload does what SIGHUP does and reports
// whether the new policy took.
type daemonAddrs struct {
	API, HTTP, Metrics net.Addr
	HostKey            ssh.PublicKey
	CA                 ssh.PublicKey
	Reload             func() bool
}

// runDaemon runs the approval daemon until ctx is done. ready, when not
// nil, receives the addresses once both listeners accept.
func runDaemon(ctx context.Context, configPath string, logger *slog.Logger, ready chan<- daemonAddrs) error {
	setup, err := loadDaemonSetup(configPath)
	if err != nil {
		return err
	}
	cfg, policy, authority := setup.cfg, setup.policy, setup.authority
	hostKey, err := sshd.LoadOrCreateHostKey(cfg.HostKey, "approval daemon")
	if err != nil {
		return err
	}
	var (
		auditLog approvals.AuditLog
		headLog  *audit.Log
	)
	if cfg.AuditLog != "" {
		// Only the daemon's state machine writes this log (a journal): its
		// entries are exactly those of the applied commands.
		log, err := audit.Open(cfg.AuditLog, audit.Options{Journal: true, RepairTornTail: true, Logger: logger})
		if err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
		defer log.Close()
		auditLog, headLog = log, log
	}
	opts := approvals.Options{
		DataDir: cfg.DataDir, Policy: policy, Authority: authority, Logger: logger, Audit: auditLog,
		HostKey: hostKey.PublicKey(), Retention: cfg.Retention.D(),
	}
	if cfg.AuditLog != "" {
		// Requests pruned from the state answer from the log's index.
		ix, err := openDaemonIndex(cfg.DataDir, cfg.AuditLog, logger)
		if err != nil {
			return err
		}
		defer ix.Close()
		opts.Archive = ix
		indexCtx, stopIndex := context.WithCancel(ctx)
		indexDone := make(chan struct{})
		go func() {
			defer close(indexDone)
			followDaemonIndex(indexCtx, ix, logger)
		}()
		defer func() {
			stopIndex()
			<-indexDone
		}()
	}
	if cfg.Cluster != nil {
		// One listener for the node's peers and operators: raft and
		// forwarded writes, over the cluster's mutual TLS.
		if opts.Cluster, err = approvals.NewClusterOptions(cfg.Cluster); err != nil {
			return err
		}
	}
	svc, err := approvals.Open(opts)
	if err != nil {
		return err
	}
	defer svc.Close()
	if headLog != nil {
		defer signAuditHead(ctx, headLog, hostKey, logger)()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := newDaemonMetrics(reg, svc, logger)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if len(cfg.Webhooks) > 0 {
		go runWebhooks(runCtx, svc, cfg.Webhooks, logger)
	}

	// The connection limits are read once: a reload changes the people
	// and their limits, not the listener.
	hostKeys := []ssh.Signer{hostKey}
	if len(cfg.HostNames) > 0 {
		cert, err := newHostCertSigner(hostKey, authority, cfg.HostNames, time.Now)
		if err != nil {
			return err
		}
		go cert.renew(runCtx, logger)
		hostKeys = append(hostKeys, cert)
	}
	api := newAPIServer(svc, hostKeys, cfg.Limits, logger, metrics)
	apiL, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer apiL.Close()
	addrs := daemonAddrs{API: apiL.Addr(), HostKey: hostKey.PublicKey(), CA: authority.PublicKey()}
	// /metrics is on http_listen unless metrics_listen gives it an address
	// of its own, where it can be firewalled apart from what Git servers
	// fetch.
	withMetrics := cfg.MetricsListen == ""
	if cfg.HTTPListen != "" {
		l, stop, err := serveHTTP(cfg.HTTPListen, publicHandler(svc, authority, reg, withMetrics, logger), logger)
		if err != nil {
			return err
		}
		defer stop()
		addrs.HTTP = l.Addr()
	}
	if !withMetrics {
		l, stop, err := serveHTTP(cfg.MetricsListen, metricsHandler(reg, svc.Status), logger)
		if err != nil {
			return err
		}
		defer stop()
		addrs.Metrics = l.Addr()
	}
	go func() {
		if err := api.Serve(apiL); err != nil {
			logger.Error("api server stopped", "err", err)
		}
	}()
	defer api.Close()

	addrs.Reload = func() bool {
		if !reloadPolicy(configPath, svc, logger) {
			return false
		}
		api.policyChanged()
		return true
	}
	onHangup(runCtx, func() { addrs.Reload() })

	logger.Info("approval daemon listening", "api", addrs.API.String(), "http", cfg.HTTPListen, "metrics", cfg.MetricsListen,
		"host_key", ssh.FingerprintSHA256(hostKey.PublicKey()), "ca", ssh.FingerprintSHA256(authority.PublicKey()))
	if cfg.Cluster != nil {
		logger.Info("cluster node", "node", cfg.Cluster.NodeID, "bind", cfg.Cluster.Bind, "advertise", cfg.Cluster.AdvertiseAddr())
	}
	if cfg.PIDFile != "" {
		removePID, err := writePIDFile(cfg.PIDFile)
		if err != nil {
			return err
		}
		defer removePID()
	}
	if ready != nil {
		ready <- addrs
	}
	<-ctx.Done()
	logger.Info("approval daemon stopping")
	return nil
}

// reloadPolicy applies a changed policy file and reports whether it did.
// A file that does not load or validate keeps the running policy, and
// says why.
func reloadPolicy(configPath string, svc *approvals.Service, logger *slog.Logger) bool {
	cfg, err := approvals.LoadConfig(configPath)
	if err == nil {
		var p *approvals.Policy
		if p, err = approvals.NewPolicy(cfg); err == nil {
			if err = svc.SetPolicy(p); err == nil {
				logger.Info("policy reloaded")
				return true
			}
		}
	}
	logger.Error("policy reload failed; keeping the running policy", "err", err)
	return false
}

// serveHTTP serves h on addr until stop.
func serveHTTP(addr string, h http.Handler, logger *slog.Logger) (net.Listener, func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "addr", addr, "err", err)
		}
	}()
	return l, func() { hs.Close() }, nil
}

// publicHandler serves what Git servers and operators may fetch without
// authenticating: nothing in it is secret. Both revocation lists fail
// closed: when the state cannot be read, they answer 503 rather than an
// empty list.
func publicHandler(svc publicState, authority *ca.Authority, reg *prometheus.Registry, withMetrics bool, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ca.pub", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, authority.AuthorizedKey())
	})
	mux.HandleFunc("GET /v1/krl", krlHandler(svc, reg, logger))
	mux.HandleFunc("GET /v1/revoked", func(w http.ResponseWriter, _ *http.Request) {
		serials, err := svc.Revoked()
		if err != nil {
			logger.Error("serve /v1/revoked", "err", err)
			http.Error(w, "revocation list unavailable", http.StatusServiceUnavailable)
			return
		}
		if serials == nil {
			serials = []uint64{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSON(w, map[string]any{"ca": authority.AuthorizedKey(), "serials": serials})
	})
	if withMetrics {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", healthz(svc.Status))
	return mux
}

// auditHeadInterval is how often the daemon signs its audit log's head.
const auditHeadInterval = time.Minute

// signAuditHead signs the audit log's head with the daemon's host key into
// LOG.head now and every auditHeadInterval, so that anyone who pinned that
// key can tell a truncated or rewritten log. It returns a function that
// stops it after signing a last time.
func signAuditHead(ctx context.Context, log *audit.Log, key ssh.Signer, logger *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	sign := func() {
		if _, err := log.SignHead(key); err != nil {
			logger.Error("sign audit log head", "log", log.Path(), "err", err)
		}
	}
	sign()
	go func() {
		defer close(done)
		t := time.NewTicker(auditHeadInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				sign()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		sign()
	}
}

// publicState is what the public endpoints read from the Service.
type publicState interface {
	KRL() ([]byte, error)
	AllEvents(ctx context.Context) <-chan *approvals.Request
	Revoked() ([]uint64, error)
	Status() approvals.NodeStatus
}

// metricsHandler serves /metrics and /healthz on metrics_listen.
func metricsHandler(reg *prometheus.Registry, status func() approvals.NodeStatus) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", healthz(status))
	return mux
}

// healthz answers /healthz from the node's status (see serveHealth).
func healthz(status func() approvals.NodeStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { serveHealth(w, r, status()) }
}

// serveHealth answers /healthz: "ok" while the daemon takes writes, 503
// with what stops it otherwise; the node's whole status as JSON when asked
// with ?format=json or Accept: application/json (role, leader, last
// contact with it, applied index, and any problems).
func serveHealth(w http.ResponseWriter, r *http.Request, st approvals.NodeStatus) {
	code := http.StatusOK
	if !st.Healthy {
		code = http.StatusServiceUnavailable
	}
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = writeJSON(w, st)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if st.Healthy {
		fmt.Fprintln(w, "ok")
		return
	}
	fmt.Fprintln(w, "unhealthy: "+strings.Join(st.Problems, "; "))
}
