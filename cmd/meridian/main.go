// Command meridian is the one binary of the Meridian CDN: it parses flags and
// config and wires the edge, origin, geo and ring packages together.
//
// Subcommands:
//
//	meridian up                 run a whole CDN on loopback (demo)
//	meridian edge --config F    run one edge node
//	meridian origin             run the demo origin
//	meridian geo --config F     run the geo steering service
//	meridian validate [--explain] F (or --config F)
//	                            check a config file and every file it
//	                            names without starting; with --explain,
//	                            print an edge's upstream plan
//	meridian sign-url --config F URL
//	                            print URL signed with its site's signed_urls key
//	meridian bench ...          the benchmark's load generators (deploy/bench;
//	                            linked into the binary for this command only)
//	meridian version            the build: version, VCS revision, Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meridiancdn/meridian/edge/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h / --help: the usage was printed
		}
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
  sign-url   print a signed URL for a site with signed_urls (--config FILE URL)
  bench      load generators and probes for deploy/bench/run.sh
  version    print the build (version, VCS revision, Go version)

Commands that run something take --log-level (debug, info, warn, error)
and --log-format (json, text); -h after a command lists its flags.
In config files, sizes take units (256MiB, 1GB, 64k) and durations d
for days (7d, 1d12h).`

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
	case "sign-url":
		return runSignURL(ctx, rest)
	case "bench":
		return runBench(ctx, rest)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		if _, err := parseFlags(fs, os.Stdout, args[1:], "version", "Print the build: version, VCS revision, Go version."); err != nil {
			return err
		}
		b := node.Build()
		rev := b.Revision
		if b.Modified {
			rev += " (modified)"
		}
		fmt.Printf("meridian %s\nrevision %s\n%s\n", b.Version, rev, b.GoVersion)
		return nil
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// parseFlags parses a command's arguments with fs, and returns its
// positional arguments: flags may come before, between or after them
// (until "--", after which every argument is positional). -h or --help
// prints "usage: meridian SYNOPSIS", about and the flags on out, and
// returns flag.ErrHelp, on which main exits 0. Any other error names the
// command and says how to get its usage.
func parseFlags(fs *flag.FlagSet, out io.Writer, args []string, synopsis, about string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(out, "usage: meridian %s\n\n%s\n", synopsis, about)
				if hasFlags(fs) {
					fmt.Fprintln(out, "\nflags:")
					fs.SetOutput(out)
					fs.PrintDefaults()
					fs.SetOutput(io.Discard)
				}
				return nil, flag.ErrHelp
			}
			return nil, fmt.Errorf("%s: %w\nusage: meridian %s (meridian %s -h for more)", fs.Name(), err, synopsis, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// hasFlags reports whether fs defines any flag.
func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}
