package deploy

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// externalSecrets are Secrets that the manifests use but do not hold,
// with the keys they must have: the operator creates them (deploy/k8s's
// README says how).
var externalSecrets = map[string][]string{
	"meridian-tls":         {"tls.crt", "tls.key"},
	"meridian-cluster-tls": {"ca.crt", "tls.crt", "tls.key"},
}

// statefulSetPodName is the label the StatefulSet controller puts on each of
// its pods, naming it; Services select one edge with it.
const statefulSetPodName = "statefulset.kubernetes.io/pod-name"

// manifests is one resolved kustomization, indexed.
type manifests struct {
	objs  []obj
	byKey map[string]obj // "Kind/name"
}

func loadManifests(t *testing.T, dir string) *manifests {
	t.Helper()
	objs, err := resolve(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{objs: objs, byKey: map[string]obj{}}
	for _, o := range objs {
		m.byKey[describe(o)] = o
	}
	return m
}

func (m *manifests) get(kind, name string) obj { return m.byKey[kind+"/"+name] }

func (m *manifests) kind(kind string) []obj {
	var out []obj
	for _, o := range m.objs {
		if getStr(o, "kind") == kind {
			out = append(out, o)
		}
	}
	return out
}

// workloads are the objects with a pod template.
func (m *manifests) workloads() []obj {
	var out []obj
	for _, o := range m.objs {
		if slices.Contains(podTemplateKinds, getStr(o, "kind")) {
			out = append(out, o)
		}
	}
	return out
}

// selects reports whether a label selector picks a workload's pods. The
// StatefulSet pod-name label is not in the template: the controller adds
// it, naming the pod by ordinal.
func selects(sel map[string]string, w obj) bool {
	labels := stringMap(get(w, "spec", "template", "metadata", "labels"))
	if pod, ok := sel[statefulSetPodName]; ok {
		if getStr(w, "kind") != "StatefulSet" {
			return false
		}
		ord, err := strconv.Atoi(strings.TrimPrefix(pod, getStr(w, "metadata", "name")+"-"))
		replicas, _ := getInt(w, "spec", "replicas")
		if err != nil || ord < 0 || ord >= replicas {
			return false
		}
		labels = maps.Clone(labels)
		labels[statefulSetPodName] = pod
	}
	return len(sel) > 0 && subset(sel, labels)
}

// selected returns the workloads a selector picks.
func (m *manifests) selected(sel map[string]string) []obj {
	var out []obj
	for _, w := range m.workloads() {
		if selects(sel, w) {
			out = append(out, w)
		}
	}
	return out
}

// containerPort is one port of a container.
type containerPort struct {
	name     string
	number   int
	protocol string
}

func portsOf(c obj) []containerPort {
	var out []containerPort
	for _, p := range mapsOf(getList(c, "ports")) {
		n, _ := getInt(p, "containerPort")
		out = append(out, containerPort{getStr(p, "name"), n, cmpOr(getStr(p, "protocol"), "TCP")})
	}
	return out
}

// findPort resolves a port reference (a name or a number) among the main
// containers of a workload.
func findPort(w obj, ref any, protocol string) (containerPort, bool) {
	for _, c := range mapsOf(getList(w, "spec", "template", "spec", "containers")) {
		if p, ok := findContainerPort(c, ref, protocol); ok {
			return p, true
		}
	}
	return containerPort{}, false
}

func findContainerPort(c obj, ref any, protocol string) (containerPort, bool) {
	protocol = cmpOr(protocol, "TCP")
	for _, p := range portsOf(c) {
		if p.protocol != protocol {
			continue
		}
		switch r := ref.(type) {
		case string:
			if p.name == r {
				return p, true
			}
		case int:
			if p.number == r {
				return p, true
			}
		}
	}
	return containerPort{}, false
}

// check collects the problems of one resolved kustomization.
type check struct {
	m    *manifests
	errs []string
}

func (c *check) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

// checkManifests checks the objects and the references between them.
func checkManifests(m *manifests) []string {
	c := &check{m: m}
	c.identities()
	for _, w := range m.workloads() {
		c.workload(w)
	}
	for _, s := range m.kind("Service") {
		c.service(s)
	}
	for _, p := range m.kind("PodDisruptionBudget") {
		c.pdb(p)
	}
	for _, np := range m.kind("NetworkPolicy") {
		c.networkPolicy(np)
	}
	for _, s := range m.kind("Secret") {
		c.placeholderSecret(s)
	}
	return c.errs
}

func (c *check) identities() {
	namespaces := map[string]bool{}
	for _, ns := range c.m.kind("Namespace") {
		namespaces[getStr(ns, "metadata", "name")] = true
	}
	seen := map[string]bool{}
	for _, o := range c.m.objs {
		d := describe(o)
		if getStr(o, "apiVersion") == "" || getStr(o, "kind") == "" || getStr(o, "metadata", "name") == "" {
			c.errorf("%s: apiVersion, kind and metadata.name are required", d)
		}
		if seen[d] {
			c.errorf("%s: defined twice", d)
		}
		seen[d] = true
		if slices.Contains(clusterScoped, getStr(o, "kind")) {
			continue
		}
		if ns := getStr(o, "metadata", "namespace"); !namespaces[ns] {
			c.errorf("%s: namespace %q is not one of the manifests' Namespaces", d, ns)
		}
	}
}

func (c *check) workload(w obj) {
	d := describe(w)
	sel := stringMap(get(w, "spec", "selector", "matchLabels"))
	labels := stringMap(get(w, "spec", "template", "metadata", "labels"))
	if len(sel) == 0 || !subset(sel, labels) {
		c.errorf("%s: selector %v does not match its pod template's labels %v", d, sel, labels)
	}
	spec := getMap(w, "spec", "template", "spec")
	c.podSecurity(d, spec)

	replicas, _ := getInt(w, "spec", "replicas")
	if replicas > 1 {
		ok := false
		for _, tsc := range mapsOf(getList(spec, "topologySpreadConstraints")) {
			if getStr(tsc, "topologyKey") == "topology.kubernetes.io/zone" &&
				subset(stringMap(get(tsc, "labelSelector", "matchLabels")), labels) &&
				len(stringMap(get(tsc, "labelSelector", "matchLabels"))) > 0 {
				ok = true
			}
		}
		if !ok {
			c.errorf("%s: %d replicas but no topologySpreadConstraint across topology.kubernetes.io/zone selecting its pods", d, replicas)
		}
	}

	volumes := map[string]obj{}
	for _, v := range mapsOf(getList(spec, "volumes")) {
		volumes[getStr(v, "name")] = v
	}
	mounted := map[string]bool{}
	for _, ctr := range containers(w) {
		cd := d + " container " + getStr(ctr, "name")
		c.container(cd, ctr)
		for _, vm := range mapsOf(getList(ctr, "volumeMounts")) {
			name := getStr(vm, "name")
			mounted[name] = true
			if volumes[name] == nil {
				c.errorf("%s: volumeMount %q: no such volume", cd, name)
			}
		}
	}
	for name, v := range volumes {
		if !mounted[name] {
			c.errorf("%s: volume %q is mounted by no container", d, name)
		}
		c.volume(d+" volume "+name, v)
	}
	for _, ctr := range mapsOf(getList(spec, "containers")) {
		cd := d + " container " + getStr(ctr, "name")
		for _, probe := range []string{"livenessProbe", "readinessProbe"} {
			if get(ctr, probe) == nil {
				c.errorf("%s: no %s", cd, probe)
			}
		}
		for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
			p := getMap(ctr, probe)
			for _, action := range []string{"httpGet", "tcpSocket", "grpc"} {
				if ref := get(p, action, "port"); ref != nil {
					if _, ok := findContainerPort(ctr, ref, "TCP"); !ok {
						c.errorf("%s: %s.%s.port %v is not a TCP port of the container", cd, probe, action, ref)
					}
				}
			}
		}
		if slices.Contains(getStrings(ctr, "args"), "--config") {
			if _, err := c.m.configSource(w, ctr); err != nil {
				c.errorf("%s: %v", cd, err)
			}
		}
		names := map[string]bool{}
		for _, p := range portsOf(ctr) {
			if p.name == "" || len(p.name) > 15 || names[p.name] {
				c.errorf("%s: port %d/%s: name %q must be set, unique and at most 15 characters", cd, p.number, p.protocol, p.name)
			}
			names[p.name] = true
		}
	}
	if getStr(w, "kind") == "StatefulSet" {
		c.statefulSet(w)
	}
}

