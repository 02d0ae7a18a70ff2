package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/geo"
	"github.com/meridiancdn/meridian/origin/yamlconf"
)

// The kinds of config file validate tells apart.
var (
	edgeKind = yamlconf.Kind{Name: "edge config", Of: node.Config{}, Marker: "sites"}
	geoKind  = yamlconf.Kind{Name: "geo config", Of: geo.Config{}, Marker: "regions"}
)

// runValidate checks a config file without starting anything.
func runValidate(_ context.Context, args []string) error {
	return validate(os.Stdout, args)
}

const validateUsage = "validate [--explain] FILE (or --config FILE)"

// validate tells an edge config (it has sites) from a geo config (it has
// regions, and no sites), says which it took it for and why, decodes and
// validates it, and reads every file it names (certificates, keys, token
// and secret files, GeoIP databases) as the service would at start. With
// --explain it prints an edge config's upstream plan: where each site's
// misses go, in order.
func validate(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	explain := fs.Bool("explain", false, "print the upstream plan of an edge config")
	config := fs.String("config", "", "the config file (or give it as FILE)")
	pos, err := parseFlags(fs, out, args, validateUsage,
		"Check a config file without starting anything: an edge config (it has sites:) or\n"+
			"a geo config (it has regions: and no sites:), and every file it names: certificates,\n"+
			"keys, token and secret files, GeoIP databases.")
	if err != nil {
		return err
	}
	file := *config
	switch {
	case len(pos) == 1 && file == "":
		file = pos[0]
	case len(pos) == 0 && file != "":
	default:
		return errors.New("validate: usage: meridian " + validateUsage)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	kind, why, err := yamlconf.Detect(data, edgeKind, geoKind)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var plan *node.Plan
	switch kind.Name {
	case edgeKind.Name:
		plan, err = validateEdge(file)
	case geoKind.Name:
		if *explain {
			return fmt.Errorf("%s: --explain prints an edge config's plan; this is a geo config (%s)", file, why)
		}
		err = validateGeo(file)
	}
	if err != nil {
		a := map[string]string{edgeKind.Name: "an", geoKind.Name: "a"}[kind.Name]
		return fmt.Errorf("%w\n(read as %s %s: %s)", err, a, kind.Name, why)
	}
	fmt.Fprintf(out, "%s: valid %s (%s)\n", file, kind.Name, why)
	if *explain {
		return plan.Explain(out)
	}
	return nil
}

// validateEdge checks an edge config and the files it names, and builds
// its plan.
func validateEdge(file string) (*node.Plan, error) {
	cfg, err := node.Load(file)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckFiles(time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	// Building the plan builds every ring the node would: what
	// `meridian edge` would refuse, this refuses.
	plan, err := node.BuildPlan(cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return plan, nil
}

// validateGeo checks a geo steering config and its GeoIP database.
func validateGeo(file string) error {
	cfg, err := geo.LoadConfig(file)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
