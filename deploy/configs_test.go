package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meridiancdn/meridian/edge/certs"
)

// region is one overlay's edge and geo configs with the workloads that run
// them.
type region struct {
	name string
	m    *manifests

	edges, geo       obj // the StatefulSet and the Deployment
	edgeCtr, geoCtr  obj // their main containers
	edgeFile         configFile
	geoFile          configFile
	edgeTmpl, geoRaw string // the ConfigMaps' texts
}

func loadRegion(t *testing.T, name, dir string) *region {
	t.Helper()
	r := &region{name: name, m: loadManifests(t, dir)}
	r.edges = r.m.get("StatefulSet", "edge")
	r.geo = r.m.get("Deployment", "geo")
	if r.edges == nil || r.geo == nil {
		t.Fatalf("%s: want StatefulSet/edge and Deployment/geo", dir)
	}
	r.edgeCtr = mapsOf(getList(r.edges, "spec", "template", "spec", "containers"))[0]
	r.geoCtr = mapsOf(getList(r.geo, "spec", "template", "spec", "containers"))[0]
	var err error
	if r.edgeFile, err = r.m.configSource(r.edges, r.edgeCtr); err != nil {
		t.Fatalf("%s: edge: %v", dir, err)
	}
	if r.geoFile, err = r.m.configSource(r.geo, r.geoCtr); err != nil {
		t.Fatalf("%s: geo: %v", dir, err)
	}
	r.edgeTmpl = getStr(r.m.get("ConfigMap", r.edgeFile.configMap), "data", r.edgeFile.key)
	r.geoRaw = getStr(r.m.get("ConfigMap", r.geoFile.configMap), "data", r.geoFile.key)
	if r.edgeTmpl == "" || r.geoRaw == "" {
		t.Fatalf("%s: empty edge or geo config", dir)
	}
	return r
}

func loadRegions(t *testing.T) []*region {
	t.Helper()
	var out []*region
	for name, dir := range overlays(t) {
		out = append(out, loadRegion(t, name, dir))
	}
	slices.SortFunc(out, func(a, b *region) int { return strings.Compare(a.name, b.name) })
	return out
}

// testPodIP stands for the pod's address (status.podIP) in rendered configs.
const testPodIP = "10.1.2.3"

var (
	sedSubst    = regexp.MustCompile(`s/(__[A-Z_]+__)/\$\{([A-Z_]+)\}/g`)
	placeholder = regexp.MustCompile(`__[A-Z_]+__`)
)

// render does what the edge's render-config init container does for the
// pod with the given ordinal in the given zone: each sed substitution
// replaces a placeholder with an environment variable from the downward
// API.
func (r *region) render(t *testing.T, ordinal int, zone string) string {
	t.Helper()
	init := r.edgeFile.render
	if init == nil {
		return r.edgeTmpl
	}
	script := strings.Join(append(getStrings(init, "command"), getStrings(init, "args")...), " ")
	env := map[string]string{}
	for _, e := range mapsOf(getList(init, "env")) {
		switch path := getStr(e, "valueFrom", "fieldRef", "fieldPath"); path {
		case "metadata.name":
			env[getStr(e, "name")] = fmt.Sprintf("%s-%d", getStr(r.edges, "metadata", "name"), ordinal)
		case "metadata.labels['topology.kubernetes.io/zone']":
			env[getStr(e, "name")] = zone
		case "status.podIP":
			env[getStr(e, "name")] = testPodIP
		default:
			t.Fatalf("render-config: env %s from %q: the test does not know that field", getStr(e, "name"), path)
		}
	}
	out := r.edgeTmpl
	for _, m := range sedSubst.FindAllStringSubmatch(script, -1) {
		v, ok := env[m[2]]
		if !ok {
			t.Fatalf("render-config substitutes %s with $%s, which it does not set", m[1], m[2])
		}
		out = strings.ReplaceAll(out, m[1], v)
	}
	if left := placeholder.FindAllString(out, -1); len(left) > 0 {
		t.Fatalf("render-config leaves placeholders %v in the edge config", left)
	}
	return out
}

