package geo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// These tests run the whole Service (probe loop included) inside a
// synctest bubble: time is virtual, the fake transport kills and revives
// edges, and the bounds below are exact virtual durations, not wall-clock
// guesses.

// startService runs s in the bubble until the test ends.
func startService(t *testing.T, cfg Config, edges *fakeEdges) *Service {
	t.Helper()
	s := newTestService(t, cfg, Options{Transport: edges})
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// regionOfIP names the region owning an edge IP.
func regionOfIP(s *Service, ip netip.Addr) string {
	for _, r := range s.regions {
		for _, e := range r.Edges {
			if netip.MustParseAddrPort(e).Addr() == ip {
				return r.Name
			}
		}
	}
	return "?" + ip.String()
}

// dnsRegion asks the DNS logic for the CDN name with client subnet p and
// names the region its A records belong to ("" if they disagree).
func dnsRegion(t *testing.T, s *Service, p netip.Prefix) string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(s.cfg.DNS.Hostname, dns.TypeA)
	m.SetEdns0(1232, false)
	ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
	if p.Addr().Is6() {
		ecs.Family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, ecs)
	r := s.answerDNS(m, addr("127.0.0.1"), true)
	if r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("DNS answer %v", r)
	}
	region := ""
	for _, rr := range r.Answer {
		ip, _ := netip.AddrFromSlice(rr.(*dns.A).A)
		name := regionOfIP(s, ip.Unmap())
		if region != "" && name != region {
			return ""
		}
		region = name
	}
	return region
}

// httpRegion asks GET /route?ip= and returns the region.
func httpRegion(t *testing.T, s *Service, ip netip.Addr) string {
	t.Helper()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/route?ip="+ip.String(), nil))
	var a Answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != 200 {
		t.Fatalf("GET /route: %d %s", w.Code, w.Body)
	}
	return a.Region
}

// agree checks that Route, DNS (ECS /24 or /56) and HTTP give one region.
// When GeoIP networks narrower than the client subnet split it (MaxMind's
// test data has a /31), DNS can only know the subnet: its answer must
// then be the Route answer of some address in the subnet (a sample of 256
// spread over it), and when every sampled address has one answer, that.
func agree(t *testing.T, s *Service, ip netip.Addr) string {
	t.Helper()
	ans := s.Route(ip)
	bits := 24 // what resolvers send (RFC 7871 recommends /24 and /56)
	if ip.Is6() {
		bits = 56
	}
	p, _ := ip.Prefix(bits)
	d, h := dnsRegion(t, s, p), httpRegion(t, s, ip)
	if h != ans.Region {
		t.Fatalf("%s: Route %s, HTTP %s", ip, ans.Region, h)
	}
	if n := ans.Location.Network; !n.IsValid() || n.Bits() <= bits {
		if d != ans.Region {
			t.Fatalf("%s: Route %s, DNS for %s %s", ip, ans.Region, p, d)
		}
		return ans.Region
	}
	seen := map[string]bool{}
	for i := range 256 {
		b := p.Addr().As16()
		if ip.Is4() {
			b[15] = byte(i)
		} else {
			b[7] = byte(i) // the /64s of the /56
		}
		a := netip.AddrFrom16(b)
		if ip.Is4() {
			a = a.Unmap()
		}
		seen[s.Route(a).Region] = true
	}
	if !seen[d] || len(seen) == 1 && d != ans.Region {
		t.Fatalf("%s: DNS for %s names %s; addresses in it are sent to %v", ip, p, d, seen)
	}
	return ans.Region
}

// germans are clients in 512 distinct /24s of a German network.
func germans() []netip.Addr {
	var out []netip.Addr
	for i := range 512 {
		out = append(out, addr("91."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)+".7"))
	}
	return out
}

