package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/geo"
)

// runValidate checks a config file without starting anything. It tells an
// edge config (it has sites) from a geo config (it has regions).
// With --explain it prints an edge config's upstream plan: where each
// site's misses go, in order.
func runValidate(_ context.Context, args []string) error {
	return validate(os.Stdout, args)
}

func validate(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	explain := fs.Bool("explain", false, "print the upstream plan of an edge config")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errors.New("validate: usage: meridian validate [--explain] FILE")
	}
	args = fs.Args()
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	switch {
	case top["sites"] != nil:
		cfg, err := node.Load(args[0])
		if err != nil {
			return err
		}
		if err := checkEdgeTLS(cfg); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		// Building the plan builds every ring the node would: what
		// `meridian edge` would refuse, this refuses.
		plan, err := node.BuildPlan(cfg, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		fmt.Fprintf(out, "%s: valid edge config\n", args[0])
		if *explain {
			return plan.Explain(out)
		}
	case top["regions"] != nil:
		if err := validateGeo(args[0]); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: valid geo config\n", args[0])
	default:
		return fmt.Errorf("%s: neither an edge config (no sites:) nor a geo config (no regions:)", args[0])
	}
	return nil
}

// validateGeo checks a geo steering config.
func validateGeo(path string) error {
	_, err := geo.LoadConfig(path)
	return err
}