func parseYAML(t *testing.T, text string) obj {
	t.Helper()
	var o obj
	if err := yaml.Unmarshal([]byte(text), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestEmbeddedConfigsValidate runs every edge and geo config that the
// overlays carry through `meridian validate`: the edge config as each edge
// gets it, with and without a zone label on the pod.
func TestEmbeddedConfigsValidate(t *testing.T) {
	for _, r := range loadRegions(t) {
		zones := zonesOf(r.edges)
		replicas, _ := getInt(r.edges, "spec", "replicas")
		for ord := range replicas {
			for _, zone := range []string{zones[ord%len(zones)], ""} {
				t.Run(fmt.Sprintf("%s/edge-%d/zone=%q", r.name, ord, zone), func(t *testing.T) {
					t.Parallel()
					out, err := runValidate(t, "edge.yaml", []byte(withTestCert(t, r.render(t, ord, zone))))
					if err != nil || !strings.Contains(out, "valid edge config") {
						t.Errorf("meridian validate: %v\n%s", err, out)
					}
				})
			}
		}
		t.Run(r.name+"/geo", func(t *testing.T) {
			t.Parallel()
			out, err := runValidate(t, "geo.yaml", []byte(withTestDatabase(t, r.geoRaw)))
			if err != nil || !strings.Contains(out, "valid geo config") {
				t.Errorf("meridian validate: %v\n%s", err, out)
			}
		})
	}
}

// TestValidateRefusesBrokenConfigs makes sure the validation above has
// teeth: a config broken in one field is refused, naming the field.
func TestValidateRefusesBrokenConfigs(t *testing.T) {
	r := loadRegions(t)[0]
	edge := r.render(t, 0, "")
	tests := []struct {
		name, config, old, new, want string
	}{
		{"edge listen", edge, "listen: 0.0.0.0:80\n", "listen: 0.0.0.0\n", "listen"},
		{"edge shield region", edge, "regions: [eu, us]", "regions: [eu, mars]", "shield.regions"},
		{"edge seed_dns", edge, "seed_dns: edge-peers:7946", "seed_dns: edge-peers", "cluster.seed_dns"},
		{"geo edges", r.geoRaw, ":80\"]", "\"]", "edges[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(tt.config, tt.old) {
				t.Fatalf("the config has no %q to break", tt.old)
			}
			out, err := runValidate(t, "broken.yaml", []byte(strings.Replace(tt.config, tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(out, tt.want) {
				t.Errorf("meridian validate accepted or did not name %q: %v\n%s", tt.want, err, out)
			}
		})
	}
}

// port returns the port of a listen address, and whether its host is a
// wildcard (reachable from outside the pod).
func port(t *testing.T, field, addr string) int {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" && host != testPodIP {
		t.Errorf("%s: %q listens on %s only, not reachable from outside the pod", field, addr, host)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return n
}

// wantPort checks that a container has a named port with this number.
func wantPort(t *testing.T, what string, ctr obj, name, protocol string, number int) {
	t.Helper()
	p, ok := findContainerPort(ctr, name, protocol)
	if !ok {
		t.Errorf("%s: container %s has no %s port %q", what, getStr(ctr, "name"), protocol, name)
		return
	}
	if p.number != number {
		t.Errorf("%s is port %d but container port %q is %d", what, number, name, p.number)
	}
}

// wantSecretFile checks that a file the config reads is a key of a Secret
// mounted in the container.
func wantSecretFile(t *testing.T, r *region, w, ctr obj, field, path string) {
	t.Helper()
	mount, rel, ok := mountOf(ctr, path)
	if !ok {
		t.Errorf("%s %s: no volume is mounted there", field, path)
		return
	}
	for _, v := range mapsOf(getList(w, "spec", "template", "spec", "volumes")) {
		if getStr(v, "name") != getStr(mount, "name") {
			continue
		}
		src := getMap(v, "secret")
		if src == nil {
			t.Errorf("%s %s: volume %s is not a Secret", field, path, getStr(v, "name"))
			return
		}
		name := getStr(src, "secretName")
		keys, ok := r.m.keys("Secret", name)
		if !ok {
			t.Errorf("%s %s: no Secret %s", field, path, name)
			return
		}
		key := rel
		if items := mapsOf(getList(src, "items")); len(items) > 0 {
			key = ""
			for _, it := range items {
				if getStr(it, "path") == rel {
					key = getStr(it, "key")
				}
			}
		}
		if !slices.Contains(keys, key) {
			t.Errorf("%s %s: Secret %s has no key %q for it", field, path, name, rel)
		}
		return
	}
}

func duration(t *testing.T, field, s, def string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(cmpOr(s, def))
	if err != nil {
		t.Fatalf("%s: %v", field, err)
	}
	return d
}

// TestEdgeConfigMatchesManifests checks the edge config against the pods
// and Services that run it: listeners against container ports, the gossip
// seed against the headless Service, files against mounted Secrets, the
// shutdown time against the grace period.
func TestEdgeConfigMatchesManifests(t *testing.T) {
	for _, r := range loadRegions(t) {
		t.Run(r.name, func(t *testing.T) {
			cfg := parseYAML(t, r.render(t, 0, "z"))
			ctr := r.edgeCtr

			if got := getStr(cfg, "region"); got != r.name {
				t.Errorf("region: %q, want the overlay's %q", got, r.name)
			}
			wantPort(t, "listen", ctr, "http", "TCP", port(t, "listen", getStr(cfg, "listen")))
			tlsPort := port(t, "tls.listen", getStr(cfg, "tls", "listen"))
			wantPort(t, "tls.listen", ctr, "https", "TCP", tlsPort)
			wantPort(t, "tls.listen (HTTP/3)", ctr, "h3", "UDP", tlsPort)
			wantPort(t, "admin.listen", ctr, "admin", "TCP", port(t, "admin.listen", getStr(cfg, "admin", "listen")))
			gossip := port(t, "cluster.gossip_listen", getStr(cfg, "cluster", "gossip_listen"))
			wantPort(t, "cluster.gossip_listen", ctr, "gossip", "TCP", gossip)
			wantPort(t, "cluster.gossip_listen (UDP)", ctr, "gossip-udp", "UDP", gossip)
			peer := port(t, "cluster.peer_listen", getStr(cfg, "cluster", "peer_listen"))
			wantPort(t, "cluster.peer_listen", ctr, "peer", "TCP", peer)

			// Alt-Svc advertises the port the edge binds: the public
			// Service must expose HTTPS and HTTP/3 on that same number.
			for _, p := range mapsOf(getList(r.m.get("Service", "edge"), "spec", "ports")) {
				if name := getStr(p, "name"); name == "https" || name == "h3" {
					if n, _ := getInt(p, "port"); n != tlsPort {
						t.Errorf("Service edge port %s is %d, but the edge advertises h3=\":%d\" in Alt-Svc", name, n, tlsPort)
					}
				}
			}

			// The gossip seed is the StatefulSet's headless Service.
			seed := getStr(cfg, "cluster", "seed_dns")
			host, sp, err := net.SplitHostPort(seed)
			svc := getStr(r.edges, "spec", "serviceName")
			if err != nil || (host != svc && !strings.HasPrefix(host, svc+".")) {
				t.Errorf("cluster.seed_dns %q: want the headless Service %s", seed, svc)
			}
			if n, _ := strconv.Atoi(sp); n != gossip {
				t.Errorf("cluster.seed_dns %q: port is not the gossip port %d", seed, gossip)
			}
			for _, proto := range []string{"TCP", "UDP"} {
				found := false
				for _, p := range mapsOf(getList(r.m.get("Service", svc), "spec", "ports")) {
					n, _ := getInt(p, "port")
					found = found || n == gossip && cmpOr(getStr(p, "protocol"), "TCP") == proto
				}
				if !found {
					t.Errorf("headless Service %s does not expose gossip port %d/%s", svc, gossip, proto)
				}
			}

			wantSecretFile(t, r, r.edges, ctr, "admin.token_file", getStr(cfg, "admin", "token_file"))
			// The admin API (status, metrics, purge) listens on the pod's
			// own address, which the kubelet's probes and Prometheus
			// reach, not on every address; /status and /metrics want the
			// read token.
			if host, _, _ := net.SplitHostPort(getStr(cfg, "admin", "listen")); host != testPodIP {
				t.Errorf("admin.listen %q: want the pod's address (status.podIP), not %q", getStr(cfg, "admin", "listen"), host)
			}
			wantSecretFile(t, r, r.edges, ctr, "admin.read_token_file", getStr(cfg, "admin", "read_token_file"))
			wantSecretFile(t, r, r.edges, ctr, "cluster.secret_file", getStr(cfg, "cluster", "secret_file"))
			wantSecretFile(t, r, r.edges, ctr, "tls.cert_file", getStr(cfg, "tls", "cert_file"))
			wantSecretFile(t, r, r.edges, ctr, "tls.key_file", getStr(cfg, "tls", "key_file"))
			for _, f := range []string{"ca_file", "cert_file", "key_file"} {
				path := getStr(cfg, "cluster", "tls", f)
				if path == "" {
					t.Errorf("cluster.tls.%s: not set; the links between edges must run on mutual TLS", f)
					continue
				}
				wantSecretFile(t, r, r.edges, ctr, "cluster.tls."+f, path)
			}

			// SIGKILL must not cut the drain short.
			grace, _ := getInt(r.edges, "spec", "template", "spec", "terminationGracePeriodSeconds")
			preStop, _ := getInt(ctr, "lifecycle", "preStop", "sleep", "seconds")
			need := time.Duration(preStop)*time.Second +
				duration(t, "admin.drain_delay", getStr(cfg, "admin", "drain_delay"), "0s") +
				duration(t, "server.shutdown_timeout", getStr(cfg, "server", "shutdown_timeout"), "30s")
			if time.Duration(grace)*time.Second <= need {
				t.Errorf("terminationGracePeriodSeconds %d is not above preStop sleep + drain_delay + shutdown_timeout = %v", grace, need)
			}

			// Probes: alive on /healthz, ready on /readyz, both on the admin port.
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if got := getStr(ctr, probe, "httpGet", "path"); got != path {
					t.Errorf("%s path %q, want %q", probe, got, path)
				}
				if got := getStr(ctr, probe, "httpGet", "port"); got != "admin" {
					t.Errorf("%s port %q, want the admin port", probe, got)
				}
			}

			// Own region in the regions table: one entry per edge, by the
			// name each edge gets, reached at its pod's DNS name.
			replicas, _ := getInt(r.edges, "spec", "replicas")
			var own obj
			for _, reg := range mapsOf(getList(cfg, "regions")) {
				if getStr(reg, "name") == r.name {
					own = reg
				}
			}
			entries := mapsOf(getList(own, "edges"))
			if len(entries) != replicas {
				t.Fatalf("regions: %s lists %d edges, the StatefulSet runs %d", r.name, len(entries), replicas)
			}
			for i, e := range entries {
				want := parseYAML(t, r.render(t, i, "z"))
				if got := getStr(e, "name"); got != getStr(want, "name") {
					t.Errorf("regions[%s].edges[%d].name %q, but edge-%d is named %q", r.name, i, got, i, getStr(want, "name"))
				}
				wantPeer := fmt.Sprintf("%s-%d.%s:%d", getStr(r.edges, "metadata", "name"), i, svc, peer)
				if got := getStr(e, "peer"); got != wantPeer {
					t.Errorf("regions[%s].edges[%d].peer %q, want %q", r.name, i, got, wantPeer)
				}
				if r.m.get("Service", fmt.Sprintf("edge-%d-peer", i)) == nil {
					t.Errorf("no Service edge-%d-peer for the other regions to reach edge-%d", i, i)
				}
			}

			// The other regions' edges are reached at their per-edge
			// Services' port, which leads to the peer port: the one port
			// between regions, on mutual TLS (cluster.tls above).
			peerSvc := mapsOf(getList(r.m.get("Service", "edge-0-peer"), "spec", "ports"))
			if len(peerSvc) != 1 || getStr(peerSvc[0], "targetPort") != "peer" {
				t.Fatalf("Service edge-0-peer ports %v: want the peer port alone", peerSvc)
			}
			lbPort, _ := getInt(peerSvc[0], "port")
			for _, reg := range mapsOf(getList(cfg, "regions")) {
				if getStr(reg, "name") == r.name {
					continue
				}
				for i, e := range mapsOf(getList(reg, "edges")) {
					_, p, err := net.SplitHostPort(getStr(e, "peer"))
					if n, _ := strconv.Atoi(p); err != nil || n != lbPort {
						t.Errorf("regions[%s].edges[%d].peer %q: want the peer Services' port %d (mutual TLS), nothing else crosses regions",
							getStr(reg, "name"), i, getStr(e, "peer"), lbPort)
					}
				}
			}
		})
	}
}

// TestGeoConfigMatchesManifests checks the geo config against its pods and
// Service, and its region table against the edges.
func TestGeoConfigMatchesManifests(t *testing.T) {
	for _, r := range loadRegions(t) {
		t.Run(r.name, func(t *testing.T) {
			cfg := parseYAML(t, r.geoRaw)
			dns := port(t, "dns.listen", getStr(cfg, "dns", "listen"))
			wantPort(t, "dns.listen", r.geoCtr, "dns", "UDP", dns)
			wantPort(t, "dns.listen (TCP)", r.geoCtr, "dns-tcp", "TCP", dns)
			wantPort(t, "http.listen", r.geoCtr, "http", "TCP", port(t, "http.listen", getStr(cfg, "http", "listen")))

			svc := r.m.get("Service", "geo")
			for _, proto := range []string{"UDP", "TCP"} {
				found := false
				for _, p := range mapsOf(getList(svc, "spec", "ports")) {
					n, _ := getInt(p, "port")
					found = found || n == 53 && cmpOr(getStr(p, "protocol"), "TCP") == proto
				}
				if !found {
					t.Errorf("Service geo does not answer DNS on 53/%s", proto)
				}
			}
			if getStr(svc, "spec", "externalTrafficPolicy") != "Local" {
				t.Error("Service geo must keep client addresses (externalTrafficPolicy: Local): GeoIP locates them")
			}

			if db := getStr(cfg, "database"); db != "" {
				mount, _, ok := mountOf(r.geoCtr, db)
				if !ok {
					t.Errorf("database %s: no volume mounted there", db)
				} else {
					filled := false
					for _, init := range mapsOf(getList(r.geo, "spec", "template", "spec", "initContainers")) {
						if _, ok := mountByName(init, getStr(mount, "name")); ok {
							filled = true
						}
					}
					if !filled {
						t.Errorf("database %s: no init container fills volume %s", db, getStr(mount, "name"))
					}
				}
			}

			if got := getStr(cfg, "default_region"); got != r.name {
				t.Errorf("default_region %q, want the overlay's region %q", got, r.name)
			}
			// Geo probes GET <path> on each region's edge address: the
			// edges answer it on their public HTTP port (for any host that
			// is not a site's), exposed by Service edge.
			httpPort := 0
			for _, p := range mapsOf(getList(r.m.get("Service", "edge"), "spec", "ports")) {
				if getStr(p, "targetPort") == "http" {
					httpPort, _ = getInt(p, "port")
				}
			}
			if path := cmpOr(getStr(cfg, "probe", "path"), "/healthz"); path != getStr(r.edgeCtr, "livenessProbe", "httpGet", "path") {
				t.Errorf("probe.path %q is not the edges' health path", path)
			}
			for _, reg := range mapsOf(getList(cfg, "regions")) {
				for _, e := range getStrings(reg, "edges") {
					_, p, _ := net.SplitHostPort(e)
					if p != strconv.Itoa(httpPort) {
						t.Errorf("regions[%s].edges %s: geo probes /healthz there, but the edges' public HTTP port is %d", getStr(reg, "name"), e, httpPort)
					}
				}
			}
		})
	}
}

// TestOverlaysAgree checks what must be the same in every region: the geo
// region table, the sites and their shields, and each region's published
// edges and point; and that every region of the table has an overlay.
func TestOverlaysAgree(t *testing.T) {
	regions := loadRegions(t)
	var names []string
	for _, r := range regions {
		names = append(names, r.name)
	}
	first := regions[0]
	firstGeo := parseYAML(t, first.geoRaw)
	var geoNames []string
	for _, reg := range mapsOf(getList(firstGeo, "regions")) {
		geoNames = append(geoNames, getStr(reg, "name"))
	}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(geoNames)), names) {
		t.Errorf("geo regions %v, overlays %v: want one overlay per region", geoNames, names)
	}

	// The edge config with what legitimately differs taken out: the
	// region's name, its edges' name prefix and its own edges' addresses.
	normalized := func(r *region) (obj, map[string]any) {
		cfg := parseYAML(t, r.render(t, 0, ""))
		if name := getStr(cfg, "name"); !strings.HasPrefix(name, r.name+"-") {
			t.Errorf("%s: edge name %q does not start with the region's name: names must be unique in the CDN", r.name, name)
		}
		delete(cfg, "name")
		delete(cfg, "region")
		published := map[string]any{}
		for _, reg := range mapsOf(getList(cfg, "regions")) {
			if getStr(reg, "name") != r.name {
				published[getStr(reg, "name")] = reg
			}
		}
		delete(cfg, "regions")
		return cfg, published
	}
	firstEdge, _ := normalized(first)
	published := map[string]map[string]any{}
	for _, r := range regions {
		if geo := parseYAML(t, r.geoRaw); !reflect.DeepEqual(getList(geo, "regions"), getList(firstGeo, "regions")) {
			t.Errorf("%s: geo regions table differs from %s's", r.name, first.name)
		}
		cfg, pub := normalized(r)
		if !reflect.DeepEqual(cfg, firstEdge) {
			a, _ := yaml.Marshal(cfg)
			b, _ := yaml.Marshal(firstEdge)
			t.Errorf("%s: edge config differs from %s's beyond name, region and regions:\n%s\n---\n%s", r.name, first.name, a, b)
		}
		published[r.name] = pub
		geoPoints := map[string]any{}
		for _, reg := range mapsOf(getList(parseYAML(t, r.geoRaw), "regions")) {
			geoPoints[getStr(reg, "name")] = get(reg, "point")
		}
		var tableNames []string
		for _, reg := range mapsOf(getList(parseYAML(t, r.render(t, 0, "")), "regions")) {
			name := getStr(reg, "name")
			tableNames = append(tableNames, name)
			// Edge-side failover orders regions by these points, geo
			// steering by the geo table's: they must agree.
			if p := get(reg, "point"); p == nil || !reflect.DeepEqual(p, geoPoints[name]) {
				t.Errorf("%s: the edge regions table puts %s at %v, the geo config at %v", r.name, name, p, geoPoints[name])
			}
		}
		if !reflect.DeepEqual(slices.Sorted(slices.Values(tableNames)), names) {
			t.Errorf("%s: the edge regions table lists %v, want every region %v", r.name, tableNames, names)
		}
		for _, site := range mapsOf(getList(cfg, "sites")) {
			for _, s := range getStrings(site, "shield", "regions") {
				if !slices.Contains(names, s) {
					t.Errorf("%s: shield region %q has no overlay", r.name, s)
				}
			}
		}
	}
	// Region X's edges as published to every other region are the same.
	for _, x := range names {
		var seen any
		for _, r := range names {
			if r == x {
				continue
			}
			if seen == nil {
				seen = published[r][x]
			} else if !reflect.DeepEqual(published[r][x], seen) {
				t.Errorf("region %s's edges are published differently to %s", x, r)
			}
		}
	}
}

