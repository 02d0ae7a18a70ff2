package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// validate reads every file a config names, as the service would at
// start, and names the field of one that is missing, unreadable or does
// not parse.
func TestValidateChecksEveryReferencedFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	db, err := filepath.Abs("../../geo/testdata/geoip/GeoIP2-Country-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	token := write("token", "0123456789abcdef-token\n")
	short := write("short", "abc\n")
	empty := write("empty", "\n")
	garbage := write("garbage.mmdb", "not a database\n")
	missing := filepath.Join(dir, "missing")
	logDir := t.TempDir()
	edgeConf := func(site, extra string) string {
		return "name: e1\nsites:\n  - hosts: [a.example]\n    origin: 'http://127.0.0.1:1'\n" + site + extra
	}
	geoAccess := func(path string) string {
		return "    geo_access: {database: '" + path + "', rules: [{prefix: /, deny_countries: [SE]}]}\n"
	}
	good := edgeConf(geoAccess(db)+"    purge_token_file: '"+token+"'\n",
		"admin: {token_file: '"+token+"', read_token_file: '"+token+"'}\n"+
			"cluster: {secret_file: '"+token+"'}\n"+
			"access_log: {destination: '"+filepath.Join(logDir, "access.log")+"'}\n")
	var out bytes.Buffer
	if err := validate(&out, []string{write("good.yaml", good)}); err != nil {
		t.Fatalf("every file there: %v", err)
	}
	for _, tc := range []struct{ name, conf, want string }{
		{"purge token file missing", edgeConf("    purge_token_file: '"+missing+"'\n", ""), "sites[0].purge_token_file: open " + missing},
		{"purge token file short", edgeConf("    purge_token_file: '"+short+"'\n", ""), "sites[0].purge_token_file: " + short + ": a token shorter than 16 bytes"},
		{"geo_access database missing", edgeConf(geoAccess(missing), ""), "sites[0].geo_access.database: geoip database: open " + missing},
		{"geo_access database garbage", edgeConf(geoAccess(garbage), ""), "sites[0].geo_access.database: geoip database " + garbage},
		{"admin token file missing", edgeConf("", "admin: {token_file: '"+missing+"'}\n"), "admin.token_file: open " + missing},
		{"admin read token file empty", edgeConf("", "admin: {read_token_file: '"+empty+"'}\n"), "admin.read_token_file: empty"},
		{"cluster secret file missing", edgeConf("", "cluster: {secret_file: '"+missing+"'}\n"), "cluster.secret_file: open " + missing},
		{"cluster secret file short", edgeConf("", "cluster: {secret_file: '"+short+"'}\n"), "cluster.secret_file: secret too short"},
		{"cluster tls files missing", edgeConf("", "cluster: {secret_file: '"+token+"', tls: {ca_file: '"+missing+"', cert_file: '"+missing+"', key_file: '"+missing+"'}}\n"), "cluster.tls.ca_file"},
		{"pool ca file missing", edgeConf("    pool: {tls: {ca_file: '"+missing+"'}}\n", ""), "sites[0].pool: tls.ca_file: open " + missing},
		{"access log folder missing", edgeConf("", "access_log: {destination: '"+filepath.Join(missing, "access.log")+"'}\n"), "access_log.destination: its folder: stat " + missing},
		{"access log is a folder", edgeConf("", "access_log: {destination: '"+logDir+"'}\n"), "access_log.destination: " + logDir + " is a folder"},
		{"disk path is a file", edgeConf("", "cache: {disk: {path: '"+token+"'}}\n"), "cache.disk.path: " + token + " is not a folder"},
		{"geo database missing", "database: '" + missing + "'\nregions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n", "database: geoip database: open " + missing},
		{"geo database garbage", "database: '" + garbage + "'\nregions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n", "database: geoip database " + garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(&bytes.Buffer{}, []string{write("edge.yaml", tc.conf)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v\nwant %q", err, tc.want)
			}
		})
	}
	geoConf := write("geo.yaml", "database: '"+db+"'\nregions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\n")
	out.Reset()
	if err := validate(&out, []string{geoConf}); err != nil || out.String() != geoConf+": valid geo config (it has regions: and no sites:)\n" {
		t.Fatalf("geo config with its database: %v %q", err, out.String())
	}
}

