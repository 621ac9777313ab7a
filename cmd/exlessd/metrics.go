package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/exless/exless/daemon"
)

// listenMetrics opens the scraper's listener of metrics.listen: a loopback
// TCP port, or a Unix socket made like the API socket.
func listenMetrics(cfg daemon.Config) (net.Listener, error) {
	if cfg.Metrics.IsSocket() {
		ln, err := listenUnix(cfg.Metrics.Listen, cfg.SocketMode, cfg.SocketGroup)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	return ln, nil
}

// withMetrics runs api and, beside it, GET /metrics on ln until ctx ends or
// either fails. A scrape holds no secrets, so it needs no policy; the
// limits keep a stuck or hostile scraper from holding connections.
func withMetrics(ctx context.Context, api func(context.Context) error, ln net.Listener, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	err := api(ctx)
	cancel()
	sctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	_ = hs.Shutdown(sctx)
	if serr := <-errc; err == nil && !errors.Is(serr, http.ErrServerClosed) {
		err = fmt.Errorf("metrics listener: %w", serr)
	}
	return err
}