// withTestCert points the config's certificate paths (a Secret mounted
// at /etc/meridian/tls/, and the cluster's at /etc/meridian/cluster-tls/)
// at throwaway certificates: validate reads them.
func withTestCert(t *testing.T, config string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"edge.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The cluster CA and a member certificate of it (cluster.tls).
	ca, err := certs.NewCA("deploy test cluster CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	cdir := t.TempDir()
	if err := ca.WriteCertFile(filepath.Join(cdir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.IssueFiles(cdir, "member")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(os.Rename(certFile, filepath.Join(cdir, "tls.crt")), os.Rename(keyFile, filepath.Join(cdir, "tls.key"))); err != nil {
		t.Fatal(err)
	}
	config = strings.ReplaceAll(config, "/etc/meridian/cluster-tls/", cdir+"/")
	// And the secrets the Secret mounts: validate reads every file named.
	sdir := t.TempDir()
	for _, name := range []string{"purge-token", "read-token", "cluster-secret"} {
		if err := os.WriteFile(filepath.Join(sdir, name), []byte("deploy-test-"+name+"-0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config = strings.ReplaceAll(config, "/etc/meridian/secrets/", sdir+"/")
	return strings.ReplaceAll(config, "/etc/meridian/tls/", dir+"/")
}

// withTestDatabase points a geo config's GeoIP database, which the
// overlays' init container downloads, at the test database: validate
// reads it.
func withTestDatabase(t *testing.T, config string) string {
	t.Helper()
	db, err := filepath.Abs("../geo/testdata/geoip/GeoLite2-City-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(config, "/var/lib/meridian/geoip/GeoLite2-City.mmdb", db)
}
