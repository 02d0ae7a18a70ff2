package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/meridiancdn/meridian/edge"
)

// runEdge runs one edge node from a config file until ctx ends.
func runEdge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	path := fs.String("config", "", "edge config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("edge: --config FILE is required")
	}
	cfg, err := edge.LoadConfig(*path)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("node", cfg.Name)
	h, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	srv := edge.NewServer(cfg, h, log)
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("edge listening", "http", srv.Addr(), "https+h3", srv.TLSAddr())
	<-ctx.Done()
	log.Info("edge draining")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("edge shutdown: %w", err)
	}
	return nil
}