func (c *check) podSecurity(d string, spec obj) {
	sc := getMap(spec, "securityContext")
	if get(sc, "runAsNonRoot") != true {
		c.errorf("%s: securityContext.runAsNonRoot must be true", d)
	}
	if uid, ok := getInt(sc, "runAsUser"); !ok || uid == 0 {
		c.errorf("%s: securityContext.runAsUser must be a non-root uid", d)
	}
	if getStr(sc, "seccompProfile", "type") != "RuntimeDefault" {
		c.errorf("%s: securityContext.seccompProfile.type must be RuntimeDefault", d)
	}
}

func (c *check) container(d string, ctr obj) {
	image := getStr(ctr, "image")
	if image == "" || imageName(image) == image || strings.HasSuffix(image, ":latest") {
		c.errorf("%s: image %q must be pinned to a tag or digest", d, image)
	}
	for _, r := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if getStr(ctr, "resources", r, res) == "" {
				c.errorf("%s: resources.%s.%s is not set", d, r, res)
			}
		}
	}
	sc := getMap(ctr, "securityContext")
	if get(sc, "allowPrivilegeEscalation") != false {
		c.errorf("%s: securityContext.allowPrivilegeEscalation must be false", d)
	}
	if get(sc, "readOnlyRootFilesystem") != true {
		c.errorf("%s: securityContext.readOnlyRootFilesystem must be true", d)
	}
	if !slices.Contains(getStrings(sc, "capabilities", "drop"), "ALL") {
		c.errorf("%s: securityContext.capabilities.drop must contain ALL", d)
	}
	if uid, ok := getInt(sc, "runAsUser"); ok && uid == 0 {
		c.errorf("%s: runs as root", d)
	}
	for _, e := range mapsOf(getList(ctr, "env")) {
		ed := d + " env " + getStr(e, "name")
		if ref := getMap(e, "valueFrom", "secretKeyRef"); ref != nil {
			c.key(ed, "Secret", getStr(ref, "name"), getStr(ref, "key"))
		}
		if ref := getMap(e, "valueFrom", "configMapKeyRef"); ref != nil {
			c.key(ed, "ConfigMap", getStr(ref, "name"), getStr(ref, "key"))
		}
	}
	for _, e := range mapsOf(getList(ctr, "envFrom")) {
		if name := getStr(e, "secretRef", "name"); name != "" && c.m.get("Secret", name) == nil {
			c.errorf("%s: envFrom: no Secret %q", d, name)
		}
		if name := getStr(e, "configMapRef", "name"); name != "" && c.m.get("ConfigMap", name) == nil {
			c.errorf("%s: envFrom: no ConfigMap %q", d, name)
		}
	}
}

