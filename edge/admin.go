package edge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meridiancdn/meridian/origin"
)

// Admin is an edge's admin API, served on its own port: health, readiness,
// Prometheus metrics, a JSON status, and the authenticated purge API.
//
//	GET  /healthz   200 while the process runs
//	GET  /readyz    200 while it takes traffic, 503 once draining
//	GET  /metrics   Prometheus text format      (read token, if set)
//	GET  /status    JSON: node, store (and disk tier), requests, hit
//	                ratio since start and over the last 1 and 5
//	                minutes, top objects, bans, each site's origin
//	                pool, plus Status() (region, regions, ring
//	                members, shields, pending purges, config)
//	                                            (read token, if set)
//	GET  /          the status page (HTML), which shows /status
//	POST /purge     {"urls": [...], "keys": [...], "prefixes": [...],
//	                "hosts": [...], "sites": [...], "bans": [...],
//	                "soft": bool} (see Purge)
//	                with "Authorization: Bearer TOKEN": the admin
//	                token, or a site's purge token for that site
//	                alone
//
// /status names the most requested URLs and /metrics the traffic: set
// ReadToken where the admin port is reachable by more than operators and
// Prometheus. /healthz and /readyz stay open for probes.
type Admin struct {
	// Handler is the edge whose store purges act on.
	Handler *Handler
	// Token is the purge API's bearer token, valid for every site. Empty:
	// only the sites' own purge tokens (sites[].purge_token) purge, each
	// its site.
	Token string
	// ReadToken, when set, is the bearer token that /status and /metrics
	// require (the purge Token is accepted too). Empty leaves them open.
	ReadToken string
	// Gatherer serves /metrics. Nil serves an empty page.
	Gatherer prometheus.Gatherer
	// Propagate, when set, sends a purge that this node applied to every
	// other peer and region, and returns who acknowledged it and who did
	// not. It runs before the API answers. Nil means this node alone.
	Propagate func(ctx context.Context, p Purge) (acked, failed []string)
	// Status, when set, adds fields (ring members, regions, …) to /status.
	Status func() map[string]any

	draining atomic.Bool
	recent   hitWindow // the request counters' recent samples (Sample)
}

// SetDraining makes /readyz fail, so that load balancers stop sending new
// requests before a graceful shutdown.
func (a *Admin) SetDraining(v bool) { a.draining.Store(v) }

// PurgeResult is the purge API's answer.
type PurgeResult struct {
	// Purged counts the entries this node removed or marked stale at
	// once (URLs and surrogate keys).
	Purged int `json:"purged"`
	// Bans counts the bans the purge made (prefixes, hosts, sites, ban
	// expressions): they act from now on, at lookup and in the sweeper.
	Bans int `json:"bans"`
	// Acked and Failed name the other nodes that did and did not confirm.
	Acked  []string `json:"acked"`
	Failed []string `json:"failed"`
	// Complete is true when every node confirmed.
	Complete bool `json:"complete"`
}

