package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comments inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		more := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`))
		cur.WriteString(" ")
		if !more {
			cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
			out = append(out, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
			cur.Reset()
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends inside a continued line", path)
	}
	return out
}

// stage is one FROM ... section.
type stage struct {
	image, alias string
	body         []instruction
}

func stages(t *testing.T, ins []instruction) []stage {
	t.Helper()
	var out []stage
	for _, in := range ins {
		if in.cmd != "FROM" {
			if len(out) == 0 {
				if in.cmd != "ARG" {
					t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
				}
				continue
			}
			out[len(out)-1].body = append(out[len(out)-1].body, in)
			continue
		}
		var words []string
		for _, w := range strings.Fields(in.args) {
			if !strings.HasPrefix(w, "--") {
				words = append(words, w)
			}
		}
		st := stage{image: words[0]}
		if len(words) == 3 && strings.EqualFold(words[1], "AS") {
			st.alias = words[2]
		}
		out = append(out, st)
	}
	return out
}

// TestDockerfile checks the image's build without a Docker engine: a Go
// 1.26 builder makes a static binary of ./cmd/meridian, and the final
// stage is distroless or scratch, runs it as non-root and exposes the ports
// the manifests use.
func TestDockerfile(t *testing.T) {
	sts := stages(t, parseDockerfile(t, "Dockerfile"))
	if len(sts) < 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(sts))
	}
	build, final := sts[0], sts[len(sts)-1]
	if !regexp.MustCompile(`^golang:1\.26([.-]|$)`).MatchString(build.image) || build.alias == "" {
		t.Errorf("builder FROM %s AS %q, want golang:1.26 with a name", build.image, build.alias)
	}
	built := false
	for _, in := range build.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = true
			for _, want := range []string{"CGO_ENABLED=0", "./cmd/meridian", "-o /out/meridian"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("line %d: go build without %s", in.line, want)
				}
			}
		}
	}
	if !built {
		t.Error("the builder runs no go build")
	}
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final FROM %s, want distroless/static or scratch", final.image)
	}
	var user, entrypoint string
	copied := false
	var exposed []string
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			if strings.Contains(in.args, "--from="+build.alias) && strings.HasSuffix(in.args, "/out/meridian /meridian") {
				copied = true
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); uid != "nonroot" && (err != nil || n == 0) {
		t.Errorf("USER %q: want a non-root uid", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/meridian"}) {
		t.Errorf(`ENTRYPOINT %s, want ["/meridian"] (exec form)`, entrypoint)
	}
	if !copied {
		t.Errorf("the final stage does not COPY --from=%s /out/meridian /meridian", build.alias)
	}

	// Every port a manifest runs the image with is exposed, and the pods'
	// uid is the image's.
	for _, w := range loadManifests(t, firstOverlay(t)).workloads() {
		if uid, _ := getInt(w, "spec", "template", "spec", "securityContext", "runAsUser"); strconv.Itoa(uid) != user && fmt.Sprintf("%d:%d", uid, uid) != user {
			t.Errorf("%s runs as uid %d, the image as %s", describe(w), uid, user)
		}
		for _, c := range mapsOf(getList(w, "spec", "template", "spec", "containers")) {
			if imageName(getStr(c, "image")) != "ghcr.io/meridiancdn/meridian" {
				continue
			}
			for _, p := range portsOf(c) {
				if want := fmt.Sprintf("%d/%s", p.number, strings.ToLower(p.protocol)); !slices.Contains(exposed, want) {
					t.Errorf("%s port %s is not in the Dockerfile's EXPOSE", describe(w), want)
				}
			}
		}
	}
}

// TestDockerignoreKeepsTheBuild checks that Dockerfile.dockerignore leaves
// every file that `go build ./cmd/meridian` reads in the build context.
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	data, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []*regexp.Regexp
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("exceptions (%s) are not supported by this test", line)
		}
		patterns = append(patterns, ignorePattern(strings.TrimPrefix(line, "/")))
	}
	ignored := func(path string) bool {
		return slices.ContainsFunc(patterns, func(p *regexp.Regexp) bool { return p.MatchString(path) })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f",
		`{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/meridian")
	cmd.Dir = moduleRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(moduleRoot)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rel, err := filepath.Rel(root, fields[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		for _, f := range fields[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		if ignored(f) {
			t.Errorf("%s is needed by go build ./cmd/meridian but Dockerfile.dockerignore leaves it out", f)
		}
	}
	for _, f := range []string{"deploy/k8s/base/kustomization.yaml", ".git/HEAD", "meridian"} {
		if !ignored(f) {
			t.Errorf("%s is sent to the build context: add it to Dockerfile.dockerignore", f)
		}
	}
}

// ignorePattern turns a .dockerignore pattern into a regexp that matches
// the path and everything below it.
func ignorePattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("(/.*)?$")
	return regexp.MustCompile(b.String())
}

// TestDockerfileStampsTheBuild checks that the image says which Meridian
// it is although its build context has no .git: the builder's go build
// links VERSION and REVISION in with -X, and a binary built with those
// very flags (the build args given values) reports them in `meridian
// version`.
func TestDockerfileStampsTheBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	var build string
	for _, in := range parseDockerfile(t, "Dockerfile") {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	stamps := regexp.MustCompile(`-X (\S+)=\$\{(VERSION|REVISION)\}`).FindAllStringSubmatch(build, -1)
	if len(stamps) != 2 {
		t.Fatalf("the builder's go build stamps %d of VERSION and REVISION with -X: %s", len(stamps), build)
	}
	values := map[string]string{"VERSION": "v9.8.7-test", "REVISION": "0123456789abcdef0123456789abcdef01234567"}
	var ldflags []string
	for _, m := range stamps {
		ldflags = append(ldflags, "-X", m[1]+"="+values[m[2]])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "meridian")
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", strings.Join(ldflags, " "), "-o", bin, "./cmd/meridian")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		t.Fatalf("meridian version: %v", err)
	}
	if want := "meridian " + values["VERSION"] + "\nrevision " + values["REVISION"] + "\n"; !strings.HasPrefix(string(out), want) {
		t.Fatalf("meridian version printed %q, want it to begin %q", out, want)
	}
}
