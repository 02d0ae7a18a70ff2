package geo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/miekg/dns"
)

// These tests run the service on real loopback sockets (edges on
// 127.0.R.E, DNS over UDP and TCP, HTTP) and follow its answers as clients
// do. They poll with deadlines instead of asserting durations: wall-clock
// time is not reliable on a shared machine; the synctest tests in
// failover_test.go assert the bounds.

// realGeo runs s's DNS and HTTP listeners on loopback and returns a
// client of them. The service stops when the test ends.
type realGeo struct {
	t         *testing.T
	s         *Service
	dns, http string
	client    *http.Client
}

func runRealGeo(t *testing.T, c Config) *realGeo {
	t.Helper()
	// The local preset, with a timeout that a loaded CI machine running
	// the race detector still meets for healthy loopback edges.
	c.Probe = LocalProbeConfig()
	c.Probe.Interval, c.Probe.Timeout = 250*time.Millisecond, 200*time.Millisecond
	c.DNS.Listen, c.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	addrs := make(chan [2]string, 1)
	s := newTestService(t, c, Options{OnListening: func(d, h string) { addrs <- [2]string{d, h} }})
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	g := &realGeo{t: t, s: s}
	select {
	case a := <-addrs:
		g.dns, g.http = a[0], a[1]
	case err := <-errc:
		t.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true} // every request dials the edge it was sent to
	g.client = &http.Client{Transport: tr, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
		tr.CloseIdleConnections()
	})
	return g
}

// route asks GET /route?ip= over HTTP.
func (g *realGeo) route(ip string) (region, edge string, edges []string) {
	g.t.Helper()
	resp, err := g.client.Get("http://" + g.http + "/route?ip=" + ip)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Region string   `json:"region"`
		Edge   string   `json:"edge"`
		Edges  []string `json:"edges"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		g.t.Fatalf("/route?ip=%s: %d %v", ip, resp.StatusCode, err)
	}
	return a.Region, a.Edge, a.Edges
}

// redirect asks GET /redirect/PATH for the client at xff (geo trusts
// loopback proxies in these tests) and returns the Location.
func (g *realGeo) redirect(xff, path string) *url.URL {
	g.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+g.http+"/redirect"+path, nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	u, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		g.t.Fatalf("/redirect%s for %s: %d %q", path, xff, resp.StatusCode, resp.Header.Get("Location"))
	}
	return u
}

// lookup asks the CDN name's A records over net ("udp" or "tcp") for a
// resolver with client subnet.
func (g *realGeo) lookup(network, subnet string) []netip.Addr {
	g.t.Helper()
	p := netip.MustParsePrefix(subnet)
	m := new(dns.Msg)
	m.SetQuestion(g.s.cfg.DNS.Hostname, dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	var (
		r   *dns.Msg
		err error
	)
	for range 3 { // UDP may drop a datagram under load: ask again
		if r, _, err = (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, g.dns); err == nil {
			break
		}
	}
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		g.t.Fatalf("DNS over %s for %s: %v %v", network, subnet, r, err)
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		a, _ := netip.AddrFromSlice(rr.(*dns.A).A)
		out = append(out, a.Unmap())
	}
	return out
}

// edgeUp reads /regions: is the edge at addr up?
func (g *realGeo) edgeUp(addr string) bool {
	g.t.Helper()
	resp, err := g.client.Get("http://" + g.http + "/regions")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Regions []struct {
			Edges []EdgeStatus `json:"edges"`
		} `json:"regions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		g.t.Fatal(err)
	}
	for _, r := range st.Regions {
		for _, e := range r.Edges {
			if e.Addr == addr {
				return e.Up
			}
		}
	}
	g.t.Fatalf("/regions lists no edge %s", addr)
	return false
}