func TestFailoverWithinBound(t *testing.T) {
	for _, mode := range []string{"hang", "refuse"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				edges := newFakeEdges()
				s := startService(t, testConfig(), edges)
				p := s.cfg.Probe
				time.Sleep(5 * time.Second)
				de := addr("192.0.2.10")
				if got := agree(t, s, de); got != "eu" {
					t.Fatalf("before: %s", got)
				}
				time.Sleep(p.Interval * 3 / 10) // kill somewhere inside an interval
				edges.set(s.cfg.Regions, "eu", mode)
				killed := time.Now()
				for s.Route(de).Region == "eu" {
					if time.Since(killed) > time.Minute {
						t.Fatal("no failover within a minute")
					}
					time.Sleep(10 * time.Millisecond)
				}
				took := time.Since(killed)
				if bound := time.Duration(p.Fall)*p.Interval + p.Timeout; took > bound {
					t.Errorf("failover took %v, bound k×interval+timeout = %v", took, bound)
				}
				if took < time.Duration(p.Fall-1)*p.Interval {
					t.Errorf("failover after %v: faster than %d failures allow", took, p.Fall)
				}
				if got := agree(t, s, de); got != "us" {
					t.Errorf("after: %s, want us (next nearest to Germany)", got)
				}
				st := s.Status()
				if st.Regions[0].State != StateDown || st.Regions[0].RecentFailures != 1 || st.FailOpen {
					t.Errorf("status %+v", st.Regions[0])
				}
				t.Logf("failover after %v (%s)", took, mode)
			})
		})
	}
}

func TestRecoveryReturnsInSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edges := newFakeEdges()
		s := startService(t, testConfig(), edges)
		p := s.cfg.Probe
		clients := germans()
		time.Sleep(2 * time.Second)
		edges.set(s.cfg.Regions, "eu", "refuse")
		time.Sleep(10 * time.Second)
		for _, c := range clients {
			if r := s.Route(c); r.Region != "us" {
				t.Fatalf("%s on %s while eu is down", c, r.Region)
			}
		}

		edges.set(s.cfg.Regions, "eu", "")
		revived := time.Now()
		back := make([]time.Duration, len(clients)) // when each client came back; 0 = not yet
		checkpoints := map[time.Duration]bool{}
		// Observe between probe rounds, never at the instant of one: the
		// round would publish a new view while agree asks DNS and HTTP.
		time.Sleep(p.Interval / 10)
		for time.Since(revived) < 2*time.Minute {
			time.Sleep(250 * time.Millisecond)
			now := time.Since(revived)
			for i, c := range clients {
				onEU := s.Route(c).Region == "eu"
				switch {
				case onEU && back[i] == 0:
					back[i] = now
				case !onEU && back[i] != 0:
					t.Fatalf("%s went back to eu at %v and left again at %v", c, back[i], now)
				}
			}
			// DNS, HTTP and Route agree throughout the ramp.
			if sec := now.Truncate(5 * time.Second); !checkpoints[sec] {
				checkpoints[sec] = true
				for _, c := range clients[:64] {
					agree(t, s, c)
				}
			}
		}
		first := slices.Min(back)
		minWait := time.Duration(p.Rise-1)*p.Interval + p.HoldDown
		if first < minWait {
			t.Errorf("first client back after %v; rise and hold-down need at least %v", first, minWait)
		}
		share := func(by time.Duration) float64 {
			n := 0
			for _, b := range back {
				if b != 0 && b <= by {
					n++
				}
			}
			return float64(n) / float64(len(back))
		}
		if f := share(first + p.StepHold/2); f < 0.04 || f > 0.18 {
			t.Errorf("in the first step %.0f%% of clients are back, want about %v%%", f*100, p.Steps[0])
		}
		if f := share(first + p.StepHold + p.StepHold/2); f < 0.38 || f > 0.62 {
			t.Errorf("in the second step %.0f%% of clients are back, want about %v%%", f*100, p.Steps[1])
		}
		last := slices.Max(back)
		if slices.Contains(back, 0) {
			t.Fatal("some clients never came back")
		}
		if last > first+2*p.StepHold+2*p.Interval {
			t.Errorf("last client back %v after the first; steps take %v", last-first, 2*p.StepHold)
		}
		t.Logf("first client back after %v, all after %v", first, last)
	})
}

func TestDroppedProbesDoNotMoveAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edges := newFakeEdges()
		s := startService(t, testConfig(), edges)
		time.Sleep(2 * time.Second)
		clients := []netip.Addr{addr("192.0.2.1"), addr("198.51.100.1"), addr("203.0.113.1"), addr("91.0.0.1"), addr("126.0.0.1")}
		want := make([]string, len(clients))
		for i, c := range clients {
			want[i] = agree(t, s, c)
		}
		edges.dropEvery(3, s.cfg.Regions) // a third of every edge's probes fail
		for range 600 {
			time.Sleep(500 * time.Millisecond)
			for i, c := range clients {
				if got := s.Route(c).Region; got != want[i] {
					t.Fatalf("%s moved %s → %s with 1/3 of probes dropped", c, want[i], got)
				}
			}
		}
		for _, r := range s.Status().Regions {
			if r.State != StateUp || r.RecentFailures != 0 {
				t.Errorf("%s: %s, %d failures", r.Name, r.State, r.RecentFailures)
			}
		}
	})
}

func TestFlappingRegionChangesAnswerAtMostThreeTimes(t *testing.T) {
	for _, period := range []time.Duration{2 * time.Second, 5 * time.Second, 9 * time.Second, 13 * time.Second, 24 * time.Second} {
		t.Run(period.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				edges := newFakeEdges()
				s := startService(t, testConfig(), edges)
				clients := germans()[:32]
				last := make([]string, len(clients))
				changes := make([]int, len(clients))
				observe := func() {
					for i, c := range clients {
						r := s.Route(c).Region
						if last[i] != "" && r != last[i] {
							changes[i]++
						}
						last[i] = r
					}
				}
				time.Sleep(2 * time.Second)
				observe()
				start := time.Now()
				for time.Since(start) < 5*time.Minute {
					flapping := time.Since(start) < time.Minute
					down := time.Since(start)%period < period/2
					mode := ""
					if flapping && down {
						mode = "refuse"
					}
					edges.set(s.cfg.Regions, "eu", mode)
					time.Sleep(250 * time.Millisecond)
					observe()
				}
				if m := slices.Max(changes); m > 3 {
					t.Errorf("flapping with period %v: a client's answer changed %d times (%v)", period, m, changes)
				}
				// When the flapping stops the region does come back.
				if r := s.Route(clients[0]).Region; r != "eu" || s.Status().Regions[0].State != StateUp {
					t.Errorf("5 minutes after the flapping began: %s, eu %s", r, s.Status().Regions[0].State)
				}
				t.Logf("period %v: changes per client max %d; eu failures %d", period, slices.Max(changes), s.Status().Regions[0].RecentFailures)
			})
		})
	}
}

func TestProbeSeesStatusCodes(t *testing.T) {
	// The fake transport answers 404 off /healthz: a wrong probe path
	// takes the regions down, and with all down the answer fails open.
	synctest.Test(t, func(t *testing.T) {
		c := testConfig()
		c.Probe.Path = "/wrong"
		s := startService(t, c, newFakeEdges())
		time.Sleep(10 * time.Second)
		st := s.Status()
		if !st.FailOpen || st.Healthy != 0 {
			t.Errorf("404 probes: %+v", st)
		}
		if a := s.Route(addr("192.0.2.1")); a.Region != "eu" || len(a.Edges) != 3 {
			t.Errorf("fail open answer %+v", a)
		}
	})
}

