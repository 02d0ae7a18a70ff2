// The module's layout, checked: which package may depend on which (the
// boundaries of /work/shared/DESIGN.md's map) and that every package says
// what it is in a doc comment.
package meridian_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/meridiancdn/meridian"

// listed is what `go list -json` says of a package.
type listed struct {
	ImportPath string
	Name       string
	Dir        string
	Doc        string
	Imports    []string
	Deps       []string // transitive, standard library included
	GoFiles    []string
}

// packages lists the module's packages (tests not included: a test may
// import what its package may not).
func packages(t *testing.T) map[string]listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; is the test run from the module root?", len(pkgs))
	}
	return pkgs
}

// ours returns the module's packages in deps.
func ours(deps []string) []string {
	var out []string
	for _, d := range deps {
		if d == module || strings.HasPrefix(d, module+"/") {
			out = append(out, strings.TrimPrefix(d, module+"/"))
		}
	}
	return out
}

func under(path, dir string) bool {
	path = strings.TrimPrefix(path, module+"/")
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func TestImportBoundaries(t *testing.T) {
	pkgs := packages(t)
	// never names a folder: its package and every one below it; a
	// trailing "." names the one package alone ("edge/." is edge, not
	// edge/fill).
	rules := []struct {
		from, never, why string
	}{
		{"ring", "", "ring is a leaf: pure placement, it imports nothing of the module"},
		{"edge/fill", "", "the fill contract is a leaf that both the edge and the cluster import"},
		{"edge/cluster", "edge/.", "the cluster meets the edge through edge/fill's signatures, not the edge's own package"},
		{"internal/poll", "", "the tests' polling helper is a leaf, so that internal tests of any package can use it"},
		{"internal/fakeclock", "", "the tests' clock is a leaf, so that internal tests of any package can use it"},
		{"origin", "edge", "the upstream side knows nothing of the edge above it"},
		{"geo", "edge", "steering knows nothing of the edges it steers to"},
		{"edge/node", "geo", "a node needs a point on the globe, not GeoIP and DNS"},
		{"edge", "deploy", "the serving code does not link the benchmarks"},
		{"origin", "deploy", "the serving code does not link the benchmarks"},
		{"geo", "deploy", "the serving code does not link the benchmarks"},
		{"ring", "deploy", "the serving code does not link the benchmarks"},
		{"edge/listen", "edge/cluster", "the listeners serve one handler; a cluster is assembled by edge/node"},
		{"edge/listen", "edge/node", "the listeners serve one handler; a node is assembled by edge/node"},
	}
	// Rules for one package alone, not the folders below it.
	only := []struct {
		pkg, never, why string
	}{
		{"edge", "edge/listen", "request semantics know nothing of the listeners that call them (the fast front uses edge's hit contract)"},
	}
	// Packages whose dependencies within the module are listed in full
	// (the package and the folders below it).
	leaves := []struct {
		pkg string
		may []string
		why string
	}{
		{"edge/store", []string{"edge/store", "edge/policy"}, "the store is a leaf below edge: it knows RFC 9111's policy, not the edge that fills it, its listeners, its cluster or its node"},
	}
	for _, p := range pkgs {
		for _, l := range leaves {
			if !under(p.ImportPath, l.pkg) {
				continue
			}
			for _, d := range ours(p.Deps) {
				if !slices.ContainsFunc(l.may, func(m string) bool { return under(d, m) }) {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, l.why)
				}
			}
		}
		for _, r := range rules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			for _, d := range ours(p.Deps) {
				if r.never == "" || under(d, r.never) || d == strings.TrimSuffix(r.never, "/.") {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
		for _, r := range only {
			if p.ImportPath != module+"/"+r.pkg {
				continue
			}
			for _, d := range ours(p.Deps) {
				if under(d, r.never) {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
		// Only commands import commands (and Go forbids importing a
		// main package): library code never reaches into cmd/.
		if p.Name != "main" {
			for _, d := range ours(p.Deps) {
				if under(d, "cmd") {
					t.Errorf("library package %s depends on %s", p.ImportPath, d)
				}
			}
		}
	}
}

// The binary links deploy/bench for its `meridian bench` subcommand only:
// in cmd/meridian, only the bench command's files import it, so the
// serving paths (edge, up, validate, ...) never call into it.
func TestBenchOnlyBehindItsCommand(t *testing.T) {
	pkgs := packages(t)
	for _, p := range pkgs {
		if p.Name != "main" {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			af, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				ip, _ := strconv.Unquote(imp.Path.Value)
				if under(ip, "deploy") && !strings.HasPrefix(f, "bench") {
					t.Errorf("%s imports %s outside the bench command (bench*.go)", path, ip)
				}
			}
		}
	}
}

// Every package starts with a doc sentence that says what it is.
func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range packages(t) {
		if len(p.GoFiles) == 0 {
			continue // only tests, as this one
		}
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command "
		}
		if !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: package doc %q does not start with %q", p.ImportPath, p.Doc, want)
		}
	}
}