// ServeHTTP routes the admin API.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok\n")
	case "/readyz":
		if a.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	case "/metrics", "/status":
		if a.ReadToken != "" && !bearer(r, a.ReadToken) && !bearer(r, a.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meridian admin"`)
			http.Error(w, "missing or wrong bearer token (admin.read_token)", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/status" {
			a.serveStatus(w)
			return
		}
		g := a.Gatherer
		if g == nil {
			g = prometheus.NewRegistry()
		}
		promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	case "/", "/status.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(statusPage)
	case "/purge":
		a.servePurge(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (a *Admin) serveStatus(w http.ResponseWriter) {
	entries, bytes, evicted := a.Handler.StoreStats()
	counts := a.Handler.RequestCounts()
	st := map[string]any{
		"node": a.Handler.cfg.Name,
		"store": map[string]any{
			"entries": entries, "bytes": bytes, "evicted": evicted,
			"max_bytes": a.Handler.cache.Load().MaxBytes,
		},
		"requests":         counts,
		"hit_ratio":        hitRatio(counts),
		"hit_ratio_recent": a.recentRatios(),
		"top":              a.Handler.store.Top(10),
		"bans":             a.Handler.Bans(20),
		"sites":            a.Handler.siteStatus(),
		"time":             a.Handler.now().UTC().Format(time.RFC3339),
	}
	if ds, ok := a.Handler.DiskStats(); ok {
		st["disk"] = map[string]any{
			"entries": ds.Objects, "bytes": ds.Bytes, "max_bytes": ds.MaxBytes, "segments": ds.Segments,
			"hits": ds.Hits, "writes": ds.Writes, "write_errors": ds.WriteErrors, "dropped": ds.Dropped,
			"full": ds.Full, "index_load_seconds": ds.LoadTime.Seconds(), "index_loaded_entries": ds.Loaded,
		}
	}
	if a.Status != nil {
		for k, v := range a.Status() {
			st[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// authorized reports whether r carries the purge token.
func (a *Admin) authorized(r *http.Request) bool { return bearer(r, a.Token) }

// bearer compares r's bearer token with token in constant time (hashing
// first, so that not even the token's length leaks). An empty token
// matches nothing.
func bearer(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	x, y := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

func (a *Admin) servePurge(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "purge: use POST", http.StatusMethodNotAllowed)
		return
	}
	scope, ok := a.scopeOf(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meridian purge"`)
		http.Error(w, "purge: missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	var req struct {
		Purge
		// Local is set on purges that another node propagates: apply
		// here only, do not propagate again.
		Local bool `json:"local"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, fmt.Sprintf("purge: bad JSON body: %v", err), http.StatusBadRequest)
		return
	}
	if scope != nil {
		req.Scope = scope // a site's token purges within its site alone
	}
	a.purge(w, r, req.Purge, !req.Local)
}

// purge applies p here and, when propagate, on every other node, and
// answers with a PurgeResult: 200 when every node confirmed, 202 when
// some did not (they get it later), 400 for a malformed purge, 403 for
// one outside the token's site, 429 with too many bans.
func (a *Admin) purge(w http.ResponseWriter, r *http.Request, p Purge, propagate bool) {
	n, err := a.Handler.Purge(p)
	switch {
	case errors.Is(err, ErrTooManyBans):
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	case errors.Is(err, ErrOutOfScope):
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res := PurgeResult{Purged: n, Bans: p.bans(), Acked: []string{}, Failed: []string{}, Complete: true}
	if a.Propagate != nil && propagate {
		acked, failed := a.Propagate(r.Context(), p)
		res.Acked = append(res.Acked, acked...)
		res.Failed = append(res.Failed, failed...)
		res.Complete = len(failed) == 0
	}
	w.Header().Set("Content-Type", "application/json")
	if !res.Complete {
		w.WriteHeader(http.StatusAccepted) // applied here, not confirmed everywhere
	}
	json.NewEncoder(w).Encode(res)
}

// scopeOf returns the purge scope of r's bearer token: nil (every site)
// for the admin token, a site's hosts for that site's purge token; ok is
// false for no token or a wrong one.
func (a *Admin) scopeOf(r *http.Request) (scope []string, ok bool) {
	if a.authorized(r) {
		return nil, true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return nil, false
	}
	return a.Handler.siteOfToken(got)
}

// siteOfToken returns the hosts of the site whose purge token is token.
// Every site's token is compared, in constant time.
func (h *Handler) siteOfToken(token string) (hosts []string, ok bool) {
	x := sha256.Sum256([]byte(token))
	var found *site
	for _, st := range h.sites.Load().byHost {
		if st.purgeToken == "" {
			continue
		}
		y := sha256.Sum256([]byte(st.purgeToken))
		if subtle.ConstantTimeCompare(x[:], y[:]) == 1 {
			found = st
		}
	}
	if found == nil {
		return nil, false
	}
	return siteHosts(found), true
}

// hitRatio is the share of cacheable requests answered from the store
// (hits and stale serves over those plus misses); nil before any.
func hitRatio(c map[string]float64) any {
	served := c["hit"] + c["stale"]
	if total := served + c["miss"]; total > 0 {
		return served / total
	}
	return nil
}

// SiteStatus is one site on /status: its hosts and its origin pool.
type SiteStatus struct {
	// Site is the site's label (its first host, as metrics name it).
	Site  string   `json:"site"`
	Hosts []string `json:"hosts"`
	// Pool is its origin pool's state; nil when the edge's upstream is
	// not a pool (Options.Upstream).
	Pool *PoolStatus `json:"pool"`
}

// PoolStatus is an origin pool's state on /status.
type PoolStatus struct {
	Name string `json:"name"`
	// HealthChecks reports whether active health checks run.
	HealthChecks bool `json:"health_checks"`
	// CircuitOpen reports whether the breaker is open, and until when.
	CircuitOpen      bool       `json:"circuit_open"`
	CircuitOpenUntil *time.Time `json:"circuit_open_until,omitempty"`
	// Up and Servers count the servers that get requests (healthy, not
	// ejected) and all of them.
	Up      int            `json:"up"`
	Servers []ServerStatus `json:"servers"`
}

// ServerStatus is one origin server on /status (see origin.ServerState).
type ServerStatus struct {
	URL    string `json:"url"`
	Backup bool   `json:"backup,omitempty"`
	// State is "up", "down" (failing its health checks) or "ejected"
	// (passive outlier detection took it out for a while).
	State               string     `json:"state"`
	EjectedUntil        *time.Time `json:"ejected_until,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	Failures            uint64     `json:"failures"`
	LastFailure         *time.Time `json:"last_failure,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	InFlight            int        `json:"in_flight"`
	Queued              int        `json:"queued"`
	// MaxInflight is its cap on requests in flight, -1 for none.
	MaxInflight int `json:"max_inflight"`
	// Conns counts its open connections (idle ones included).
	Conns int `json:"conns"`
}

// siteStatus returns every site of the running config and its pool's
// state, ordered by site label.
func (h *Handler) siteStatus() []SiteStatus {
	seen := map[*site]bool{}
	out := []SiteStatus{}
	for _, st := range h.sites.Load().byHost {
		if seen[st] {
			continue
		}
		seen[st] = true
		ss := SiteStatus{Site: siteLabel(st.cfg), Hosts: st.cfg.Hosts}
		if p, ok := st.upstream.(*origin.Pool); ok {
			ss.Pool = poolStatus(p.State())
		}
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b SiteStatus) int { return strings.Compare(a.Site, b.Site) })
	return out
}

func poolStatus(ps origin.PoolState) *PoolStatus {
	out := &PoolStatus{Name: ps.Name, HealthChecks: ps.HealthChecks, CircuitOpen: !ps.CircuitOpenUntil.IsZero(),
		Servers: make([]ServerStatus, 0, len(ps.Servers))}
	if out.CircuitOpen {
		out.CircuitOpenUntil = utcPtr(ps.CircuitOpenUntil)
	}
	for _, s := range ps.Servers {
		ss := ServerStatus{URL: s.URL, Backup: s.Backup, State: "up", ConsecutiveFailures: s.ConsecutiveFailures,
			Failures: s.Failures, LastError: s.LastError, InFlight: s.InFlight, Queued: s.Queued,
			MaxInflight: s.MaxInflight, Conns: s.Conns}
		switch {
		case !s.Healthy:
			ss.State = "down"
		case !s.EjectedUntil.IsZero():
			ss.State = "ejected"
			ss.EjectedUntil = utcPtr(s.EjectedUntil)
		}
		if !s.LastFailure.IsZero() {
			ss.LastFailure = utcPtr(s.LastFailure)
		}
		if s.Available {
			out.Up++
		}
		out.Servers = append(out.Servers, ss)
	}
	return out
}

func utcPtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}

// statusPage is the admin port's status page: plain HTML and JS that reads
// /status, no build step.
//
//go:embed status.html
var statusPage []byte

// RequestCounts returns the requests answered so far by cache status
// (hit, miss, stale, pass, error), summed over protocols.
func (h *Handler) RequestCounts() map[string]float64 {
	out := make(map[string]float64, numClasses)
	for c, sum := range h.metrics.classTotals() {
		out[classNames[c]] = sum
	}
	return out
}
