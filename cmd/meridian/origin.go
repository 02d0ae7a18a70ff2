package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/meridiancdn/meridian/origin"
)

// runOrigin serves the demo origin until ctx is done, then drains it.
func runOrigin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to serve the demo origin on")
	logf := addLogFlags(fs, "text")
	pos, err := parseFlags(fs, os.Stdout, args, "origin [flags]",
		"Serve the demo origin: generated objects whose size, caching headers, delay\nand failures the URL's query chooses (see origin/README.md). It takes no config file.")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("origin: unexpected arguments %q", pos)
	}
	log, err := logf.logger(os.Stderr)
	if err != nil {
		return err
	}
	log = log.With("component", "origin")

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	demo := origin.NewDemo(nil)
	srv := &http.Server{
		Handler:           demo,
		ReadHeaderTimeout: 10 * time.Second,  // a slow client may not hold a connection forever
		IdleTimeout:       120 * time.Second, // longer than the edges' idle pool timeout (90s)
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(demo.Close) // release fail=hang and delay= handlers

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("demo origin listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("origin: serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("demo origin shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		return fmt.Errorf("origin: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("origin: serve: %w", err)
	}
	return nil
}