// keys returns the data keys of a ConfigMap or Secret, or the keys an
// external Secret must have.
func (m *manifests) keys(kind, name string) ([]string, bool) {
	o := m.get(kind, name)
	if o == nil {
		if keys, ok := externalSecrets[name]; ok && kind == "Secret" {
			return keys, true
		}
		return nil, false
	}
	var keys []string
	for _, field := range []string{"data", "stringData", "binaryData"} {
		for k := range getMap(o, field) {
			keys = append(keys, k)
		}
	}
	return keys, true
}

func (c *check) key(d, kind, name, key string) {
	keys, ok := c.m.keys(kind, name)
	switch {
	case !ok:
		c.errorf("%s: no %s %q", d, kind, name)
	case !slices.Contains(keys, key):
		c.errorf("%s: %s %q has no key %q (has %v)", d, kind, name, key, keys)
	}
}

func (c *check) volume(d string, v obj) {
	for kind, field := range map[string]string{"ConfigMap": "configMap", "Secret": "secret"} {
		src := getMap(v, field)
		if src == nil {
			continue
		}
		name := getStr(src, "name")
		if kind == "Secret" {
			name = getStr(src, "secretName")
		}
		if _, ok := c.m.keys(kind, name); !ok {
			c.errorf("%s: no %s %q", d, kind, name)
			continue
		}
		for _, item := range mapsOf(getList(src, "items")) {
			c.key(d, kind, name, getStr(item, "key"))
		}
	}
}