// validate says which kind of config it took the file for and why; a
// misspelt sites: is one clear error, not a geo config's.
func TestValidateSaysWhichKindAndWhy(t *testing.T) {
	dir := t.TempDir()
	write := func(data string) string {
		p := filepath.Join(dir, "conf.yaml")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const regions = "regions: [{name: eu, edges: [{name: e1, peer: '127.0.0.1:7947'}]}]\n"
	edge := write("name: e1\nsites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n" + regions)
	for _, args := range [][]string{{edge}, {"--config", edge}, {edge, "--explain"}} {
		var out bytes.Buffer
		if err := validate(&out, args); err != nil || !strings.HasPrefix(out.String(), edge+": valid edge config (it has sites:)\n") {
			t.Fatalf("validate %q: %v %q", args, err, out.String())
		}
	}
	if err := validate(&bytes.Buffer{}, []string{"--config", edge, edge}); err == nil || !strings.Contains(err.Error(), "usage: meridian validate") {
		t.Fatalf("a file twice: %v", err)
	}
	for _, tc := range []struct{ conf, want string }{
		{"name: e1\nsite: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n" + regions + "admin: {listen: '127.0.0.1:9090'}\n",
			"config: line 2: unknown top-level field site; did you mean sites?\n(read as an edge config: it has site:, close to sites:)"},
		{"Sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n" + regions,
			"config: line 1: unknown top-level field Sites; did you mean sites?\n(read as an edge config: it has Sites:, close to sites:)"},
		{"name: e1\n", "neither an edge config (no sites:) nor a geo config (no regions:)"},
		{"regions: [{name: eu, point: {lat: 50, lon: 8}, edges: ['127.0.0.1:1']}]\nprobe: {intervl: 1s}\n",
			"line 2: probe.intervl: unknown field; did you mean interval?\n(read as a geo config: it has regions: and no sites:)"},
	} {
		path := write(tc.conf)
		err := validate(&bytes.Buffer{}, []string{path})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s  got  %v\n  want %s", tc.conf, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "problems") || strings.Contains(err.Error(), "regions[0]") {
			t.Errorf("%s: more than the one problem: %v", tc.conf, err)
		}
	}
}

// -h and --help print the command's usage on stdout and exit 0, on every
// command, wherever they come.
func TestHelpExitsZero(t *testing.T) {
	bin := filepath.Join(meridianShim(t), "meridian")
	for _, args := range [][]string{
		{"up", "-h"}, {"edge", "--help"}, {"edge", "-h"}, {"origin", "--help"}, {"geo", "-help"},
		{"validate", "--help"}, {"validate", "-h"}, {"validate", "edge.yaml", "--help"}, {"validate", "--explain", "-h"},
		{"sign-url", "--help"}, {"sign-url", "--config", "x.yaml", "https://a.example/", "-h"},
		{"version", "--help"}, {"bench", "--help"}, {"help"}, {"--help"},
	} {
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		want := "usage: meridian " + args[0]
		if args[0] == "help" || args[0] == "--help" {
			want = "usage: meridian <command>"
		}
		if err != nil || !strings.HasPrefix(stdout.String(), want) {
			t.Errorf("meridian %q: %v\nstdout %q\nstderr %q", args, err, stdout.String(), stderr.String())
		}
	}
	// A mistake is not help: exit 1, and the usage says how to get it.
	out, err := exec.Command(bin, "validate", "--nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "flag provided but not defined: -nope\nusage: meridian validate") {
		t.Errorf("validate --nope: %v %q", err, out)
	}
}
