package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
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
		},
		Action: serveAction(func(ctx context.Context, config string, logger *slog.Logger) error {
			return runDaemon(ctx, config, logger, nil)
		}),
	}
}

// daemonAddrs are where a running daemon listens.
type daemonAddrs struct {
	API, HTTP net.Addr
	HostKey   ssh.PublicKey
	CA        ssh.PublicKey
}

// runDaemon runs the approval daemon until ctx is done. ready, when not
// nil, receives the addresses once both listeners accept.
func runDaemon(ctx context.Context, configPath string, logger *slog.Logger, ready chan<- daemonAddrs) error {
	cfg, err := approvals.LoadConfig(configPath)
	if err != nil {
		return err
	}
	policy, err := approvals.NewPolicy(cfg)
	if err != nil {
		return err
	}
	authority, err := ca.Load(cfg.CADir)
	if err != nil {
		return err
	}
	hostKey, err := sshd.LoadOrCreateHostKey(cfg.HostKey)
	if err != nil {
		return err
	}
	var auditLog approvals.AuditLog
	if cfg.AuditLog != "" {
		// Only the daemon's state machine writes this log (a journal): its
		// entries are exactly those of the applied commands.
		log, err := audit.Open(cfg.AuditLog, audit.Options{Journal: true, RepairTornTail: true, Logger: logger})
		if err != nil {
			return fmt.Errorf("open audit log: %w", err)
		}
		defer log.Close()
		auditLog = log
		defer signAuditHead(ctx, log, hostKey, logger)()
	}
	opts := approvals.Options{
		DataDir: cfg.DataDir, Policy: policy, Authority: authority, Logger: logger, Audit: auditLog,
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := newDaemonMetrics(reg, svc)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if len(cfg.Webhooks) > 0 {
		go runWebhooks(runCtx, svc, cfg.Webhooks, logger)
	}

	api := newAPIServer(svc, hostKey, logger, metrics)
	apiL, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer apiL.Close()
	var httpL net.Listener
	if cfg.HTTPListen != "" {
		httpL, err = net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.HTTPListen, err)
		}
		hs := &http.Server{Handler: publicHandler(svc, authority, reg), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hs.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("http server stopped", "error", err.Error())
			}
		}()
		defer hs.Close()
	}
	go func() {
		if err := api.Serve(apiL); err != nil {
			logger.Error("api server stopped", "error", err.Error())
		}
	}()
	defer api.Close()

	onHangup(runCtx, func() { reloadPolicy(configPath, svc, logger) })

	addrs := daemonAddrs{API: apiL.Addr(), HostKey: hostKey.PublicKey(), CA: authority.PublicKey()}
	if httpL != nil {
		addrs.HTTP = httpL.Addr()
	}
	logger.Info("approval daemon listening", "api", addrs.API.String(), "http", cfg.HTTPListen,
		"host_key", ssh.FingerprintSHA256(hostKey.PublicKey()), "ca", ssh.FingerprintSHA256(authority.PublicKey()))
	if cfg.Cluster != nil {
		logger.Info("cluster node", "node", cfg.Cluster.NodeID, "bind", cfg.Cluster.Bind, "advertise", cfg.Cluster.AdvertiseAddr())
	}
	if ready != nil {
		ready <- addrs
	}
	<-ctx.Done()
	logger.Info("approval daemon stopping")
	return nil
}

// reloadPolicy applies a changed policy file. A file that does not load
// or validate keeps the running policy, and says why.
func reloadPolicy(configPath string, svc *approvals.Service, logger *slog.Logger) {
	cfg, err := approvals.LoadConfig(configPath)
	if err == nil {
		var p *approvals.Policy
		if p, err = approvals.NewPolicy(cfg); err == nil {
			if err = svc.SetPolicy(p); err == nil {
				logger.Info("policy reloaded")
				return
			}
		}
	}
	logger.Error("policy reload failed; keeping the running policy", "error", err.Error())
}

// publicHandler serves what Git servers and operators may fetch without
// authenticating: nothing in it is secret.
func publicHandler(svc *approvals.Service, authority *ca.Authority, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ca.pub", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, authority.AuthorizedKey())
	})
	mux.HandleFunc("GET /v1/krl", func(w http.ResponseWriter, _ *http.Request) {
		krl, err := svc.KRL()
		if err != nil {
			http.Error(w, "revocation list unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(krl)))
		w.Write(krl)
	})
	mux.HandleFunc("GET /v1/revoked", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		serials := svc.RevokedSerials()
		if serials == nil {
			serials = []uint64{}
		}
		_ = writeJSON(w, map[string]any{"ca": authority.AuthorizedKey(), "serials": serials})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		serveHealth(w, r, svc.Status())
	})
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
