package deploy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file resolves a kustomization the way `kubectl apply -k` does, for
// the few features the manifests use: resources (files and directories),
// strategic-merge patches found by kind and name, labels (with templates),
// images and namespace. The decoding is strict, so a manifest that starts to
// use another kustomize feature fails here until the resolver learns it.

// kustomization is the subset of kustomize's Kustomization file in use.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Patches    []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	Labels []struct {
		Pairs            map[string]string `yaml:"pairs"`
		IncludeSelectors bool              `yaml:"includeSelectors"`
		IncludeTemplates bool              `yaml:"includeTemplates"`
	} `yaml:"labels"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// clusterScoped are the kinds that the namespace transformer leaves alone.
var clusterScoped = []string{"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass", "CustomResourceDefinition"}

// podTemplateKinds have a pod template at spec.template.
var podTemplateKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

// resolve builds the objects of the kustomization in dir.
func resolve(dir string) ([]obj, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	if k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s/kustomization.yaml: kind %q, want Kustomization", dir, k.Kind)
	}
	var objs []obj
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: resources: %w", dir, err)
		}
		var docs []obj
		if fi.IsDir() {
			docs, err = resolve(path)
		} else {
			docs, err = readDocs(path)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, docs...)
	}
	for _, p := range k.Patches {
		patches, err := readDocs(filepath.Join(dir, p.Path))
		if err != nil {
			return nil, err
		}
		for _, patch := range patches {
			i := slices.IndexFunc(objs, func(o obj) bool {
				return getStr(o, "kind") == getStr(patch, "kind") &&
					getStr(o, "metadata", "name") == getStr(patch, "metadata", "name")
			})
			if i < 0 {
				return nil, fmt.Errorf("%s: patch %s: no %s to patch", dir, p.Path, describe(patch))
			}
			objs[i] = mergePatch(objs[i], patch, "").(obj)
		}
	}
	for _, l := range k.Labels {
		if l.IncludeSelectors {
			return nil, fmt.Errorf("%s: labels.includeSelectors is not supported here (selectors are immutable; keep them in the manifests)", dir)
		}
		for _, o := range objs {
			addLabels(o, l.Pairs, "metadata", "labels")
			if l.IncludeTemplates && slices.Contains(podTemplateKinds, getStr(o, "kind")) {
				addLabels(o, l.Pairs, "spec", "template", "metadata", "labels")
			}
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			for _, c := range containers(o) {
				if imageName(getStr(c, "image")) == img.Name {
					c["image"] = cmpOr(img.NewName, img.Name) + ":" + img.NewTag
				}
			}
		}
	}
	if k.Namespace != "" {
		for _, o := range objs {
			if !slices.Contains(clusterScoped, getStr(o, "kind")) {
				setPath(o, k.Namespace, "metadata", "namespace")
			}
		}
	}
	return objs, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// imageName is an image reference without its tag or digest.
func imageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// containers returns the init and main containers of a workload's pod
// template.
func containers(o obj) []obj {
	spec := getMap(o, "spec", "template", "spec")
	return append(mapsOf(getList(spec, "initContainers")), mapsOf(getList(spec, "containers"))...)
}

func addLabels(o obj, pairs map[string]string, path ...string) {
	m := getMap(o, path...)
	if m == nil {
		m = obj{}
		setPath(o, m, path...)
	}
	for k, v := range pairs {
		m[k] = v
	}
}

// setPath sets a value at a path of mappings, creating them as needed.
func setPath(o obj, v any, path ...string) {
	for _, k := range path[:len(path)-1] {
		next, ok := o[k].(obj)
		if !ok {
			next = obj{}
			o[k] = next
		}
		o = next
	}
	o[path[len(path)-1]] = v
}

// mergeKeys are the strategic-merge keys of the lists that the manifests
// patch, by field name (the patchMergeKey of the Kubernetes API types).
// Ports are keyed by containerPort in containers and by port in Services.
var mergeKeys = map[string][]string{
	"containers":                {"name"},
	"initContainers":            {"name"},
	"volumes":                   {"name"},
	"volumeMounts":              {"mountPath"},
	"env":                       {"name"},
	"ports":                     {"containerPort", "port"},
	"topologySpreadConstraints": {"topologyKey"},
	"imagePullSecrets":          {"name"},
}

// mergePatch applies a strategic-merge patch: mappings merge key by key (a
// null deletes), lists of mappings with a merge key merge element by
// element, anything else is replaced. "$patch: replace" on a mapping
// replaces it whole, "$patch: delete" removes it.
func mergePatch(dst, patch any, field string) any {
	switch p := patch.(type) {
	case obj:
		switch p["$patch"] {
		case "replace":
			out := clone(p).(obj)
			delete(out, "$patch")
			return out
		case "delete":
			return nil
		}
		d, ok := dst.(obj)
		if !ok {
			return clone(p)
		}
		out := clone(d).(obj)
		for k, pv := range p {
			if pv == nil {
				delete(out, k)
				continue
			}
			merged := mergePatch(out[k], pv, k)
			if merged == nil {
				delete(out, k)
			} else {
				out[k] = merged
			}
		}
		return out
	case []any:
		d, ok := dst.([]any)
		key := listKey(field, p)
		if !ok || key == "" {
			return clone(p)
		}
		out := clone(d).([]any)
		for _, pe := range p {
			pm, _ := pe.(obj)
			i := slices.IndexFunc(out, func(e any) bool {
				em, ok := e.(obj)
				return ok && reflect.DeepEqual(em[key], pm[key])
			})
			switch {
			case i < 0 && pm["$patch"] != "delete":
				out = append(out, clone(pm))
			case i >= 0:
				if merged := mergePatch(out[i], pm, ""); merged == nil {
					out = slices.Delete(out, i, i+1)
				} else {
					out[i] = merged
				}
			}
		}
		return out
	}
	return patch
}

// listKey is the merge key of a patched list, or "" to replace the list.
func listKey(field string, patch []any) string {
	for _, k := range mergeKeys[field] {
		ok := len(patch) > 0
		for _, e := range patch {
			if m, isMap := e.(obj); !isMap || m[k] == nil {
				ok = false
			}
		}
		if ok {
			return k
		}
	}
	return ""
}

func clone(v any) any {
	switch x := v.(type) {
	case obj:
		out := make(obj, len(x))
		for k, e := range x {
			out[k] = clone(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = clone(e)
		}
		return out
	}
	return v
}

func TestMergePatch(t *testing.T) {
	tests := []struct {
		name             string
		dst, patch, want string
	}{
		{"maps merge", `{a: 1, b: {c: 2, d: 3}}`, `{b: {d: 4, e: 5}}`, `{a: 1, b: {c: 2, d: 4, e: 5}}`},
		{"null deletes", `{a: 1, b: 2}`, `{b: null}`, `{a: 1}`},
		{"scalar lists replace", `{l: [1, 2]}`, `{l: [3]}`, `{l: [3]}`},
		{"containers merge by name",
			`{containers: [{name: a, image: x}, {name: b, image: y}]}`,
			`{containers: [{name: b, image: z}, {name: c, image: w}]}`,
			`{containers: [{name: a, image: x}, {name: b, image: z}, {name: c, image: w}]}`},
		{"container ports by containerPort",
			`{ports: [{containerPort: 80, name: http}]}`,
			`{ports: [{containerPort: 80, protocol: TCP}]}`,
			`{ports: [{containerPort: 80, name: http, protocol: TCP}]}`},
		{"service ports by port",
			`{ports: [{port: 53, name: dns}, {port: 80, name: http}]}`,
			`{ports: [{port: 80, targetPort: 8080}]}`,
			`{ports: [{port: 53, name: dns}, {port: 80, name: http, targetPort: 8080}]}`},
		{"element delete", `{volumes: [{name: a}, {name: b}]}`, `{volumes: [{name: a, $patch: delete}]}`, `{volumes: [{name: b}]}`},
		{"map replace", `{m: {a: 1, b: 2}}`, `{m: {c: 3, $patch: replace}}`, `{m: {c: 3}}`},
		{"lists without key replace", `{args: [a, b], tolerations: [{key: x}]}`, `{tolerations: [{key: y}]}`, `{args: [a, b], tolerations: [{key: y}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst, patch, want any
			for _, p := range []struct {
				s string
				v *any
			}{{tt.dst, &dst}, {tt.patch, &patch}, {tt.want, &want}} {
				if err := yaml.Unmarshal([]byte(p.s), p.v); err != nil {
					t.Fatal(err)
				}
			}
			before := clone(dst)
			got := mergePatch(dst, patch, "")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("merge(%s, %s) = %v, want %v", tt.dst, tt.patch, got, want)
			}
			if !reflect.DeepEqual(dst, before) {
				t.Errorf("merge changed its input to %v", dst)
			}
		})
	}
}