// TestRealEdgesClosed runs the service on real loopback sockets: real
// HTTP edges on 127.0.N.1, real DNS (UDP and TCP) and HTTP listeners, and
// the edges of the nearest region closed. It polls with a deadline
// instead of asserting a duration: wall-clock time is not reliable here.
func TestRealEdgesClosed(t *testing.T) {
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
	servers := map[string][]*httptest.Server{}
	for i := range c.Regions {
		r := &c.Regions[i]
		r.Edges = nil
		for range 2 {
			srv := listenOn(t, "127.0."+strconv.Itoa(i+1)+".1:0", healthz)
			servers[r.Name] = append(servers[r.Name], srv)
			r.Edges = append(r.Edges, srv.Listener.Addr().String())
		}
	}
	// The local preset, with a timeout that a loaded CI machine running
	// the race detector still meets for healthy loopback edges.
	c.Probe = LocalProbeConfig()
	c.Probe.Interval, c.Probe.Timeout = 250*time.Millisecond, 200*time.Millisecond
	c.DNS.Listen = "127.0.0.1:0"
	c.HTTP.Listen = "127.0.0.1:0"
	addrs := make(chan [2]string, 1)
	s := newTestService(t, c, Options{OnListening: func(d, h string) { addrs <- [2]string{d, h} }})
	errc := make(chan error, 1)
	go func() { errc <- s.Run(context.Background()) }()
	defer func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	var dnsAddr, httpAddr string
	select {
	case a := <-addrs:
		dnsAddr, httpAddr = a[0], a[1]
	case err := <-errc:
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.Transport.(*http.Transport).CloseIdleConnections()

	ask := func() (viaUDP, viaTCP, viaHTTP string) {
		for i, net := range []string{"udp", "tcp"} {
			m := new(dns.Msg)
			m.SetQuestion("cdn.meridian.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: addr("192.0.2.0").AsSlice()})
			var r *dns.Msg
			var err error
			for try := 0; try < 3; try++ { // UDP may drop a datagram under load: ask again
				if r, _, err = (&dns.Client{Net: net, Timeout: 2 * time.Second}).Exchange(m, dnsAddr); err == nil {
					break
				}
			}
			if err != nil || len(r.Answer) == 0 {
				t.Fatalf("dns over %s: %v %v", net, r, err)
			}
			ip, _ := netip.AddrFromSlice(r.Answer[0].(*dns.A).A)
			if i == 0 {
				viaUDP = regionOfIP127(ip.Unmap())
			} else {
				viaTCP = regionOfIP127(ip.Unmap())
			}
		}
		resp, err := client.Get("http://" + httpAddr + "/route?ip=192.0.2.10")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a Answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return viaUDP, viaTCP, a.Region
	}
	if u, tc, h := ask(); u != "eu" || tc != "eu" || h != "eu" {
		t.Fatalf("before: udp %s tcp %s http %s", u, tc, h)
	}
	for _, srv := range servers["eu"] {
		srv.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, tc, h := ask()
		if u == "us" && tc == "us" && h == "us" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after closing eu's edges: udp %s tcp %s http %s", u, tc, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"us", "asia"} {
		for _, srv := range servers[name] {
			srv.Close()
		}
	}
}

// regionOfIP127 maps the 127.0.N.1 edge addresses of TestRealEdgesClosed.
func regionOfIP127(ip netip.Addr) string {
	switch ip.As4()[2] {
	case 1:
		return "eu"
	case 2:
		return "us"
	case 3:
		return "asia"
	}
	return "?"
}

// TestTwoOfThreeRegionsDown: with two regions down, their clients go to
// the third (DNS and HTTP alike) and stay there; only when every edge is
// down does steering fail open, and once one region answers again its
// health is trusted again.
func TestTwoOfThreeRegionsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		edges := newFakeEdges()
		s := startService(t, testConfig(), edges)
		p := s.cfg.Probe
		time.Sleep(2 * time.Second)
		de, jp, us := addr("192.0.2.10"), addr("203.0.113.10"), addr("198.51.100.7")
		for ip, want := range map[netip.Addr]string{de: "eu", jp: "asia", us: "us"} {
			if got := agree(t, s, ip); got != want {
				t.Fatalf("before: %s → %s, want %s", ip, got, want)
			}
		}

		time.Sleep(p.Interval * 3 / 10)
		edges.set(s.cfg.Regions, "eu", "refuse")
		edges.set(s.cfg.Regions, "asia", "hang")
		killed := time.Now()
		for s.Route(de).Region != "us" || s.Route(jp).Region != "us" {
			if time.Since(killed) > time.Minute {
				t.Fatalf("a minute after eu and asia died: Frankfurt → %s (%s), Tokyo → %s (%s)",
					s.Route(de).Region, s.Route(de).Why, s.Route(jp).Region, s.Route(jp).Why)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if took, bound := time.Since(killed), time.Duration(p.Fall)*p.Interval+p.Timeout; took > bound {
			t.Errorf("two regions down: steered away after %v, bound k×interval+timeout = %v", took, bound)
		}
		// And it stays so: health is trusted while us answers.
		for range 120 {
			for _, ip := range []netip.Addr{de, jp, us} {
				if got := agree(t, s, ip); got != "us" {
					t.Fatalf("with eu and asia down: %s → %s (%s)", ip, got, s.Route(ip).Why)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		if st := s.Status(); st.FailOpen || st.Healthy != 1 {
			t.Errorf("two of three down: fail_open %v, healthy %d", st.FailOpen, st.Healthy)
		}

		// All three down: nothing answers, the prober is as likely broken
		// as the regions: fail open, every client to its nearest region.
		edges.set(s.cfg.Regions, "us", "refuse")
		killed = time.Now()
		for !s.Status().FailOpen {
			if time.Since(killed) > time.Minute {
				t.Fatal("all regions down and no fail open within a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if took, bound := time.Since(killed), time.Duration(p.Fall)*p.Interval+p.Timeout; took > bound {
			t.Errorf("all down: fail open after %v, bound %v", took, bound)
		}
		for ip, want := range map[netip.Addr]string{de: "eu", jp: "asia", us: "us"} {
			if got := agree(t, s, ip); got != want {
				t.Errorf("fail open: %s → %s, want its nearest region %s", ip, got, want)
			}
			if a := s.Route(ip); len(a.Edges) != 3 || !strings.Contains(a.Why, "fail open") {
				t.Errorf("fail open: %s: edges %v, why %q", ip, a.Edges, a.Why)
			}
		}

		// us answers again: health is trusted again as soon as its edges
		// rise, and the region held down is the least bad choice.
		edges.set(s.cfg.Regions, "us", "")
		revived := time.Now()
		for s.Status().FailOpen {
			if time.Since(revived) > time.Minute {
				t.Fatal("us back, still failing open after a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if took, bound := time.Since(revived), time.Duration(p.Rise)*p.Interval+p.Timeout; took > bound {
			t.Errorf("us back: health trusted again after %v, bound rise×interval+timeout = %v", took, bound)
		}
		for _, ip := range []netip.Addr{de, jp, us} {
			if a := s.Route(ip); a.Region != "us" || !strings.Contains(a.Why, "no region is fully up") {
				t.Errorf("us held down, the others dead: %s → %s (%s)", ip, a.Region, a.Why)
			}
			agree(t, s, ip)
		}
	})
}

// redirectEdge asks GET /redirect/x for client ip and returns the host
// of the Location.
func redirectEdge(t *testing.T, s *Service, ip netip.Addr) string {
	t.Helper()
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/redirect/x", nil)
	req.RemoteAddr = netip.AddrPortFrom(ip, 4711).String()
	s.Handler().ServeHTTP(w, req)
	u, err := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || err != nil {
		t.Fatalf("/redirect/x for %s: %d %q", ip, w.Code, w.Header().Get("Location"))
	}
	return u.Host
}

// dnsIPs asks the DNS logic for the CDN name with client subnet p and
// returns the addresses of the A records.
func dnsIPs(t *testing.T, s *Service, p netip.Prefix) []netip.Addr {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(s.cfg.DNS.Hostname, dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	r := s.answerDNS(m, addr("127.0.0.1"), true)
	if r == nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("DNS answer %v", r)
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		a, _ := netip.AddrFromSlice(rr.(*dns.A).A)
		out = append(out, a.Unmap())
	}
	return out
}

// routeJSON asks GET /route?ip= and returns the answer as a client reads it.
func routeJSON(t *testing.T, s *Service, ip netip.Addr) (region, edge string, edges []string) {
	t.Helper()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/route?ip="+ip.String(), nil))
	var a struct {
		Region string   `json:"region"`
		Edge   string   `json:"edge"`
		Edges  []string `json:"edges"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != 200 {
		t.Fatalf("GET /route: %d %s", w.Code, w.Body)
	}
	return a.Region, a.Edge, a.Edges
}

// TestEdgeDownLeavesTheAnswers kills one edge of a region that stays up:
// once its probes fail fall times, neither DNS nor /route nor /redirect
// names it, the region's clients are spread over the edges left, and a
// client whose edge is alive keeps it.
func TestEdgeDownLeavesTheAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testConfig()
		c.Regions[0].Hostname = "" // /redirect names an edge
		edges := newFakeEdges()
		s := startService(t, c, edges)
		p := s.cfg.Probe
		eu := s.cfg.Regions[0].Edges
		dead := eu[0]
		deadIP := netip.MustParseAddrPort(dead).Addr()
		time.Sleep(2 * time.Second)

		clients := germans()
		before := map[netip.Addr]string{}
		used := map[string]int{}
		for _, ip := range clients {
			e := redirectEdge(t, s, ip)
			before[ip], used[e] = e, used[e]+1
			if _, edge, _ := routeJSON(t, s, ip); edge != e {
				t.Fatalf("%s: /route names edge %q, /redirect %q", ip, edge, e)
			}
		}
		for _, e := range eu {
			if n := used[e]; n < len(clients)/6 {
				t.Errorf("before the kill %d of %d clients were sent to %s, want about a third (%v)", n, len(clients), e, used)
			}
		}

		named := func() bool {
			_, edge, list := routeJSON(t, s, clients[0])
			return edge == dead || slices.Contains(list, dead) || slices.Contains(dnsIPs(t, s, netip.MustParsePrefix("91.0.0.0/24")), deadIP)
		}
		time.Sleep(p.Interval * 3 / 10)
		edges.kill(dead, "refuse")
		killed := time.Now()
		for named() {
			if time.Since(killed) > time.Minute {
				t.Fatal("the dead edge is still named a minute later")
			}
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(killed)
		if bound := time.Duration(p.Fall)*p.Interval + p.Timeout; took > bound {
			t.Errorf("dead edge dropped from the answers after %v, bound k×interval+timeout = %v", took, bound)
		}
		if took < time.Duration(p.Fall-1)*p.Interval {
			t.Errorf("dead edge dropped after %v: faster than %d failures allow", took, p.Fall)
		}

		for range 20 { // and never named again while it is dead
			clear(used)
			for i, ip := range clients {
				e := redirectEdge(t, s, ip)
				used[e]++
				if e == dead || before[ip] != dead && e != before[ip] {
					t.Fatalf("%s: redirected to %s, was %s (dead: %s)", ip, e, before[ip], dead)
				}
				if i%16 == 0 {
					region, edge, list := routeJSON(t, s, ip)
					p, _ := ip.Prefix(24)
					ips := dnsIPs(t, s, p)
					if region != "eu" || edge != e || len(list) != 2 || slices.Contains(list, dead) || len(ips) != 2 || slices.Contains(ips, deadIP) {
						t.Fatalf("%s: /route %s %s %v, DNS %v; %s is dead", ip, region, edge, list, ips, dead)
					}
				}
			}
			time.Sleep(3 * time.Second)
		}
		if used[eu[1]] < len(clients)/3 || used[eu[2]] < len(clients)/3 {
			t.Errorf("after the kill clients went to %v, want about half each on %s and %s", used, eu[1], eu[2])
		}
		if st := s.Status(); st.Regions[0].State != StateUp {
			t.Errorf("eu with 2 of 3 edges: %s", st.Regions[0].State)
		}
	})
}
