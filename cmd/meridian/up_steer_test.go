package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/miekg/dns"
)

// steerClient is a client of a running `up` that follows the geo
// steering: over HTTP (/redirect, or /route for a located client) and
// over DNS (the A records for a resolver's client subnet).
type steerClient struct {
	t    *testing.T
	st   UpState
	http *http.Client
}

func newSteerClient(t *testing.T, st UpState) *steerClient {
	// No keep-alive: every request dials the edge it was steered to, as a
	// new client would.
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &steerClient{t: t, st: st, http: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// routeAnswer is the part of geo's /route answer a client reads.
type routeAnswer struct {
	Region   string   `json:"region"`
	Edge     string   `json:"edge"`
	Edges    []string `json:"edges"`
	Hostname string   `json:"hostname"`
}

func (c *steerClient) route(ip string) routeAnswer {
	c.t.Helper()
	resp, err := c.http.Get("http://" + c.st.GeoHTTP + "/route?ip=" + ip)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var a routeAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		c.t.Fatalf("/route?ip=%s: %d %v", ip, resp.StatusCode, err)
	}
	return a
}

// fetch GETs path from the edge at addr for the CDN host and checks the
// demo origin's body came back whole.
func (c *steerClient) fetch(addr, path string) error {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = c.st.Host
	return c.check(c.http.Do(req))
}

func (c *steerClient) check(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", resp.Request.URL.Host, err)
	}
	if resp.StatusCode != 200 || len(body) != 1024 {
		return fmt.Errorf("%s: status %d, %d bytes", resp.Request.URL.Host, resp.StatusCode, len(body))
	}
	return nil
}

// viaRedirect follows GET /redirect/PATH as a browser would (the caller
// is on loopback, so geo places it in the default region) and returns
// the edge it landed on.
func (c *steerClient) viaRedirect(path string) (string, error) {
	resp, err := c.http.Get("http://" + c.st.GeoHTTP + "/redirect" + path)
	landed := ""
	var uerr *url.Error
	switch {
	case resp != nil:
		landed = resp.Request.URL.Host
	case errors.As(err, &uerr):
		if u, perr := url.Parse(uerr.URL); perr == nil {
			landed = u.Host
		}
	}
	return landed, c.check(resp, err)
}

// viaRoute asks /route for the client ip and fetches from the edge the
// answer names for it.
func (c *steerClient) viaRoute(ip, path string) (routeAnswer, error) {
	a := c.route(ip)
	target := a.Edge
	if target == "" { // an answer without "edge": its host, else its first edge
		target = a.Hostname
		if target == "" && len(a.Edges) > 0 {
			target = a.Edges[0]
		}
	}
	return a, c.fetch(target, path)
}

// dnsEdges asks geo's DNS for the CDN name with the resolver's client
// subnet and returns the A records as addresses of the HTTP port.
func (c *steerClient) dnsEdges(subnet string) []string {
	c.t.Helper()
	p := netip.MustParsePrefix(subnet)
	m := new(dns.Msg)
	m.SetQuestion(c.st.Host+".", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	var (
		r   *dns.Msg
		err error
	)
	for range 3 { // a datagram may be dropped under load: ask again
		if r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, c.st.GeoDNS); err == nil {
			break
		}
	}
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		c.t.Fatalf("DNS for %s: %v %v", subnet, r, err)
	}
	var out []string
	for _, rr := range r.Answer {
		out = append(out, net.JoinHostPort(rr.(*dns.A).A.String(), fmt.Sprint(upHTTPPort)))
	}
	return out
}

// geoHealth is what geo's /regions says: which edges are up (by IP,
// whatever port geo probes).
type geoHealth struct {
	up map[string]bool
}

