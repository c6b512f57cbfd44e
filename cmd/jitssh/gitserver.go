package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/sshd"
)

const defaultShutdownGrace = 30 * time.Second

func gitServerCommand() *cli.Command {
	return &cli.Command{
		Name:  "git-server",
		Usage: "run the native Git SSH front-end (certificates only)",
		Description: "Serves the bare repositories under the configured root to clients whose\n" +
			"certificates a trusted CA signed. SIGHUP reloads CAs and revocations;\n" +
			"SIGTERM stops accepting and lets running operations finish.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration file (YAML)", EnvVars: []string{"JITSSH_GIT_SERVER_CONFIG"}, Required: true},
		},
		Action: serveAction(func(ctx context.Context, config string, logger *slog.Logger) error {
			return runGitServer(ctx, config, logger, nil)
		}),
	}
}

// runGitServer runs until ctx is done. ready, when not nil, receives the
// listening address once connections are accepted.
func runGitServer(ctx context.Context, configPath string, logger *slog.Logger, ready chan<- net.Addr) error {
	cfg, err := sshd.LoadServerConfig(configPath)
	if err != nil {
		return err
	}
	hostKey, err := sshd.LoadOrCreateHostKey(cfg.HostKey, "git-server")
	if err != nil {
		return err
	}
	hostKeys := []ssh.Signer{hostKey}
	if cfg.HostCertificate != "" {
		cert, err := sshd.LoadHostCertificate(hostKey, cfg.HostCertificate, time.Now())
		if err != nil {
			return err
		}
		hostKeys = append(hostKeys, cert)
	}
	var repos *sshd.Repos
	var upstream *sshd.Upstream
	if cfg.Upstream != nil {
		opts, err := cfg.Upstream.UpstreamOptions(logger)
		if err != nil {
			return err
		}
		if upstream, err = sshd.NewUpstream(opts); err != nil {
			return err
		}
	} else if repos, err = sshd.NewRepos(cfg.Repos); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var urlSource *sshd.KRLURL
	if urls := cfg.Revocation.URLs(); len(urls) > 0 {
		urlSource = sshd.NewKRLURL(urls, time.Duration(cfg.Revocation.Refresh), time.Duration(cfg.Revocation.MaxStale), logger)
		// One fetch before serving, so a reachable daemon means no
		// window in which everyone is refused.
		if err := urlSource.Fetch(runCtx); err != nil {
			logger.Warn("first revocation list fetch failed; refusing certificates until one succeeds", "err", err)
		}
	}
	var checker sshd.RevocationChecker
	if urlSource != nil {
		checker = urlSource
	}
	v, err := cfg.Verifier(checker)
	if err != nil {
		return err
	}
	var current atomic.Pointer[sshd.Verifier]
	current.Store(v)

	git, err := sshd.NewGit(sshd.GitOptions{})
	if err != nil {
		return err
	}
	defer git.Close()

	rec, closeRec, err := openRecorder(cfg.AuditLog, logger)
	if err != nil {
		return err
	}
	defer closeRec()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := sshd.NewServer(sshd.ServerOptions{
		HostKeys:               hostKeys,
		Verifier:               current.Load,
		Repos:                  repos,
		Git:                    git,
		Upstream:               upstream,
		Recorder:               rec,
		Logger:                 logger,
		Metrics:                sshd.NewMetrics(reg),
		HandshakeTimeout:       time.Duration(cfg.Limits.HandshakeTimeout),
		IdleTimeout:            time.Duration(cfg.Limits.IdleTimeout),
		MaxConnections:         cfg.Limits.MaxConnections,
		MaxPerSource:           cfg.Limits.MaxPerSource,
		MaxSessionsPerConn:     cfg.Limits.MaxSessionsPerConn,
		MaxHandshakes:          cfg.Limits.MaxHandshakes,
		MaxHandshakesPerSource: cfg.Limits.MaxHandshakesPerSource,
		KeepExpired:            cfg.KeepExpired,
	})
	if err != nil {
		return err
	}
	if urlSource != nil {
		// A new revocation closes the connections it concerns at once,
		// rather than at their next periodic check.
		urlSource.OnChange(srv.Recheck)
		go urlSource.Run(runCtx)
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsListen != "" {
		stopHTTP, err := serveMetrics(cfg.MetricsListen, reg, logger)
		if err != nil {
			l.Close()
			return err
		}
		defer stopHTTP()
	}
	serving := []any{"addr", l.Addr().String(), "host_key", ssh.FingerprintSHA256(hostKey.PublicKey()), "trusted_cas", len(v.CAs)}
	if upstream != nil {
		serving = append(serving, "upstream", cfg.Upstream.Address, "profile", cfg.Upstream.Profile, "accounts", len(cfg.Upstream.Accounts), "service_account", cfg.Upstream.ServiceAccount)
	} else {
		serving = append(serving, "repos", repos.Root())
	}
	logger.Info("git-server listening", serving...)

	onHangup(runCtx, func() { reloadVerifier(configPath, checker, &current, upstream, logger) })

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	if ready != nil {
		ready <- l.Addr()
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	grace := time.Duration(cfg.Limits.ShutdownGrace)
	if grace <= 0 {
		grace = defaultShutdownGrace
	}
	logger.Info("git-server stopping", "grace", grace.String())
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), grace)
	defer cancelShutdown()
	return srv.Shutdown(shutdownCtx)
}

// reloadVerifier rereads the trusted CAs and the KRL file, and, behind a
// Git host, the people's accounts there. A bad configuration keeps the
// running one and says why.
func reloadVerifier(configPath string, checker sshd.RevocationChecker, current *atomic.Pointer[sshd.Verifier], upstream *sshd.Upstream, logger *slog.Logger) {
	cfg, err := sshd.LoadServerConfig(configPath)
	if err == nil && (upstream == nil) != (cfg.Upstream == nil) {
		err = errors.New("switching between repos and upstream needs a restart")
	}
	if err == nil {
		var v *sshd.Verifier
		v, err = cfg.Verifier(checker)
		if err == nil && upstream != nil {
			err = upstream.SetAccounts(cfg.Upstream.Accounts, cfg.Upstream.ServiceAccount)
		}
		if err == nil {
			current.Store(v)
			logger.Info("reloaded trusted CAs and revocations", "trusted_cas", len(v.CAs))
			return
		}
	}
	logger.Error("reload failed; keeping the running configuration", "err", err)
}

// serveMetrics serves Prometheus metrics and a health check.
func serveMetrics(addr string, reg *prometheus.Registry, logger *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "err", err)
		}
	}()
	return func() { hs.Close() }, nil
}
