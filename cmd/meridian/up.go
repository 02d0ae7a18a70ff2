package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/geo"
	"github.com/meridiancdn/meridian/geo/geodb"
	"github.com/meridiancdn/meridian/origin"
)

// upRegion is one region of the built-in demo CDN.
type upRegion struct {
	name  string
	point geo.Point
	city  string
}

// upRegions are the demo's regions, on different continents; a Frankfurt
// region first because it is the origin shield.
var upRegions = []upRegion{
	{"eu", geo.Point{Lat: 50.11, Lon: 8.68}, "Frankfurt"},
	{"us", geo.Point{Lat: 39.04, Lon: -77.49}, "Ashburn"},
	{"ap", geo.Point{Lat: 35.69, Lon: 139.69}, "Tokyo"},
	{"sa", geo.Point{Lat: -23.55, Lon: -46.63}, "São Paulo"},
	{"au", geo.Point{Lat: -33.87, Lon: 151.21}, "Sydney"},
}

// Ports every demo edge listens on, each at its own 127.NET.R.E address
// (--net, default 0).
const (
	upHTTPPort   = 8080
	upTLSPort    = 8443
	upAdminPort  = 9090
	upGossipPort = 7946
	upPeerPort   = 7947
	upHost       = "cdn.meridian.test"
	upToken      = "demo-purge-token"
)

// UpState is what `meridian up --state FILE` writes: every address, for
// scripts and tests.
type UpState struct {
	Origin     string `json:"origin"`
	GeoHTTP    string `json:"geo_http"`
	GeoDNS     string `json:"geo_dns"`
	Host       string `json:"host"`
	PurgeToken string `json:"purge_token"`
	Shield     string `json:"shield"`
	// SPKI is the demo certificate's pin (base64 SHA-256 of its
	// SubjectPublicKeyInfo), for Chromium's
	// --ignore-certificate-errors-spki-list.
	SPKI    string       `json:"spki"`
	Regions []UpRegionSt `json:"regions"`
}

// UpRegionSt is one region in the state file.
type UpRegionSt struct {
	Name  string     `json:"name"`
	Edges []UpEdgeSt `json:"edges"`
}

// UpEdgeSt is one edge in the state file.
type UpEdgeSt struct {
	Name  string `json:"name"`
	HTTP  string `json:"http"`
	HTTPS string `json:"https"`
	Admin string `json:"admin"`
	Peer  string `json:"peer"`
}

// runUp starts a whole CDN on loopback from embedded defaults: a demo
// origin, regions of clustered edges (each region on its own 127.NET.R.0/24),
// the origin shield in the first region, and the geo steering service.
func runUp(ctx context.Context, args []string) error { return runUpWith(ctx, args, nil) }

