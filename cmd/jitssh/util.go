package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// signalContext ends on Ctrl-C or SIGTERM.
func signalContext(c *cli.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
}

// writeJSONLine writes v as one line, for streams.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// serveAction runs a long-lived service on its --config until SIGTERM or
// Ctrl-C, logging JSON lines to stderr.
func serveAction(run func(ctx context.Context, config string, logger *slog.Logger) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		logger := slog.New(slog.NewJSONHandler(c.App.ErrWriter, nil))
		ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
		defer stop()
		return run(ctx, c.String("config"), logger)
	}
}

// onHangup calls reload on every SIGHUP until ctx is done.
func onHangup(ctx context.Context, reload func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload()
			}
		}
	}()
}
