package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// moduleRoot is the repository root, relative to this package.
const moduleRoot = ".."

// meridian is the binary built once by TestMain for `meridian validate`;
// buildErr says why there is none. They are set before any test runs and
// only read afterwards.
var (
	meridian string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meridian-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		os.Exit(1)
	}
	meridian = filepath.Join(dir, "meridian")
	buildErr = buildMeridian(meridian)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildMeridian builds ./cmd/meridian into bin. Other packages are edited
// while these tests run, so a failed build is tried again a few times.
func buildMeridian(bin string) error {
	const attempts = 3
	var err error
	for i := range attempts {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/meridian")
		cmd.Dir = moduleRoot
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("go build ./cmd/meridian (attempt %d of %d): %w\n%s", i+1, attempts, err, out.String())
	}
	return err
}

// runValidate runs `meridian validate` on a config and returns its output.
func runValidate(t *testing.T, name string, config []byte) (string, error) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no meridian binary to validate with: %v", buildErr)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, meridian, "validate", path).CombinedOutput()
	return string(out), err
}

// obj is a decoded YAML or JSON mapping.
type obj = map[string]any

// readDocs decodes every document of a (multi-document) YAML file.
func readDocs(path string) ([]obj, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeDocs(path, data)
}

func decodeDocs(name string, data []byte) ([]obj, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []obj
	for i := 0; ; i++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if v == nil {
			continue
		}
		m, ok := v.(obj)
		if !ok {
			return nil, fmt.Errorf("%s: document %d: not a mapping but %T", name, i, v)
		}
		docs = append(docs, m)
	}
}

// get walks a path of mapping keys and returns nil where it ends early.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func getMap(v any, path ...string) obj {
	m, _ := get(v, path...).(obj)
	return m
}

func getList(v any, path ...string) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func getStr(v any, path ...string) string {
	switch x := get(v, path...).(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func getInt(v any, path ...string) (int, bool) {
	n, ok := get(v, path...).(int)
	return n, ok
}

// mapsOf returns the mappings of a list, skipping anything else.
func mapsOf(l []any) []obj {
	out := make([]obj, 0, len(l))
	for _, v := range l {
		if m, ok := v.(obj); ok {
			out = append(out, m)
		}
	}
	return out
}

// stringMap returns a mapping of strings (labels, selectors).
func stringMap(v any) map[string]string {
	m, _ := v.(obj)
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// subset reports whether every pair of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func describe(o obj) string {
	return getStr(o, "kind") + "/" + getStr(o, "metadata", "name")
}

// walk returns the files under dir whose names end in one of exts.
func walk(t *testing.T, dir string, exts ...string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, e := range exts {
			if !d.IsDir() && strings.HasSuffix(path, e) {
				files = append(files, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
