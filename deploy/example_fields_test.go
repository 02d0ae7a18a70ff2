package deploy

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/node"
)

// yamlFields returns the YAML path of every field an edge config can set
// ("sites.compression.min_bytes"), walking t's yaml tags (inline structs
// merged, pointers, slices and map values followed).
func yamlFields(t reflect.Type, prefix string, seen map[reflect.Type]bool, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !f.IsExported() || tag == "-" || !ok && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") || f.Anonymous && name == "" {
			yamlFields(f.Type, prefix, seen, out)
			continue
		}
		path := prefix + name
		*out = append(*out, path)
		yamlFields(f.Type, path+".", seen, out)
	}
}

// inExample reports whether the example's tree holds path: a key of a
// mapping, under any element of a list.
func inExample(n *yaml.Node, path []string) bool {
	if len(path) == 0 {
		return true
	}
	switch n.Kind {
	case yaml.DocumentNode:
		return len(n.Content) > 0 && inExample(n.Content[0], path)
	case yaml.SequenceNode:
		return slices.ContainsFunc(n.Content, func(c *yaml.Node) bool { return inExample(c, path) })
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == path[0] && inExample(n.Content[i+1], path[1:]) {
				return true
			}
		}
	}
	return false
}

// Issue 19 and 20: deploy/edge.example.yaml shows every field an edge
// config has (a field set in the example, or, where the example shows one
// of two ways to say a thing, named in a comment: "# origin: ...",
// "or purge_token: inline"), so that what is added to the config cannot
// be left out of the file operators start from.
func TestEdgeExampleShowsEveryField(t *testing.T) {
	raw, err := os.ReadFile("edge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var comments strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		if _, c, ok := strings.Cut(line, "#"); ok {
			comments.WriteString(c + "\n")
		}
	}
	var paths []string
	yamlFields(reflect.TypeFor[node.Config](), "", map[reflect.Type]bool{}, &paths)
	if len(paths) < 100 {
		t.Fatalf("only %d fields found: %q", len(paths), paths)
	}
	// Fields of a shared type that one place refuses.
	unsettable := map[string]bool{
		"sites.headers.request.status": true, // only response rules have a status condition
	}
	var missing []string
	for _, p := range paths {
		if unsettable[p] || inExample(&doc, strings.Split(p, ".")) {
			continue
		}
		name := p[strings.LastIndex(p, ".")+1:]
		if regexp.MustCompile(`(^|[^a-z_])` + regexp.QuoteMeta(name) + `:`).MatchString(comments.String()) {
			continue
		}
		missing = append(missing, p)
	}
	if len(missing) > 0 {
		t.Errorf("deploy/edge.example.yaml does not show %d fields of the edge config (with their defaults):\n%s",
			len(missing), strings.Join(missing, "\n"))
	}
}
