package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/origin"
)

// meridianShim returns a directory holding a `meridian` command that runs
// this test binary's main.
func meridianShim(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nMERIDIAN_RUN_MAIN=1 exec '" + exe + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "meridian"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// recipe is one of the README's common recipes: a config and commands,
// each with the text its output must contain.
type recipe struct {
	title, config string
	cmds          [][2]string
}

func readmeRecipes(t *testing.T) []recipe {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, "<!-- recipes:begin -->"), strings.Index(s, "<!-- recipes:end -->")
	if i < 0 || j < i {
		t.Fatal("README has no recipes block")
	}
	var out []recipe
	for _, part := range strings.Split(s[i:j], "\n### ")[1:] {
		title, body, _ := strings.Cut(part, "\n")
		r := recipe{title: title}
		r.config = fenced(body, "```yaml\n")
		for _, line := range strings.Split(fenced(body, "```sh\n"), "\n") {
			switch {
			case strings.HasPrefix(line, "#=> "):
				if len(r.cmds) == 0 {
					t.Fatalf("%s: expectation before any command", title)
				}
				r.cmds[len(r.cmds)-1][1] = strings.TrimPrefix(line, "#=> ")
			case line != "" && !strings.HasPrefix(line, "#"):
				r.cmds = append(r.cmds, [2]string{line, ""})
			}
		}
		if r.config == "" || len(r.cmds) == 0 {
			t.Fatalf("recipe %q lacks a yaml or sh block", title)
		}
		for _, c := range r.cmds {
			if c[1] == "" {
				t.Fatalf("recipe %q: %s has no #=> line", title, c[0])
			}
		}
		out = append(out, r)
	}
	if len(out) < 5 {
		t.Fatalf("only %d recipes in the README", len(out))
	}
	return out
}

// fenced returns the text of the first code block opened by fence.
func fenced(s, fence string) string {
	i := strings.Index(s, fence)
	if i < 0 {
		return ""
	}
	s = s[i+len(fence):]
	j := strings.Index(s, "```")
	if j < 0 {
		return ""
	}
	return s[:j]
}

// TestReadmeRecipes runs each common recipe of the README: its config is
// validated as `meridian validate` does, an edge serves it in front of
// the demo origin, and its commands run (curl, meridian sign-url) as an
// operator would paste them. The recipes' fixed addresses become free
// ones, and the GeoIP path MaxMind's test database.
func TestReadmeRecipes(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl not installed")
	}
	demo := origin.NewDemo(nil)
	defer demo.Close()
	osrv := httptest.NewServer(demo)
	defer osrv.Close()
	geoDB, err := filepath.Abs("../../geo/testdata/geoip/GeoIP2-Country-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	bin := meridianShim(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, r := range readmeRecipes(t) {
		t.Run(r.title, func(t *testing.T) {
			conf := strings.NewReplacer(
				"http://127.0.0.1:9000", osrv.URL,
				"127.0.0.1:8080", "127.0.0.1:0",
				"/usr/share/GeoIP/GeoLite2-Country.mmdb", geoDB,
			).Replace(r.config)
			dir := t.TempDir()
			path := filepath.Join(dir, "edge.yaml")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := validate(&out, []string{path}); err != nil {
				t.Fatalf("meridian validate: %v", err)
			}
			cfg, err := node.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := edge.New(cfg.Config, edge.Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			srv := listen.NewServer(cfg.Config, h, listen.Options{Logger: log})
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			for _, c := range r.cmds {
				cmdline := strings.ReplaceAll(c[0], "127.0.0.1:8080", srv.Addr())
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				cmd := exec.CommandContext(ctx, "bash", "-c", cmdline)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
				got, err := cmd.CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("%s\n%v\n%s", c[0], err, got)
				}
				if !strings.Contains(string(got), c[1]) {
					t.Fatalf("%s\nprinted:\n%s\nthe README says it shows %q", c[0], got, c[1])
				}
			}
		})
	}
}