func (c *check) statefulSet(w obj) {
	d := describe(w)
	svcName := getStr(w, "spec", "serviceName")
	svc := c.m.get("Service", svcName)
	switch {
	case svc == nil:
		c.errorf("%s: serviceName %q: no such Service", d, svcName)
	case getStr(svc, "spec", "clusterIP") != "None":
		c.errorf("%s: serviceName %q is not headless (clusterIP: None)", d, svcName)
	case get(svc, "spec", "publishNotReadyAddresses") != true:
		c.errorf("%s: Service %q must publish not-ready addresses, or starting edges cannot find each other", d, svcName)
	case !selects(stringMap(get(svc, "spec", "selector")), w):
		c.errorf("%s: Service %q does not select its pods", d, svcName)
	}
	if getStr(w, "spec", "updateStrategy", "type") != "RollingUpdate" {
		c.errorf("%s: updateStrategy.type must be RollingUpdate", d)
	}
	if n, ok := getInt(w, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable"); !ok || n != 1 {
		c.errorf("%s: updateStrategy.rollingUpdate.maxUnavailable must be 1 (one edge at a time keeps n-1 of capacity)", d)
	}
	if n, ok := getInt(w, "spec", "updateStrategy", "rollingUpdate", "partition"); ok && n != 0 {
		c.errorf("%s: updateStrategy.rollingUpdate.partition %d leaves edges on the old release", d, n)
	}
	for _, ctr := range mapsOf(getList(w, "spec", "template", "spec", "containers")) {
		if s, ok := getInt(ctr, "lifecycle", "preStop", "sleep", "seconds"); !ok || s < 1 {
			c.errorf("%s container %s: no preStop sleep: endpoints would still send requests after SIGTERM", d, getStr(ctr, "name"))
		}
	}
}

func (c *check) service(s obj) {
	d := describe(s)
	sel := stringMap(get(s, "spec", "selector"))
	ws := c.m.selected(sel)
	if len(ws) == 0 {
		c.errorf("%s: selector %v matches no workload's pods", d, sel)
	}
	ports := mapsOf(getList(s, "spec", "ports"))
	if len(ports) == 0 {
		c.errorf("%s: no ports", d)
	}
	names := map[string]bool{}
	for _, p := range ports {
		name := getStr(p, "name")
		if len(ports) > 1 && (name == "" || names[name]) {
			c.errorf("%s: ports need unique names", d)
		}
		names[name] = true
		target := get(p, "targetPort")
		if target == nil {
			target = get(p, "port")
		}
		for _, w := range ws {
			if _, ok := findPort(w, target, getStr(p, "protocol")); !ok {
				c.errorf("%s port %s: targetPort %v/%s is not a port of %s", d, name, target, cmpOr(getStr(p, "protocol"), "TCP"), describe(w))
			}
		}
	}
	if getStr(s, "spec", "type") == "LoadBalancer" && getStr(s, "spec", "externalTrafficPolicy") != "Local" {
		c.errorf("%s: a LoadBalancer needs externalTrafficPolicy: Local to keep client addresses", d)
	}
	if t := getStr(s, "spec", "type"); t == "LoadBalancer" || t == "NodePort" {
		for _, p := range ports {
			target := get(p, "targetPort")
			for _, w := range ws {
				if cp, ok := findPort(w, target, getStr(p, "protocol")); ok && privatePorts[cp.name] != "" {
					c.errorf("%s port %s: publishes the %s port (%s) outside the cluster", d, getStr(p, "name"), cp.name, privatePorts[cp.name])
				}
			}
		}
	}
}