// overlays returns the region overlays' directories by region name.
func overlays(t *testing.T) map[string]string {
	t.Helper()
	dirs, err := filepath.Glob("k8s/overlays/*/kustomization.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no overlays in k8s/overlays (%v)", err)
	}
	out := map[string]string{}
	for _, d := range dirs {
		d = filepath.Dir(d)
		out[filepath.Base(d)] = d
	}
	return out
}

// firstOverlay is the first region's overlay by name, for tests that need
// one.
func firstOverlay(t *testing.T) string {
	t.Helper()
	dirs := overlays(t)
	return dirs[slices.Sorted(maps.Keys(dirs))[0]]
}

// TestResolverMatchesKubectl compares the resolver with kustomize itself
// (kubectl kustomize) when kubectl is installed, so that the other tests
// check what `kubectl apply -k` would apply.
func TestResolverMatchesKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; the resolver is checked by TestMergePatch and the reference tests only")
	}
	dirs := overlays(t)
	dirs["base"] = "k8s/base"
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			want, err := decodeDocs("kubectl kustomize", out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := resolve(dir)
			if err != nil {
				t.Fatal(err)
			}
			index := func(objs []obj) map[string]obj {
				m := map[string]obj{}
				for _, o := range objs {
					m[describe(o)] = o
				}
				return m
			}
			g, w := index(got), index(want)
			for k, wo := range w {
				if !reflect.DeepEqual(g[k], wo) {
					gy, _ := yaml.Marshal(g[k])
					wy, _ := yaml.Marshal(wo)
					t.Errorf("%s differs from kubectl kustomize:\n--- resolver:\n%s\n--- kustomize:\n%s", k, gy, wy)
				}
			}
			for k := range g {
				if w[k] == nil {
					t.Errorf("%s is not in kubectl kustomize's output", k)
				}
			}
		})
	}
}
