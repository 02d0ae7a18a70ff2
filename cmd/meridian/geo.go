package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/meridiancdn/meridian/geo"
)

// runGeo runs the geo steering service (DNS and HTTP answers, probes of
// every region) from a config file until ctx ends.
func runGeo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("geo", flag.ContinueOnError)
	path := fs.String("config", "", "geo config file (YAML)")
	logf := addLogFlags(fs, "json")
	pos, err := parseFlags(fs, os.Stdout, args, "geo --config FILE [flags]",
		"Run the geo steering service (DNS and HTTP answers, probes of every region)\nfrom its config file (geo/README.md shows every field).")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("geo: unexpected argument %q (the config is given as --config FILE)", pos[0])
	}
	if *path == "" {
		return errors.New("geo: --config FILE is required (meridian geo -h for more)")
	}
	cfg, err := geo.LoadConfig(*path)
	if err != nil {
		return err
	}
	if cfg.DNS.Listen == "" && cfg.HTTP.Listen == "" {
		return fmt.Errorf("geo: %s sets neither dns.listen nor http.listen: nothing to serve", *path)
	}
	log, err := logf.logger(os.Stderr)
	if err != nil {
		return err
	}
	log = log.With("component", "geo")
	svc, err := geo.New(cfg, geo.Options{Logger: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	if err := svc.Run(ctx); err != nil {
		return fmt.Errorf("geo: %w", err)
	}
	return nil
}
