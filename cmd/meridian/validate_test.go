package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
)

// Each broken config is refused by `meridian validate` with a message that
// names the field, and `meridian edge` refuses to start on it.
func TestValidateNamesTheField(t *testing.T) {
	site := "sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n"
	cases := []struct{ name, yaml, want string }{
		{"no sites", "name: e\n", "neither an edge config"},
		{"empty sites", "sites: []\n", "sites: empty"},
		{"unknown field", site + "cache: {max_byts: 1}\n", "cache.max_byts: unknown field; did you mean max_bytes?"},
		{"bad origin scheme", "sites: [{hosts: [a], origin: 'ftp://x'}]\n", "sites[0].origin"},
		{"pool without servers", "sites: [{hosts: [a], pool: {servers: []}}]\n", "sites[0].origin: required"},
		{"negative timeout", "sites: [{hosts: [a], origin: 'http://o:1', timeout: -5s}]\n", "sites[0].timeout: negative"},
		{"pool server bad url", "sites: [{hosts: [a], pool: {servers: [{url: 'o:1'}]}}]\n", "sites[0].pool"},
		{"negative pool timeout", "sites: [{hosts: [a], pool: {servers: [{url: 'http://o:1'}], try_timeout: -1s}}]\n", "sites[0].pool: try_timeout"},
		{"unknown shield region", site[:len(site)-3] + ", shield: {regions: [mars]}}]\ncluster: {secret: 0123456789abcdef0123, gossip_listen: '127.0.0.1:0', peer_listen: '127.0.0.1:0'}\nname: e\n", "sites[0].shield.regions[0]: unknown region"},
		{"shield loop", "sites: [{hosts: [a], origin: 'http://o:1', shield: {regions: [eu, eu]}}]\n", "shield loop"},
		{"short secret", site + "cluster: {secret: short}\n", "cluster.secret"},
		{"bad admin listen", site + "admin: {listen: nope}\n", "admin.listen"},
		{"duplicate region", site + "regions: [{name: eu, edges: [{name: a, peer: '1.2.3.4:1'}]}, {name: eu, edges: [{name: b, peer: '1.2.3.4:2'}]}]\n", "regions[1].name"},
		{"duplicated region edge", site + "regions: [{name: eu, edges: [{name: a, peer: '1.2.3.4:1'}, {name: a, peer: '1.2.3.4:2'}]}]\n", `regions[0].edges[1].name: duplicate "a"`},
		{"region edge weight", site + "regions: [{name: eu, edges: [{name: a, peer: '1.2.3.4:1', weight: 2000000}]}]\n", "regions[0].edges: ring: peers[0].weight"},
		{"geo without edges", "regions: [{name: eu, point: {lat: 50, lon: 8}, edges: []}]\n", "regions[0].edges"},
		{"geo bad default", "default_region: mars\nregions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n", "default_region"},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := runValidate(context.Background(), []string{path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("case %d: validate said %v, want it to name %q", i, err, tc.want)
			}
			if !strings.Contains(tc.yaml, "sites") {
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // if it did start, it would stop at once
			if err := runEdge(ctx, []string{"--config", path}); err == nil {
				t.Fatal("meridian edge started on a broken config")
			}
		})
	}
}

