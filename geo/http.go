package geo

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the HTTP steering endpoint:
//
//	GET /route[?ip=ADDR]  the answer for the caller (or ADDR) as JSON
//	GET /redirect/PATH    302 to the chosen region's host (or the client's
//	                      healthy edge), path and query kept
//	GET /regions          every region's health as JSON (the status page)
//	GET /healthz          200 while the service runs
//	GET /metrics          Prometheus: region and edge health
//
// The caller is the peer address, or, when the peer is in
// HTTP.TrustedProxies, the right-most X-Forwarded-For hop that is not a
// trusted proxy.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /route", s.serveRoute)
	mux.HandleFunc("GET /regions", s.serveRegions)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	// /redirect/ bypasses the mux, which would clean the path ("//" and
	// "..") that the redirect must pass on untouched.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/redirect/") {
			mux.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.serveRedirect(w, r)
	})
}

func (s *Service) serveRoute(w http.ResponseWriter, r *http.Request) {
	client := s.clientOf(r)
	if q := r.URL.Query().Get("ip"); q != "" {
		a, err := netip.ParseAddr(q)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ip: not an IP address"})
			return
		}
		client = a.WithZone("")
	}
	writeJSON(w, http.StatusOK, s.Route(client))
}

func (s *Service) serveRedirect(w http.ResponseWriter, r *http.Request) {
	ans := s.Route(s.clientOf(r))
	host := ans.Hostname
	if host == "" {
		host = ans.Edge
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/redirect")
	target := s.cfg.HTTP.RedirectScheme + "://" + host + path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	h := w.Header()
	h.Set("Location", target)
	h.Set("Cache-Control", "no-store") // the answer depends on the client and on health
	h.Set("X-Meridian-Region", ans.Region)
	w.WriteHeader(http.StatusFound)
}

func (s *Service) serveRegions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Status())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// clientOf is the request's client address (see [Service.Handler]).
func (s *Service) clientOf(r *http.Request) netip.Addr {
	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	return clientAddr(peer.Addr(), r.Header.Values("X-Forwarded-For"), s.trusted)
}

// clientAddr walks X-Forwarded-For from the right: each hop was appended
// by the proxy after it, so hops are believed only while the one who
// appended them is trusted. The first untrusted hop is the client. A hop
// that does not parse stops the walk at the last proxy that was believed.
func clientAddr(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	client := peer.Unmap().WithZone("")
	if !isTrusted(client, trusted) {
		return client
	}
	for i := len(xff) - 1; i >= 0; i-- {
		hops := xff[i]
		for hops != "" {
			hop := hops
			if k := strings.LastIndexByte(hops, ','); k >= 0 {
				hop, hops = hops[k+1:], hops[:k]
			} else {
				hops = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, ok := parseHop(hop)
			if !ok {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