func (c *check) pdb(p obj) {
	d := describe(p)
	ws := c.m.selected(stringMap(get(p, "spec", "selector", "matchLabels")))
	if len(ws) != 1 {
		c.errorf("%s: selector matches %d workloads, want 1", d, len(ws))
		return
	}
	replicas, _ := getInt(ws[0], "spec", "replicas")
	maxU, hasMax := getInt(p, "spec", "maxUnavailable")
	minA, hasMin := getInt(p, "spec", "minAvailable")
	switch {
	case hasMax == hasMin:
		c.errorf("%s: set exactly one of maxUnavailable and minAvailable (as a number)", d)
	case hasMax && maxU < 1, hasMin && minA >= replicas:
		c.errorf("%s: allows no eviction of %s's %d pods: node drains would block", d, describe(ws[0]), replicas)
	}
}

// privatePorts are the container ports that must stay inside the
// cluster, and why: the edges' admin API, and their gossip. Regions share
// no membership: what crosses between regions (shield fills, purges,
// failover) goes to the peer port alone, which speaks mutual TLS
// (cluster.tls, required in every overlay by TestEdgeConfigMatchesManifests).
var privatePorts = map[string]string{
	"admin":      "status, metrics, purge",
	"gossip":     "membership; between regions only the peer port, on mutual TLS, is open",
	"gossip-udp": "membership; between regions only the peer port, on mutual TLS, is open",
}

func (c *check) networkPolicy(np obj) {
	d := describe(np)
	ws := c.m.selected(stringMap(get(np, "spec", "podSelector", "matchLabels")))
	if len(ws) == 0 {
		c.errorf("%s: podSelector matches no workload", d)
	}
	for _, rule := range mapsOf(getList(np, "spec", "ingress")) {
		// A rule without from admits every source; an ipBlock admits
		// addresses outside the cluster.
		open := len(getList(rule, "from")) == 0
		for _, from := range mapsOf(getList(rule, "from")) {
			open = open || get(from, "ipBlock") != nil
		}
		ports := mapsOf(getList(rule, "ports"))
		for _, p := range ports {
			open := open
			for _, w := range ws {
				if cp, ok := findPort(w, get(p, "port"), getStr(p, "protocol")); ok && privatePorts[cp.name] != "" && open {
					c.errorf("%s: opens the %s port (%s) to addresses outside the cluster", d, cp.name, privatePorts[cp.name])
				}
			}
		}
		if len(ports) == 0 && open {
			c.errorf("%s: a rule without ports opens every port (admin and gossip included) to addresses outside the cluster", d)
		}
		for _, from := range mapsOf(getList(rule, "from")) {
			if sel := getMap(from, "podSelector"); sel != nil && len(c.m.selected(stringMap(get(sel, "matchLabels")))) == 0 {
				c.errorf("%s: from.podSelector matches no workload", d)
			}
		}
		for _, p := range mapsOf(getList(rule, "ports")) {
			for _, w := range ws {
				if _, ok := findPort(w, get(p, "port"), getStr(p, "protocol")); !ok {
					c.errorf("%s: port %v/%s is not a port of %s", d, get(p, "port"), getStr(p, "protocol"), describe(w))
				}
			}
		}
	}
}

// placeholderSecret makes sure no real secret is committed: every value is
// a marked placeholder.
func (c *check) placeholderSecret(s obj) {
	d := describe(s)
	if getStr(s, "metadata", "annotations", "meridian.cdn/placeholder") != "true" {
		c.errorf("%s: not annotated meridian.cdn/placeholder: \"true\"", d)
	}
	if len(getMap(s, "data")) > 0 {
		c.errorf("%s: use stringData with REPLACE-ME placeholders, not data", d)
	}
	for k, v := range getMap(s, "stringData") {
		if !strings.HasPrefix(fmt.Sprint(v), "REPLACE-ME") {
			c.errorf("%s: stringData.%s is not a REPLACE-ME placeholder", d, k)
		}
	}
}

