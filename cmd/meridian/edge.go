package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meridiancdn/meridian/edge/node"
)

// runEdge runs one edge node from a config file until ctx ends, reloading
// the file on SIGHUP.
func runEdge(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	path := fs.String("config", "", "edge config file (YAML)")
	logf := addLogFlags(fs, "json")
	pos, err := parseFlags(fs, os.Stdout, args, "edge --config FILE [flags]",
		"Run one edge node from its config file (deploy/edge.example.yaml shows every field).\n"+
			"SIGHUP reloads the file; SIGUSR1 reopens the access log file.")
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("edge: unexpected argument %q (the config is given as --config FILE)", pos[0])
	}
	if *path == "" {
		return errors.New("edge: --config FILE is required (meridian edge -h for more)")
	}
	cfg, err := node.Load(*path)
	if err != nil {
		return err
	}
	log, err := logf.logger(os.Stderr)
	if err != nil {
		return err
	}
	// The signals are taken before the node starts, so that one sent as
	// soon as it serves is never the default action (which ends the
	// process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR1 reopens the access log file (logrotate: move, then signal).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	n, err := node.Start(cfg, node.Options{Logger: log, ManageMemoryLimit: managesMemoryLimit()})
	if err != nil {
		return err
	}
	for {
		select {
		case <-usr1:
			if err := n.ReopenLogs(); err != nil {
				log.Error("log reopen failed; lines go to the old file", "err", err)
				break
			}
			log.Info("logs reopened")
		case <-hup:
			var rep node.ReloadReport
			next, err := node.Load(*path)
			if err == nil {
				rep, err = n.Reload(next)
			}
			if err != nil {
				log.Error("reload refused; the running config keeps serving", "config", *path, "err", err)
				break
			}
			log.Info("reloaded", "config", *path, "generation", rep.Generation,
				"applied", rep.Applied, "needs_restart", rep.NeedsRestart)
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout+cfg.Admin.DrainDelay)
			defer cancel()
			if err := n.Shutdown(sctx); err != nil {
				return fmt.Errorf("edge shutdown: %w", err)
			}
			return nil
		}
	}
}

// managesMemoryLimit says whether the node sets the process's soft memory
// limit from its cache budgets and disk index (node.Node.MemoryLimit):
// unless the operator set GOMEMLIMIT, which the runtime applies itself.
func managesMemoryLimit() bool { return os.Getenv("GOMEMLIMIT") == "" }
