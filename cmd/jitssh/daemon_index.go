package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jitssh/jitssh/audit"
)

// The daemon keeps a persistent index of its own audit log in its data
// directory, so that a request that left its in-memory state (see
// retention in the README) still answers `jitssh requests show`.

// daemonIndexName is the index's file in data_dir.
const daemonIndexName = "audit-index.db"

// daemonIndexEvery is how often the daemon indexes what its log gained.
const daemonIndexEvery = 5 * time.Second

// openDaemonIndex opens the index of the daemon's log, without waiting for
// a first build, which runs in the background with the catching up.
func openDaemonIndex(dataDir, logPath string, logger *slog.Logger) (*audit.IndexFile, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open audit index: %w", err)
	}
	path := filepath.Join(dataDir, daemonIndexName)
	ix, err := audit.OpenIndexFileBehind(path, logPath)
	if err != nil {
		return nil, err
	}
	if ix.Rebuilt != "" {
		logger.Warn("audit index rebuilt from the start of the log", "index", path, "why", ix.Rebuilt)
	}
	return ix, nil
}

// followDaemonIndex catches the index up with the log until ctx ends.
func followDaemonIndex(ctx context.Context, ix *audit.IndexFile, logger *slog.Logger) {
	t := time.NewTicker(daemonIndexEvery)
	defer t.Stop()
	var failing bool
	for {
		start := time.Now()
		n, err := ix.CatchUp()
		switch {
		case err != nil && !failing:
			logger.Error("audit index cannot follow the log; archived requests may not answer", "err", err)
			failing = true
		case err == nil && failing:
			logger.Info("audit index follows the log again")
			failing = false
		case err == nil && n > indexBatchLogged:
			logger.Info("audit index caught up", "entries", n, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexBatchLogged: catching up more entries than this at once (a first
// build, a long stop) is worth a line in the log.
const indexBatchLogged = 10_000