func TestValidateAcceptsTheExamples(t *testing.T) {
	t.Setenv("EDGE_NAME", "us-0")
	// The example's certificate paths are a deployment's: validate reads
	// the files, so the test puts a certificate where the copy says.
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "www.example.com")
	example, err := os.ReadFile("../../deploy/edge.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(example, []byte("/etc/meridian/tls/tls.crt")) || !bytes.Contains(example, []byte("/etc/meridian/tls/tls.key")) {
		t.Fatal("the example's tls paths moved: update this test")
	}
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	example = bytes.ReplaceAll(example, []byte("/etc/meridian/tls/"), []byte(dir+"/"))
	// And the cluster CA's files (cluster.tls).
	if !bytes.Contains(example, []byte("/etc/meridian/cluster-tls/ca.crt")) {
		t.Fatal("the example's cluster.tls paths moved: update this test")
	}
	cdir := filepath.Join(dir, "cluster-tls")
	os.Mkdir(cdir, 0o700)
	ca, err := certs.NewCA("example cluster CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCertFile(filepath.Join(cdir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueFiles(cdir, "tls"); err != nil { // tls.crt, tls.key
		t.Fatal(err)
	}
	example = bytes.ReplaceAll(example, []byte("/etc/meridian/cluster-tls/"), []byte(cdir+"/"))
	// And the secrets (admin tokens, cluster secret) and the GeoIP
	// database of the geo rules: validate reads every file named.
	sdir := filepath.Join(dir, "secrets")
	os.Mkdir(sdir, 0o700)
	for _, name := range []string{"purge-token", "read-token", "cluster-secret"} {
		if !bytes.Contains(example, []byte("/etc/meridian/secrets/"+name)) {
			t.Fatalf("the example's %s moved: update this test", name)
		}
		if err := os.WriteFile(filepath.Join(sdir, name), []byte("0123456789abcdef-"+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	example = bytes.ReplaceAll(example, []byte("/etc/meridian/secrets/"), []byte(sdir+"/"))
	const exampleDB = "/usr/share/GeoIP/GeoLite2-Country.mmdb"
	if !bytes.Contains(example, []byte(exampleDB)) {
		t.Fatal("the example's geo_access database moved: update this test")
	}
	db, err := filepath.Abs("../../geo/testdata/geoip/GeoLite2-Country-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	example = bytes.ReplaceAll(example, []byte(exampleDB), []byte(db))
	copyPath := filepath.Join(dir, "edge.example.yaml")
	if err := os.WriteFile(copyPath, example, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{copyPath} {
		if err := runValidate(context.Background(), []string{path}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

// --explain prints the upstream plan of every site, in the order a fill
// tries its hops.
func TestValidateExplainsThePlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.yaml")
	conf := `name: us-0
region: us
cluster: {secret: 0123456789abcdef0123, replicas: 2}
sites:
  - hosts: [a.example]
    pool: {name: a-pool, servers: [{url: 'http://10.0.0.1:80'}, {url: 'http://10.0.0.2:80'}]}
    shield: {regions: [eu, us], direct: false}
regions:
  - {name: eu, point: {lat: 50.11, lon: 8.68}, edges: [{name: eu-0, peer: '10.1.0.1:7947'}, {name: eu-1, peer: '10.1.0.2:7947'}]}
  - {name: us, point: {lat: 39.04, lon: -77.49}, edges: [{name: us-0, peer: '10.2.0.1:7947'}]}
  - {name: ap, point: {lat: 35.69, lon: 139.69}, edges: [{name: ap-0, peer: '10.3.0.1:7947'}]}
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := validate(&out, []string{"--explain", path}); err != nil {
		t.Fatal(err)
	}
	want := path + `: valid edge config (it has sites:)
node us-0 in region us
site a.example
  1. owner: the key's owner on region us's ring of members (2 kept per object); the owner goes on
  2. shield: the key's owner in region eu; never the origin directly (direct: false)
  3. origin: pool a-pool: http://10.0.0.1:80, http://10.0.0.2:80
  4. failover, only when the path to the origin failed: the key's owner in region eu, then in ap
ring eu: eu-0, eu-1
ring ap: ap-0
`
	if out.String() != want {
		t.Fatalf("validate --explain printed\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := validate(&out, []string{path}); err != nil || out.String() != path+": valid edge config (it has sites:)\n" {
		t.Fatalf("validate without --explain: %v, %q", err, out.String())
	}
	if err := validate(&out, []string{"--explain"}); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("validate --explain without a file: %v", err)
	}
}