// runUpWith is runUp; started, when not nil, runs once every edge and the
// geo service are up, with the edges by name ("eu-1"), so that tests can
// kill one.
func runUpWith(ctx context.Context, args []string, started func(map[string]*node.Node)) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	nRegions := fs.Int("regions", 3, fmt.Sprintf("number of regions (1-%d)", len(upRegions)))
	nEdges := fs.Int("edges", 3, "edges per region (1-9)")
	statePath := fs.String("state", "", "write every address to this JSON file")
	originAddr := fs.String("origin", "127.0.0.1:9000", "demo origin address")
	geoHTTP := fs.String("geo-http", "127.0.0.1:8081", "geo steering HTTP address")
	geoDNS := fs.String("geo-dns", "127.0.0.1:8053", "geo steering DNS address (UDP and TCP)")
	verbose := fs.Bool("v", false, "log to stderr")
	net8 := fs.Int("net", 0, "edges listen on 127.NET.R.E (region R, edge E): another NET runs beside a CDN or anything else on 127.0.R.E")
	logf := addLogFlags(fs, "text")
	if _, err := parseFlags(fs, os.Stdout, args, "up [flags]",
		"Run a whole multi-region CDN on loopback, with a demo origin and geo steering: no config needed."); err != nil {
		return err
	}
	if *net8 < 0 || *net8 > 255 {
		return errors.New("up: --net must be 0-255")
	}
	edgeIP := func(r, e int) string { return upEdgeIP(*net8, r, e) }
	if *nRegions < 1 || *nRegions > len(upRegions) {
		return fmt.Errorf("up: --regions must be 1-%d", len(upRegions))
	}
	if *nEdges < 1 || *nEdges > 9 {
		return errors.New("up: --edges must be 1-9")
	}
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	log, err := logf.logger(logOut)
	if err != nil {
		return err
	}
	start := time.Now()

	demo := origin.NewDemo(nil)
	defer demo.Close()
	oln, err := net.Listen("tcp", *originAddr)
	if err != nil {
		return fmt.Errorf("demo origin: %w", err)
	}
	osrv := &http.Server{Handler: demo, ReadHeaderTimeout: 10 * time.Second}
	go osrv.Serve(oln)
	defer osrv.Close()

	dir, err := os.MkdirTemp("", "meridian-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	hosts := []string{"localhost", upHost}
	for r := 1; r <= *nRegions; r++ {
		for e := 1; e <= *nEdges; e++ {
			hosts = append(hosts, edgeIP(r, e))
		}
	}
	certPEM, keyPEM, err := listen.SelfSignedCert(hosts, time.Now())
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		return err
	}

	// The links between edges run on mutual TLS with a cluster CA made
	// for this run: every edge gets a certificate of it (below).
	clusterCA, err := certs.NewCA("meridian up cluster CA", 7*24*time.Hour, nil)
	if err != nil {
		return err
	}
	caFile := filepath.Join(dir, "cluster-ca.crt")
	if err := clusterCA.WriteCertFile(caFile); err != nil {
		return err
	}

	// The regions table every edge publishes, and the demo site.
	regions := upRegions[:*nRegions]
	var table []node.RegionConfig
	pin, err := spkiPin(certPEM)
	if err != nil {
		return err
	}
	state := UpState{Origin: oln.Addr().String(), GeoHTTP: *geoHTTP, GeoDNS: *geoDNS, Host: upHost,
		PurgeToken: upToken, Shield: regions[0].name, SPKI: pin}
	for r, reg := range regions {
		pt := node.Point{Lat: reg.point.Lat, Lon: reg.point.Lon}
		rc := node.RegionConfig{Name: reg.name, Point: &pt}
		rs := UpRegionSt{Name: reg.name}
		for e := 1; e <= *nEdges; e++ {
			ip := edgeIP(r+1, e)
			name := fmt.Sprintf("%s-%d", reg.name, e)
			rc.Edges = append(rc.Edges, node.EdgeRef{Name: name, Peer: join(ip, upPeerPort), Zone: fmt.Sprintf("%s-z%d", reg.name, (e-1)%3+1)})
			rs.Edges = append(rs.Edges, UpEdgeSt{Name: name, HTTP: join(ip, upHTTPPort), HTTPS: join(ip, upTLSPort),
				Admin: join(ip, upAdminPort), Peer: join(ip, upPeerPort)})
		}
		table = append(table, rc)
		state.Regions = append(state.Regions, rs)
	}
	var shieldRegions []string
	for _, reg := range regions[:min(2, len(regions))] {
		shieldRegions = append(shieldRegions, reg.name)
	}

	// The geo steering service: built-in GeoIP table, the regions above,
	// probing every edge's /healthz on its HTTP listener, which is what
	// the answers name.
	gcfg := geo.Config{
		DefaultRegion: regions[0].name,
		DNS:           geo.DNSConfig{Listen: *geoDNS, Hostname: upHost + "."},
		HTTP:          geo.HTTPConfig{Listen: *geoHTTP, RedirectScheme: "http"},
		// Loopback answers in microseconds, but a laptop or a CI machine
		// under load may stall for a good fraction of a second: probe
		// twice a second and allow 400ms, so that `up` detects a killed
		// region in under two seconds without flapping on a busy machine.
		Probe: geo.ProbeConfig{
			Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, Path: "/healthz",
			Fall: 3, Rise: 4, HoldDown: 2 * time.Second, HoldDownMax: 20 * time.Second,
			FailureWindow: time.Minute, Steps: []float64{10, 50, 100}, StepHold: time.Second,
		},
	}
	for r, reg := range regions {
		// No hostname: /redirect sends each client to a healthy edge of
		// its own. Quorum 1: a region keeps its clients while any of its
		// edges answers (the edges share one machine, not a capacity
		// budget), and the answers name only the edges that do.
		gr := geo.Region{Name: reg.name, Point: reg.point, Quorum: 1}
		for _, e := range state.Regions[r].Edges {
			gr.Edges = append(gr.Edges, e.HTTP)
		}
		gcfg.Regions = append(gcfg.Regions, gr)
	}
	db, err := geodb.Bytes(geodb.Builtin())
	if err != nil {
		return err
	}
	loc, err := geo.NewLocator(db, 500)
	if err != nil {
		return err
	}
	geoReady := make(chan struct{})
	svc, err := geo.New(gcfg, geo.Options{Logger: log, Locator: loc, OnListening: func(string, string) { close(geoReady) }})
	if err != nil {
		return err
	}
	defer svc.Close()

	var nodes []*node.Node
	byName := map[string]*node.Node{}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range nodes {
			n.Shutdown(sctx)
		}
	}()
	for r, reg := range regions {
		for e := 1; e <= *nEdges; e++ {
			ip := edgeIP(r+1, e)
			memberCert, memberKey, err := clusterCA.IssueFiles(dir, fmt.Sprintf("%s-%d", reg.name, e))
			if err != nil {
				return err
			}
			cfg := node.Config{
				Config: edge.Config{
					AccessLog: edge.AccessLogConfig{Destination: "off"}, // the demo prints its table, not a log
					Name:      fmt.Sprintf("%s-%d", reg.name, e),
					Listen:    join(ip, upHTTPPort),
					TLS:       &edge.TLSConfig{Listen: join(ip, upTLSPort), CertFile: certFile, KeyFile: keyFile},
					Server:    edge.ServerConfig{ShutdownTimeout: 5 * time.Second},
					Sites: []edge.SiteConfig{{
						Hosts:  hosts,
						Origin: "http://" + oln.Addr().String(),
						Grace:  edge.GraceConfig{WhileRevalidate: 10 * time.Second, IfError: 10 * time.Minute},
						Shield: edge.ShieldConfig{Regions: shieldRegions},
					}},
				},
				Region: reg.name,

				Admin: node.AdminConfig{Listen: join(ip, upAdminPort), Token: upToken},
				Cluster: &cluster.Config{
					Zone:         table[r].Edges[e-1].Zone,
					GossipListen: join(ip, upGossipPort),
					PeerListen:   join(ip, upPeerPort),
					Seeds:        upSeeds(*net8, r, *nEdges),
					Secret:       "meridian-up-demo-secret-not-for-production",
					Preset:       "local",
					Replicas:     2,
					TLS:          cluster.TLSConfig{CAFile: caFile, CertFile: memberCert, KeyFile: memberKey},
				},
				Regions: table,
			}
			n, err := node.Start(cfg, node.Options{Logger: log})
			if err != nil {
				return fmt.Errorf("edge %s: %w", cfg.Name, err)
			}
			nodes = append(nodes, n)
			byName[cfg.Name] = n
		}
	}

	geoErr := make(chan error, 1)
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	go func() { geoErr <- svc.Run(gctx) }()
	select {
	case <-geoReady:
	case err := <-geoErr:
		return fmt.Errorf("geo: %w", err)
	}

	if started != nil {
		started(byName)
	}
	if *statePath != "" {
		b, _ := json.MarshalIndent(state, "", "  ")
		if err := writeFileAtomic(*statePath, b, 0o644); err != nil {
			return err
		}
	}
	printUp(os.Stdout, state, time.Since(start))
	<-ctx.Done()
	fmt.Println("\nmeridian up: stopping")
	return nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory renamed into place, so that a reader that polls for path (a
// script waiting for `up --state`) sees nothing or all of it, never the
// empty or half-written file that os.WriteFile shows between its create
// and its write.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), perm)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

func join(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// printUp prints what runs where and commands to paste.
func printUp(w io.Writer, st UpState, took time.Duration) {
	fmt.Fprintf(w, "meridian up: a %d-region CDN on loopback, started in %s (Ctrl-C stops it)\n\n", len(st.Regions), took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tEDGE\tHTTP\tHTTPS+H3\tADMIN (status page)")
	for _, r := range st.Regions {
		label := r.Name
		if r.Name == st.Shield {
			label += " (shield)"
		}
		for _, e := range r.Edges {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\thttp://%s/\n", label, e.Name, e.HTTP, e.HTTPS, e.Admin)
			label = ""
		}
	}
	tw.Flush()
	e := st.Regions[len(st.Regions)-1].Edges[0]
	dnsHost, dnsPort, _ := net.SplitHostPort(st.GeoDNS)
	fmt.Fprintf(w, `
  demo origin   http://%[1]s   (request counts: http://%[1]s/_stats)
  geo steering  http://%[2]s/route   DNS %[3]s (UDP/TCP) for %[4]s

try:
  curl -si -H 'Host: %[4]s' 'http://%[5]s/hello?cc=max-age%%3D300&sk=demo' | grep -i cache-status   # miss, via the shield
  curl -si -H 'Host: %[4]s' 'http://%[5]s/hello?cc=max-age%%3D300&sk=demo' | grep -i cache-status   # hit
  curl -s 'http://%[2]s/route?ip=203.0.113.7'                     # a Tokyo client
  dig @%[6]s -p %[7]s %[4]s A +subnet=192.0.2.0/24 +short          # a Frankfurt resolver
  curl -s -X POST -H 'Authorization: Bearer %[8]s' http://%[9]s/purge -d '{"keys":["demo"]}'
  chromium --headless --enable-quic --origin-to-force-quic-on=%[10]s --ignore-certificate-errors-spki-list=%[11]s --dump-dom 'https://%[10]s/hello?sk=demo'   # HTTP/3, the demo certificate pinned
`, st.Origin, st.GeoHTTP, st.GeoDNS, st.Host, e.HTTP, dnsHost, dnsPort, st.PurgeToken, e.Admin, e.HTTPS, st.SPKI)
}

// spkiPin is the base64 SHA-256 of the PEM certificate's
// SubjectPublicKeyInfo: what Chromium's --ignore-certificate-errors-spki-list
// takes to trust a self-signed certificate.
func spkiPin(certPEM []byte) (string, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return "", errors.New("up: the demo certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("up: the demo certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// upEdgeIP is the address of edge e (1-based) of region r (1-based):
// 127.NET.R.E.
func upEdgeIP(net8, r, e int) string { return fmt.Sprintf("127.%d.%d.%d", net8, r, e) }

// upSeeds lists every edge of region r (0-based) as a gossip seed, so
// that whichever edge restarts (the first one included) finds the others.
func upSeeds(net8, r, edges int) []string {
	seeds := make([]string, 0, edges)
	for e := 1; e <= edges; e++ {
		seeds = append(seeds, join(upEdgeIP(net8, r+1, e), upGossipPort))
	}
	return seeds
}
