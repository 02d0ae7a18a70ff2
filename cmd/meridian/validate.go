package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/geo"
)

// runValidate checks a config file without starting anything. It tells an
// edge config (it has sites) from a geo config (it has regions).
func runValidate(_ context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("validate: usage: meridian validate FILE")
	}
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
		if _, err := node.Load(args[0]); err != nil {
			return err
		}
		fmt.Printf("%s: valid edge config\n", args[0])
	case top["regions"] != nil:
		if err := validateGeo(args[0]); err != nil {
			return err
		}
		fmt.Printf("%s: valid geo config\n", args[0])
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