func getStrings(v any, path ...string) []string {
	var out []string
	for _, e := range getList(v, path...) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

// configFile is where a container's --config file comes from.
type configFile struct {
	configMap, key string
	// render is the init container that writes the file from the
	// ConfigMap's key, or nil when the ConfigMap is mounted directly.
	render obj
}

// configSource follows a container's --config PATH to the ConfigMap key it
// comes from: a ConfigMap volume mounted over PATH, or an emptyDir that an
// init container writes PATH into from a mounted ConfigMap.
func (m *manifests) configSource(w obj, ctr obj) (configFile, error) {
	args := getStrings(ctr, "args")
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		return configFile{}, errors.New("no --config FILE argument")
	}
	path := args[i+1]
	spec := getMap(w, "spec", "template", "spec")
	volumes := map[string]obj{}
	for _, v := range mapsOf(getList(spec, "volumes")) {
		volumes[getStr(v, "name")] = v
	}
	mount, rel, ok := mountOf(ctr, path)
	if !ok {
		return configFile{}, fmt.Errorf("--config %s: no volume is mounted there", path)
	}
	v := volumes[getStr(mount, "name")]
	if cm := getMap(v, "configMap"); cm != nil {
		f := configFile{configMap: getStr(cm, "name"), key: itemKey(cm, rel)}
		if keys, _ := m.keys("ConfigMap", f.configMap); !slices.Contains(keys, f.key) {
			return configFile{}, fmt.Errorf("--config %s: ConfigMap %q has no key %q", path, f.configMap, f.key)
		}
		return f, nil
	}
	if getMap(v, "emptyDir") == nil {
		return configFile{}, fmt.Errorf("--config %s: volume %s is neither a ConfigMap nor an emptyDir", path, getStr(mount, "name"))
	}
	for _, init := range mapsOf(getList(spec, "initContainers")) {
		im, ok := mountByName(init, getStr(mount, "name"))
		if !ok || get(im, "readOnly") == true {
			continue
		}
		script := strings.Join(append(getStrings(init, "command"), getStrings(init, "args")...), " ")
		if !strings.Contains(script, getStr(im, "mountPath")+"/"+rel) {
			continue
		}
		for _, src := range mapsOf(getList(init, "volumeMounts")) {
			cm := getMap(volumes[getStr(src, "name")], "configMap")
			if cm == nil {
				continue
			}
			keys, _ := m.keys("ConfigMap", getStr(cm, "name"))
			for _, key := range keys {
				file := key
				for _, item := range mapsOf(getList(cm, "items")) {
					if getStr(item, "key") == key {
						file = getStr(item, "path")
					}
				}
				if strings.Contains(script, getStr(src, "mountPath")+"/"+file) {
					return configFile{configMap: getStr(cm, "name"), key: key, render: init}, nil
				}
			}
		}
		return configFile{}, fmt.Errorf("--config %s: init container %s writes it, but from no key of a mounted ConfigMap", path, getStr(init, "name"))
	}
	return configFile{}, fmt.Errorf("--config %s: volume %s is an emptyDir that no init container writes it into", path, getStr(mount, "name"))
}

// mountOf finds the volume mount that holds path, and path within it.
func mountOf(ctr obj, path string) (obj, string, bool) {
	for _, vm := range mapsOf(getList(ctr, "volumeMounts")) {
		if rel, ok := strings.CutPrefix(path, strings.TrimSuffix(getStr(vm, "mountPath"), "/")+"/"); ok {
			return vm, rel, true
		}
	}
	return nil, "", false
}

func mountByName(ctr obj, name string) (obj, bool) {
	for _, vm := range mapsOf(getList(ctr, "volumeMounts")) {
		if getStr(vm, "name") == name {
			return vm, true
		}
	}
	return nil, false
}

// itemKey maps a file name in a ConfigMap volume to its key.
func itemKey(cm obj, file string) string {
	for _, item := range mapsOf(getList(cm, "items")) {
		if getStr(item, "path") == file {
			return getStr(item, "key")
		}
	}
	return file
}

