package edge

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridiancdn/meridian/edge/geoip"
	"github.com/meridiancdn/meridian/edge/rules"
)

// A site's rules (package edge/rules) meet a request at one place: serve
// calls applyRules after routing, before anything else (lookup, fill,
// pass), for every front and protocol. Requests for a site with rules are
// never answered by the fast front itself (LookupHit declines them), so
// net/http's writer, wrapped here, carries every answer. A site without
// rules costs one nil check. Requests from cluster peers skip the rules:
// the edge that took the client's request applied them already (the
// peer gets the rewritten, stripped request, with the request rules'
// fields), and the answer goes back to that edge, which applies the
// response rules.

// compileRules builds a site's rules; geo rules read their database
// through dbs, which opens each file once per configuration.
// Their matches are counted in matches (by site, kind and rule; nil: not
// counted).
func compileRules(sc SiteConfig, cfg Config, dbs map[string]*geoip.DB, matches *prometheus.CounterVec) (*rules.Set, error) {
	if sc.Rules.Empty() {
		return nil, nil
	}
	opt := rules.Options{HTTPSPort: httpsPort(cfg)}
	if matches != nil {
		label := siteLabel(sc)
		opt.Count = func(kind, rule string) rules.Counter { return matches.WithLabelValues(label, kind, rule) }
	}
	if ga := sc.Rules.GeoAccess; ga.Enabled() {
		db := dbs[ga.Database]
		if db == nil {
			var err error
			if db, err = geoip.Open(ga.Database); err != nil {
				return nil, fmt.Errorf("geo_access.database: %w", err)
			}
			dbs[ga.Database] = db
		}
		opt.Locator = db
	}
	return rules.Compile(sc.Rules, opt)
}

// httpsPort is the port of the edge's TLS listener, 0 when it has none or
// it is chosen at start (":0").
func httpsPort(cfg Config) int {
	if cfg.TLS == nil {
		return 0
	}
	_, port, err := net.SplitHostPort(cfg.TLS.Listen)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// applyRules runs r, for a site with rules, through its redirects, geo
// access, signed URLs and rewrites (rules.Set.Decide) and its request
// header rules, and wraps w so that its response rules apply to whatever
// answers. It returns the writer and request that the cache serves, or
// done when the rules answered (a redirect, a 403).
func (h *Handler) applyRules(w http.ResponseWriter, r *http.Request, st *site) (http.ResponseWriter, *http.Request, bool) {
	if isFromPeer(r.Context()) || isReplica(r.Context()) {
		return w, r, false
	}
	set := st.rules
	host, _ := normalizeHost(r.Host) // routed: well-formed
	d := set.Decide(rules.Request{
		Scheme: st.trusted.scheme(r),
		Host:   host,
		Port:   portOf(r.Host),
		Target: requestTarget(r),
		Path:   r.URL.Path,
		Client: func() netip.Addr { return h.ClientAddr(r) },
	}, h.now())
	if set.HasResponseRules() || d.Rule != "" && d.Status == 0 {
		w = &rulesWriter{ResponseWriter: w, set: set, path: r.URL.Path, name: h.cfg.Name, detail: d.Rule}
	}
	if d.Status != 0 {
		h.answerRule(w, r, d)
		return w, r, true
	}
	if d.Target != "" || set.HasRequestRules() {
		r2 := *r
		if d.Target != "" {
			u, err := url.ParseRequestURI(d.Target)
			if err != nil { // cannot happen: the rules escape what they write
				h.writeError(w, r, http.StatusBadRequest, "request target unusable after rewrite", cacheStatus{detail: d.Rule})
				return w, r, true
			}
			cu := *r.URL
			cu.Path, cu.RawPath, cu.RawQuery, cu.ForceQuery = u.Path, u.RawPath, u.RawQuery, u.ForceQuery
			r2.URL, r2.RequestURI = &cu, d.Target
		}
		if set.HasRequestRules() {
			r2.Header = r.Header.Clone()
			set.RequestHeaders(r2.Header, r.URL.Path)
		}
		r = &r2
	}
	return w, r, false
}

// portOf is the port of a Host field value, "" when it has none.
func portOf(hostField string) string {
	i := strings.LastIndexByte(hostField, ':')
	if i < 0 || strings.IndexByte(hostField[i:], ']') >= 0 {
		return ""
	}
	return hostField[i+1:]
}

// answerRule writes the answer the rules decided: a redirect, or a 403
// with the configured body.
func (h *Handler) answerRule(w http.ResponseWriter, r *http.Request, d rules.Decision) {
	wh := w.Header()
	wh["Cache-Status"] = []string{appendCacheStatus("", h.cfg.Name, cacheStatus{detail: d.Rule})}
	class, body := classError, d.Body
	if d.Location != "" {
		class = classPass
		wh["Location"] = []string{d.Location}
		wh["Content-Type"] = []string{"text/plain; charset=utf-8"}
		body = "Moved to " + d.Location + "\n"
	} else {
		wh["Content-Type"] = []string{d.ContentType}
		wh["Cache-Control"] = []string{"no-store"}
	}
	wh["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(d.Status)
	n := 0
	if r.Method != http.MethodHead {
		n, _ = w.Write([]byte(body))
	}
	h.delivered(h.countersOf(r), nil, class, r.ProtoMajor, n, nil)
}

// rulesWriter applies a site's response header rules to the header of the
// final answer, whoever writes it (a hit, a fill, a pass, an error), just
// before it goes out; 1xx answers pass as they are. When a rewrite rule
// served the request, it names it in this cache's Cache-Status entry
// (detail), unless the entry has a detail already.
type rulesWriter struct {
	http.ResponseWriter
	set    *rules.Set
	path   string // the client's path (decoded)
	name   string // this cache's name in Cache-Status
	detail string
	wrote  bool
}

func (w *rulesWriter) WriteHeader(code int) {
	if code < 200 || w.wrote {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	wh := w.ResponseWriter.Header()
	if w.detail != "" {
		addDetail(wh, w.name, w.detail)
	}
	w.set.ResponseHeaders(wh, w.path, code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *rulesWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *rulesWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *rulesWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// addDetail adds detail to this cache's (name's) entry, the last one, of
// the Cache-Status in h, when the entry has none.
func addDetail(h http.Header, name, detail string) {
	vs := h["Cache-Status"]
	if len(vs) == 0 {
		return
	}
	last := vs[len(vs)-1]
	entry := last
	if i := strings.LastIndex(last, ", "); i >= 0 {
		entry = last[i+2:]
	}
	if entry != name && !strings.HasPrefix(entry, name+";") || strings.Contains(entry, "; detail=") {
		return
	}
	out := make([]string, len(vs))
	copy(out, vs)
	out[len(out)-1] = last + "; detail=" + detail
	h["Cache-Status"] = out
}
