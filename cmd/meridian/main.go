// Command meridian is the one binary of the Meridian CDN: it parses flags and
// config and wires the edge, origin, geo and ring packages together.
//
// Subcommands:
//
//	meridian up                 run a whole CDN on loopback (demo)
//	meridian edge --config F    run one edge node
//	meridian origin             run the demo origin
//	meridian geo --config F     run the geo steering service
//	meridian validate [--explain] F
//	                            check a config file without starting; with
//	                            --explain, print an edge's upstream plan
//	meridian bench ...          the benchmark's load generators (deploy/bench;
//	                            linked into the binary for this command only)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "meridian:", err)
		os.Exit(1)
	}
}

const usage = `usage: meridian <command> [flags]

commands:
  up         run a whole multi-region CDN on loopback, no config needed
  edge       run one edge node (--config FILE)
  origin     run the demo origin
  geo        run the geo steering service (--config FILE)
  validate   check a config file without starting anything
  bench      load generators and probes for deploy/bench/run.sh`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return runUp(ctx, rest)
	case "edge":
		return runEdge(ctx, rest)
	case "origin":
		return runOrigin(ctx, rest)
	case "geo":
		return runGeo(ctx, rest)
	case "validate":
		return runValidate(ctx, rest)
	case "bench":
		return runBench(ctx, rest)
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}