// TestManifestsParse decodes every YAML file under k8s/ and prometheus/.
func TestManifestsParse(t *testing.T) {
	files := append(walk(t, "k8s", ".yaml", ".yml"), walk(t, "prometheus", ".yaml")...)
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	for _, f := range files {
		docs, err := readDocs(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(docs) == 0 {
			t.Errorf("%s: no documents", f)
		}
		if !strings.HasPrefix(f, "k8s") {
			continue
		}
		for i, d := range docs {
			if getStr(d, "kind") == "" || getStr(d, "apiVersion") == "" {
				t.Errorf("%s: document %d has no apiVersion or kind", f, i)
			}
		}
	}
}

// TestOverlayReferences resolves every region's overlay and checks the
// objects and the references between them.
func TestOverlayReferences(t *testing.T) {
	for region, dir := range overlays(t) {
		t.Run(region, func(t *testing.T) {
			m := loadManifests(t, dir)
			for _, e := range checkManifests(m) {
				t.Error(e)
			}
			for _, o := range m.objs {
				if got := getStr(o, "metadata", "labels", "meridian.cdn/region"); got != region {
					t.Errorf("%s: label meridian.cdn/region is %q, want %q", describe(o), got, region)
				}
			}
			for _, w := range m.workloads() {
				if got := getStr(w, "spec", "template", "metadata", "labels", "meridian.cdn/region"); got != region {
					t.Errorf("%s: pods' meridian.cdn/region label is %q, want %q", describe(w), got, region)
				}
				zones := zonesOf(w)
				if len(zones) < 2 || len(slices.Compact(slices.Sorted(slices.Values(zones)))) != len(zones) {
					t.Errorf("%s: node affinity lists zones %v, want two or more distinct zones", describe(w), zones)
				}
			}
		})
	}
}

// zonesOf returns the zones a workload's required node affinity allows.
func zonesOf(w obj) []string {
	terms := getList(w, "spec", "template", "spec", "affinity", "nodeAffinity",
		"requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms")
	for _, term := range mapsOf(terms) {
		for _, e := range mapsOf(getList(term, "matchExpressions")) {
			if getStr(e, "key") == "topology.kubernetes.io/zone" && getStr(e, "operator") == "In" {
				return getStrings(e, "values")
			}
		}
	}
	return nil
}

// TestCheckManifestsCatchesMistakes breaks a resolved overlay in the ways
// the checks are for, one at a time, and expects each to be reported.
func TestCheckManifestsCatchesMistakes(t *testing.T) {
	dir := firstOverlay(t)
	tests := []struct {
		name   string
		mutate func(m *manifests)
		want   string
	}{
		{"service selector", func(m *manifests) {
			setPath(m.get("Service", "edge"), obj{"app.kubernetes.io/component": "egde"}, "spec", "selector")
		}, "matches no workload"},
		{"service target port", func(m *manifests) {
			mapsOf(getList(m.get("Service", "edge"), "spec", "ports"))[2]["protocol"] = "TCP"
		}, "targetPort h3/TCP"},
		{"probe port", func(m *manifests) {
			ctr := mapsOf(getList(m.get("StatefulSet", "edge"), "spec", "template", "spec", "containers"))[0]
			setPath(ctr, "adm", "livenessProbe", "httpGet", "port")
		}, "livenessProbe.httpGet.port adm"},
		{"headless service", func(m *manifests) {
			setPath(m.get("Service", "edge-peers"), false, "spec", "publishNotReadyAddresses")
		}, "not-ready addresses"},
		{"serviceName", func(m *manifests) {
			setPath(m.get("StatefulSet", "edge"), "edge-peer", "spec", "serviceName")
		}, `serviceName "edge-peer": no such Service`},
		{"missing configmap", func(m *manifests) {
			delete(m.byKey, "ConfigMap/edge-config")
		}, `no ConfigMap "edge-config"`},
		{"config path", func(m *manifests) {
			ctr := mapsOf(getList(m.get("StatefulSet", "edge"), "spec", "template", "spec", "containers"))[0]
			ctr["args"] = []any{"edge", "--config", "/etc/meridian/edge.yaml"}
		}, "--config /etc/meridian/edge.yaml: no volume is mounted there"},
		{"config key", func(m *manifests) {
			data := getMap(m.get("ConfigMap", "edge-config"), "data")
			data["edge.yml"] = data["edge.yaml"]
			delete(data, "edge.yaml")
		}, "writes it, but from no key of a mounted ConfigMap"},
		{"secret key", func(m *manifests) {
			delete(getMap(m.get("Secret", "meridian-secrets"), "stringData"), "purge-token")
		}, `has no key "purge-token"`},
		{"pdb", func(m *manifests) {
			setPath(m.get("PodDisruptionBudget", "edge"), 0, "spec", "maxUnavailable")
		}, "allows no eviction"},
		{"real secret", func(m *manifests) {
			setPath(m.get("Secret", "meridian-secrets"), "hunter2", "stringData", "purge-token")
		}, "not a REPLACE-ME placeholder"},
		{"root", func(m *manifests) {
			setPath(m.get("Deployment", "geo"), 0, "spec", "template", "spec", "securityContext", "runAsUser")
		}, "non-root uid"},
		{"spread", func(m *manifests) {
			setPath(m.get("StatefulSet", "edge"), []any{}, "spec", "template", "spec", "topologySpreadConstraints")
		}, "no topologySpreadConstraint"},
		{"network policy port", func(m *manifests) {
			rule := mapsOf(getList(m.get("NetworkPolicy", "edge"), "spec", "ingress"))[0]
			rule["ports"] = []any{obj{"port": "htp", "protocol": "TCP"}}
		}, "port htp/TCP"},
		{"admin published", func(m *manifests) {
			svc := m.get("Service", "edge")
			svc["spec"].(obj)["ports"] = append(getList(svc, "spec", "ports"), obj{"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"})
		}, "publishes the admin port"},
		{"admin open to other networks", func(m *manifests) {
			rules := mapsOf(getList(m.get("NetworkPolicy", "edge"), "spec", "ingress"))
			last := rules[len(rules)-1]
			last["ports"] = append(getList(last, "ports"), obj{"port": "admin", "protocol": "TCP"})
		}, "opens the admin port"},
		{"admin open to all", func(m *manifests) {
			rule := mapsOf(getList(m.get("NetworkPolicy", "edge"), "spec", "ingress"))[0]
			rule["ports"] = append(getList(rule, "ports"), obj{"port": 9090, "protocol": "TCP"})
		}, "opens the admin port"},
		{"gossip open to other regions", func(m *manifests) {
			rules := mapsOf(getList(m.get("NetworkPolicy", "edge"), "spec", "ingress"))
			last := rules[len(rules)-1]
			last["ports"] = append(getList(last, "ports"), obj{"port": "gossip-udp", "protocol": "UDP"})
		}, "opens the gossip-udp port"},
		{"gossip published to other regions", func(m *manifests) {
			svc := m.get("Service", "edge-1-peer")
			svc["spec"].(obj)["ports"] = append(getList(svc, "spec", "ports"), obj{"name": "gossip", "port": 7946, "targetPort": "gossip", "protocol": "TCP"})
		}, "publishes the gossip port"},
		{"other regions let in without ports", func(m *manifests) {
			rules := mapsOf(getList(m.get("NetworkPolicy", "edge"), "spec", "ingress"))
			delete(rules[len(rules)-1], "ports")
		}, "a rule without ports opens every port"},
		{"per-pod service", func(m *manifests) {
			setPath(m.get("Service", "edge-2-peer"), "edge-3", "spec", "selector", statefulSetPodName)
		}, "matches no workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadManifests(t, dir)
			if errs := checkManifests(m); len(errs) > 0 {
				t.Fatalf("the overlay has problems before breaking it: %v", errs)
			}
			tt.mutate(m)
			m.objs = m.objs[:0]
			for _, o := range m.byKey {
				m.objs = append(m.objs, o)
			}
			errs := checkManifests(m)
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
				t.Errorf("want a problem containing %q, got %q", tt.want, errs)
			}
		})
	}
}

// TestReadmeNamesEveryObject keeps deploy/k8s/README.md in step with the
// manifests: it names every object of an overlay.
func TestReadmeNamesEveryObject(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("k8s", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for region, dir := range overlays(t) {
		if !strings.Contains(string(readme), "kubectl apply -k deploy/k8s/overlays/"+region) {
			t.Errorf("k8s/README.md does not say how to apply region %s", region)
		}
		for _, o := range loadManifests(t, dir).objs {
			name := getStr(o, "metadata", "name")
			if !regexp.MustCompile("`" + regexp.QuoteMeta(name) + "`").Match(readme) {
				t.Errorf("k8s/README.md does not mention %s (as `%s`)", describe(o), name)
			}
		}
	}
	for name := range externalSecrets {
		if !strings.Contains(string(readme), name) {
			t.Errorf("k8s/README.md does not say how to create the Secret %s", name)
		}
	}
}