// TestRealTwoRegionsDown: with eu and asia closed, Frankfurt and Tokyo
// clients are sent to us over UDP and TCP DNS, /route and /redirect, and
// stay there; with us closed too, steering fails open.
func TestRealTwoRegionsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets")
	}
	healthz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok\n"))
			return
		}
		http.NotFound(w, r)
	})
	c := testConfig()
	c.DefaultRegion = "asia" // the loopback client of /redirect is in asia
	servers := map[string][]*httptest.Server{}
	for i := range c.Regions {
		r := &c.Regions[i]
		r.Edges, r.Hostname = nil, ""
		for range 2 {
			srv := listenOn(t, "127.0."+strconv.Itoa(i+1)+".1:0", healthz)
			servers[r.Name] = append(servers[r.Name], srv)
			r.Edges = append(r.Edges, srv.Listener.Addr().String())
		}
	}
	g := runRealGeo(t, c)
	ask := func() map[string]string {
		got := map[string]string{}
		for _, net := range []string{"udp", "tcp"} {
			got["Frankfurt "+net] = regionOfIP127(g.lookup(net, "192.0.2.0/24")[0])
			got["Tokyo "+net] = regionOfIP127(g.lookup(net, "203.0.113.0/24")[0])
		}
		got["Frankfurt /route"], _, _ = g.route("192.0.2.10")
		got["Tokyo /route"], _, _ = g.route("203.0.113.10")
		loc := netip.MustParseAddrPort(g.redirect("", "/x").Host)
		got["loopback /redirect"] = regionOfIP127(loc.Addr())
		return got
	}
	all := func(got map[string]string, want string) bool {
		for _, r := range got {
			if r != want {
				return false
			}
		}
		return true
	}
	if got := ask(); got["Frankfurt udp"] != "eu" || got["Tokyo udp"] != "asia" || got["loopback /redirect"] != "asia" {
		t.Fatalf("before: %v", got)
	}

	for _, name := range []string{"eu", "asia"} {
		for _, srv := range servers[name] {
			srv.Close()
		}
	}
	poll.Until(t, 30*time.Second, "with eu and asia closed, every answer is us", func() bool { return all(ask(), "us") })
	for range 20 { // over several probe rounds: no fail open while us answers
		if got := ask(); !all(got, "us") {
			t.Fatalf("eu and asia down, us up: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, srv := range servers["us"] {
		srv.Close()
	}
	poll.Until(t, 30*time.Second, "with every region closed, each client goes to its nearest (fail open)", func() bool {
		got := ask()
		return got["Frankfurt udp"] == "eu" && got["Tokyo tcp"] == "asia" && got["Frankfurt /route"] == "eu" && got["Tokyo /route"] == "asia"
	})
	if !g.s.Status().FailOpen {
		t.Error("every edge down, status does not say fail open")
	}
}

// testEdge is a real edge (edge.Handler on a loopback listener) that
// counts the health probes it answers.
type testEdge struct {
	addr   string
	srv    *httptest.Server
	probes atomic.Int64
}

// TestRealEdgeDown runs real edges (edge.Handler) for a region, kills one
// and follows the steering as clients do: a redirect to the client's edge,
// or the DNS A records. Once geo finds the edge down, no answer names it
// and no steered request is lost. The probes address the edges, never
// their sites: the origin sees none.
func TestRealEdgeDown(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets")
	}
	var (
		mu           sync.Mutex
		originProbes int
	)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() == "meridian-geo-probe" {
			mu.Lock()
			originProbes++
			mu.Unlock()
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello from the origin\n")
	}))
	defer origin.Close()

	c := testConfig()
	c.DefaultRegion = "eu"
	c.HTTP.TrustedProxies = []string{"127.0.0.0/8"} // the test speaks for many clients
	c.Regions[0].Hostname = ""                      // /redirect names the client's edge
	c.HTTP.RedirectScheme = "http"
	byAddr := map[string]*testEdge{}
	var eu []*testEdge
	for i := range c.Regions {
		r := &c.Regions[i]
		r.Edges = nil
		n := 1
		if r.Name == "eu" {
			n = 3
		}
		for j := range n {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.%d:0", i+1, j+1))
			if err != nil {
				t.Fatal(err)
			}
			ip := ln.Addr().(*net.TCPAddr).IP.String()
			// As `meridian up` does, the edge serves the CDN name and its
			// own address (so a redirect to it works), from the origin.
			h, err := edge.New(edge.Config{Sites: []edge.SiteConfig{{Hosts: []string{"cdn.meridian.test", ip}, Origin: origin.URL}}},
				edge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			e := &testEdge{addr: ln.Addr().String()}
			e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.UserAgent() == "meridian-geo-probe" {
					e.probes.Add(1)
				}
				h.ServeHTTP(w, req)
			}))
			e.srv.Listener.Close()
			e.srv.Listener = ln
			e.srv.Start()
			t.Cleanup(e.srv.Close)
			r.Edges = append(r.Edges, e.addr)
			byAddr[e.addr] = e
			if r.Name == "eu" {
				eu = append(eu, e)
			}
		}
	}
	g := runRealGeo(t, c)
	p := g.s.cfg.Probe

	// Every edge has been probed more than fall times, and is up.
	for _, e := range byAddr {
		poll.Until(t, 30*time.Second, fmt.Sprintf("edge %s is probed %d times", e.addr, p.Fall+2), func() bool { return e.probes.Load() >= int64(p.Fall+2) })
		if !g.edgeUp(e.addr) {
			t.Fatalf("edge %s answers /healthz but geo finds it down", e.addr)
		}
	}
	mu.Lock()
	if originProbes != 0 {
		t.Errorf("the origin received %d geo probes: they went through a site", originProbes)
	}
	mu.Unlock()

	// A client follows the steering: /redirect for its address, then the
	// edge; or the DNS A records (the port is the edge's, known here).
	fetch := func(target *url.URL) error {
		req, _ := http.NewRequest("GET", target.String(), nil)
		resp, err := g.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(body) != "hello from the origin\n" {
			return fmt.Errorf("%s: %d %q %v", target.Host, resp.StatusCode, body, err)
		}
		return nil
	}
	client := func(i int) string { return fmt.Sprintf("91.%d.%d.7", i/256%64, i%256) }
	viaRedirect := func(i int) (string, error) {
		u := g.redirect(client(i), fmt.Sprintf("/obj-%d", i))
		return u.Host, fetch(u)
	}
	portOf := map[netip.Addr]string{}
	for _, e := range eu {
		ap := netip.MustParseAddrPort(e.addr)
		portOf[ap.Addr()] = strconv.Itoa(int(ap.Port()))
	}
	viaDNS := func(i int) ([]string, error) {
		var named []string
		for _, a := range g.lookup("udp", "91.0.0.0/24") {
			target := net.JoinHostPort(a.String(), portOf[a])
			named = append(named, target)
			u := &url.URL{Scheme: "http", Host: target, Path: fmt.Sprintf("/dns-%d", i)}
			if err := fetch(u); err != nil {
				return named, err
			}
		}
		return named, nil
	}

	used := map[string]int{}
	for i := range 64 {
		on, err := viaRedirect(i)
		if err != nil {
			t.Fatalf("before the kill: %v", err)
		}
		used[on]++
	}
	for _, e := range eu {
		if used[e.addr] == 0 {
			t.Errorf("before the kill 64 clients were redirected to %v: none to %s", used, e.addr)
		}
	}

	dead := eu[0]
	dead.srv.Close()
	killed := time.Now()
	lostWhile, sentWhile := 0, 0
	for g.edgeUp(dead.addr) {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("geo still finds %s up 30 s after it closed", dead.addr)
		}
		sentWhile++
		if _, err := viaRedirect(sentWhile); err != nil {
			lostWhile++
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(killed)

	lost, n := 0, 100
	clear(used)
	for i := range n {
		on, err := viaRedirect(1000 + i)
		used[on]++
		if err != nil || on == dead.addr {
			lost++
			t.Errorf("redirected to %s after the flip: %v", on, err)
		}
		named, err := viaDNS(i)
		if err != nil || slices.Contains(named, dead.addr) || len(named) != 2 {
			lost++
			t.Errorf("DNS names %v after the flip: %v", named, err)
		}
		region, edge, edges := g.route(client(2000 + i))
		if region != "eu" || edge == dead.addr || slices.Contains(edges, dead.addr) {
			t.Errorf("/route after the flip: %s %s %v", region, edge, edges)
		}
	}
	if used[eu[1].addr] == 0 || used[eu[2].addr] == 0 {
		t.Errorf("after the kill clients were redirected to %v, want both live edges", used)
	}
	t.Logf("edge %s closed: geo found it down after %v (fall %d × %v); meanwhile %d of %d redirected requests failed; after, %d of %d steered requests failed",
		dead.addr, took.Round(time.Millisecond), p.Fall, p.Interval, lostWhile, sentWhile, lost, 2*n)
	mu.Lock()
	if originProbes != 0 {
		t.Errorf("the origin received %d geo probes", originProbes)
	}
	mu.Unlock()
}