func (c *steerClient) health() geoHealth {
	c.t.Helper()
	resp, err := c.http.Get("http://" + c.st.GeoHTTP + "/regions")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Regions []struct {
			Edges []struct {
				Addr string `json:"addr"`
				Up   bool   `json:"up"`
			} `json:"edges"`
		} `json:"regions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		c.t.Fatal(err)
	}
	h := geoHealth{up: map[string]bool{}}
	for _, r := range st.Regions {
		for _, e := range r.Edges {
			h.up[ipOf(e.Addr)] = e.Up
		}
	}
	return h
}

// waitUp waits until geo finds every edge at ips up. On a machine so
// loaded that probes of live edges time out, it never does: that is
// reported as such.
func (c *steerClient) waitUp(ips []string) {
	c.t.Helper()
	poll.Until(c.t, 2*time.Minute, fmt.Sprintf("geo finds the live edges %v up (if never: its probes time out on this machine)", ips), func() bool {
		h := c.health()
		return !slices.ContainsFunc(ips, func(ip string) bool { return !h.up[ip] })
	})
}

// waitDown polls /regions until every edge at ips is down, steering a
// client meanwhile (which loses requests until geo notices), and returns
// how long it took and how many steered requests failed.
func (c *steerClient) waitDown(ips []string, steer func(i int) error) (time.Duration, int, int) {
	c.t.Helper()
	start := time.Now()
	failed, sent := 0, 0
	for {
		h := c.health()
		if !slices.ContainsFunc(ips, func(ip string) bool { return h.up[ip] }) {
			return time.Since(start), failed, sent
		}
		if time.Since(start) > time.Minute {
			c.t.Fatalf("geo still finds some of %v up a minute after they were killed", ips)
		}
		sent++
		if steer(sent) != nil {
			failed++
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// misses counts steered requests that failed or were sent to a dead
// edge. One made while geo finds none of the live edges up is excused and
// counted apart: then its probes time out on a machine too loaded for
// them, and geo fails open by design (health ignored, every client to its
// nearest region). The excuse reads the test's knowledge of which edges
// live, not geo's fail_open, so a wrong fail open is not excused.
type misses struct {
	t               *testing.T
	c               *steerClient
	live            []string // IPs of the edges still running
	failed, excused int
}

func (m *misses) add(format string, args ...any) {
	m.t.Helper()
	h := m.c.health()
	if !slices.ContainsFunc(m.live, func(ip string) bool { return h.up[ip] }) {
		m.excused++
		return
	}
	m.failed++
	if m.failed <= 3 {
		m.t.Errorf(format, args...)
	}
}

// check fails the test for misses, and skips it when geo found no live
// edge up for most of it, having checked nothing.
func (m *misses) check(attempts int, what string) {
	m.t.Helper()
	if m.failed > 0 {
		m.t.Errorf("%d steered requests failed %s", m.failed, what)
	}
	if m.excused > attempts/2 {
		m.t.Skipf("geo found no live edge up for %d of %d steered requests: its probes time out on this machine", m.excused, attempts)
	}
}

func ipOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// ipsOf lists the IPs of a region's edges.
func ipsOf(r UpRegionSt) []string {
	var out []string
	for _, e := range r.Edges {
		out = append(out, ipOf(e.HTTP))
	}
	return out
}

func killEdges(t *testing.T, nodes map[string]*node.Node, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		if err := nodes[n].Shutdown(ctx); err != nil {
			t.Logf("shutdown %s: %v", n, err)
		}
	}
}

// TestUpSteeringUnderFaults runs `up`, kills one edge of a region and then
// two whole regions, and follows the steering as clients do (HTTP
// redirect, /route, DNS A records): once geo's health has flipped, no
// answer names a dead edge and no steered request fails.
func TestUpSteeringUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole CDN")
	}
	st, nodes := startUpNodes(t)
	c := newSteerClient(t, st)
	eu, ap := st.Regions[0], st.Regions[2]
	servingOf := func(r UpRegionSt) []string {
		var out []string
		for _, e := range r.Edges {
			out = append(out, e.HTTP)
		}
		return out
	}
	var all []string
	for _, r := range st.Regions {
		all = append(all, ipsOf(r)...)
	}
	c.waitUp(all)

	// /route's edges are the edges' client-facing addresses.
	for _, tc := range []struct {
		ip  string
		reg UpRegionSt
	}{{"192.0.2.10", eu}, {"203.0.113.7", ap}} {
		a := c.route(tc.ip)
		if a.Region != tc.reg.Name || !slices.Equal(a.Edges, servingOf(tc.reg)) {
			t.Errorf("/route?ip=%s: region %s, edges %v; want %s, %v (the HTTP listeners)", tc.ip, a.Region, a.Edges, tc.reg.Name, servingOf(tc.reg))
		}
		if a.Edge != "" && !slices.Contains(servingOf(tc.reg), a.Edge) {
			t.Errorf("/route?ip=%s: edge %q is not one of %v", tc.ip, a.Edge, servingOf(tc.reg))
		}
	}

	t.Run("edge down", func(t *testing.T) {
		dead := eu.Edges[0] // loopback clients belong to eu, the default region
		killEdges(t, nodes, dead.Name)
		// German clients, one per /24: geo spreads them over eu's edges.
		german := func(i int) string { return fmt.Sprintf("91.%d.%d.7", i/256%64, i%256) }
		took, failedWhile, sentWhile := c.waitDown([]string{ipOf(dead.HTTP)}, func(i int) error {
			_, err := c.viaRoute(german(i), fmt.Sprintf("/edge-wait-%d", i))
			return err
		})
		m, n := &misses{t: t, c: c, live: slices.DeleteFunc(slices.Clone(all), func(ip string) bool { return ip == ipOf(dead.HTTP) })}, 100
		landed := map[string]int{}
		for i := range n {
			on, err := c.viaRedirect(fmt.Sprintf("/edge-after-%d", i))
			landed[on]++
			if err != nil {
				m.add("steered request %d after the flip: %v", i, err)
			}
			a, err := c.viaRoute(german(1000+i), fmt.Sprintf("/edge-route-%d", i))
			landed[a.Edge]++
			if err != nil || slices.Contains(a.Edges, dead.HTTP) || a.Edge == dead.HTTP {
				m.add("/route after the flip names %q %v: %v", a.Edge, a.Edges, err)
			}
			for _, e := range c.dnsEdges("192.0.2.0/24") {
				if err := c.fetch(e, fmt.Sprintf("/edge-dns-%d", i)); err != nil || e == dead.HTTP {
					m.add("DNS after the flip names %s: %v", e, err)
				}
			}
		}
		t.Logf("edge %s killed: geo saw it down after %v; while it did not, %d of %d requests steered by /route failed; after, %d steered requests failed, %d while geo found no live edge up (/redirect and /route sent them to %v)",
			dead.Name, took.Round(time.Millisecond), failedWhile, sentWhile, m.failed, m.excused, landed)
		m.check(n*5, "after geo saw "+dead.Name+" down")
	})

	t.Run("two regions down", func(t *testing.T) {
		var names, ips []string
		for _, r := range []UpRegionSt{eu, ap} {
			for _, e := range r.Edges {
				names = append(names, e.Name)
				ips = append(ips, ipOf(e.HTTP))
			}
		}
		c.waitUp(ipsOf(st.Regions[1]))
		killEdges(t, nodes, names...)
		tokyo := func(i int) error {
			_, err := c.viaRoute("203.0.113.7", fmt.Sprintf("/region-wait-%d", i))
			return err
		}
		took, failedWhile, sentWhile := c.waitDown(ips, tokyo)
		us := st.Regions[1]
		m, n := &misses{t: t, c: c, live: ipsOf(us)}, 50
		for i := range n {
			steered := []func() (string, error){
				func() (string, error) {
					a, err := c.viaRoute("203.0.113.7", fmt.Sprintf("/region-tokyo-%d", i))
					return a.Region, err
				},
				func() (string, error) {
					a, err := c.viaRoute("192.0.2.10", fmt.Sprintf("/region-frankfurt-%d", i))
					return a.Region, err
				},
				func() (string, error) {
					on, err := c.viaRedirect(fmt.Sprintf("/region-redirect-%d", i))
					return on, err
				},
			}
			for k, f := range steered {
				where, err := f()
				if err != nil || k < 2 && where != us.Name {
					m.add("steered request after the flip went to %s: %v", where, err)
				}
			}
			for _, subnet := range []string{"203.0.113.0/24", "192.0.2.0/24"} {
				for _, e := range c.dnsEdges(subnet) {
					if err := c.fetch(e, fmt.Sprintf("/region-dns-%d", i)); err != nil || !slices.Contains(servingOf(us), e) {
						m.add("DNS for %s names %s: %v", subnet, e, err)
					}
				}
			}
		}
		t.Logf("regions %s and %s killed: geo saw them down after %v; while it did not, %d of %d Tokyo requests failed; after, %d steered requests failed, %d while geo found no live edge up",
			eu.Name, ap.Name, took.Round(time.Millisecond), failedWhile, sentWhile, m.failed, m.excused)
		m.check(n*9, "with us healthy")
	})
}
