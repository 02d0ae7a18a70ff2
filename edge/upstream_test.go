package edge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
	"github.com/meridiancdn/meridian/edge/tracing"
)

// upCase is one client request whose fill's upstream request the
// differential tests build twice: with upstreamRequest and with the
// oracle (oldUpstreamRequest, upstream_oracle_test.go).
type upCase struct {
	header     http.Header
	remote     string // RemoteAddr; "" for 198.51.100.9:4711
	trusted    bool   // the remote address is a trusted proxy
	peer       bool   // a cluster peer's fill (ServePeer's mark)
	replica    bool   // a replica fill (ServeReplica's mark)
	override   bool   // forward_override_fields
	originHost string
	stale      bool // a stale copy to revalidate
	slice      *sliceReq
	span       bool // a recording server span in the context
}

var newTraceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-00$`)

// cloneHeaderExact copies h keeping nil value slices nil and empty ones
// empty, for comparing r's header before and after.
func cloneHeaderExact(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	c := make(http.Header, len(h))
	for k, vv := range h {
		if vv == nil {
			c[k] = nil
			continue
		}
		c[k] = append([]string{}, vv...)
	}
	return c
}

// checkUpstreamSame builds c's upstream request both ways and fails t
// where they differ: any field, value, nil-ness, the request line, host,
// or fill.Info; where either changed the client's header; or where the
// new one's values share memory with the client's or with each other.
func checkUpstreamSame(t testing.TB, c upCase) {
	t.Helper()
	h := &Handler{cfg: Config{Name: "edge-a"}, via: "1.1 edge-a"}
	if c.trusted {
		h.trusted = proxyList{netipPrefix(t, "198.51.100.0/24"), netipPrefix(t, "2001:db8::/32")}
	}
	st := &site{cfg: SiteConfig{CacheKey: CacheKeyConfig{}.withDefaults(), ForwardOverrideFields: c.override, OriginHost: c.originHost},
		origin: &url.URL{Scheme: "http", Host: "origin.test"}, trusted: h.trusted}
	r := httptest.NewRequest(http.MethodGet, "http://Site.test:8080/obj?x=1", nil)
	r.RemoteAddr = "198.51.100.9:4711"
	if c.remote != "" {
		r.RemoteAddr = c.remote
	}
	r.Header = c.header
	ctx := r.Context()
	if c.peer {
		ctx = context.WithValue(ctx, peerKey{}, peerMark{peer: fill.Peer{From: "edge-b", Hop: "owner"}})
	}
	if c.replica {
		ctx = context.WithValue(ctx, peerKey{}, peerMark{replica: true})
	}
	if c.slice != nil {
		ctx = context.WithValue(ctx, sliceKey{}, c.slice)
	}
	r = r.WithContext(ctx)
	if c.span {
		tr := tracing.New(tracing.Options{Exporter: tracetest.NewNoopExporter(), SampleRatio: 1, Service: "test", Sync: true})
		defer tr.Shutdown(context.Background())
		r2, span := tr.Start(r, "edge-a")
		defer span.End()
		r = r2
	}
	var stale *store.Entry
	if c.stale {
		stale = store.NewFilling(200, http.Header{"Etag": {`"v1"`}, "Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}}, policy.Policy{}, time.Unix(1, 0))
	}
	before := cloneHeaderExact(r.Header)
	key := st.cacheKey(r)
	want := h.oldUpstreamRequest(context.Background(), st, key, r, stale)
	if !reflect.DeepEqual(r.Header, before) {
		t.Fatalf("the oracle changed the client's header: %q, was %q", r.Header, before)
	}
	got := h.upstreamRequest(context.Background(), st, key, r, stale)
	if !reflect.DeepEqual(r.Header, before) {
		t.Fatalf("upstreamRequest changed the client's header: %q, was %q", r.Header, before)
	}
	if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host || got.Close != want.Close ||
		got.ContentLength != want.ContentLength || got.RequestURI != want.RequestURI || got.Body != nil ||
		!reflect.DeepEqual(got.Trailer, want.Trailer) || !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) ||
		fillInfoOf(got) != fillInfoOf(want) || sliceOf(got.Context()) != sliceOf(want.Context()) {
		t.Fatalf("request %s %s Host %q close %v info %+v, want %s %s Host %q close %v info %+v",
			got.Method, got.URL, got.Host, got.Close, fillInfoOf(got), want.Method, want.URL, want.Host, want.Close, fillInfoOf(want))
	}
	// A traceparent the edge starts is random: both must have started
	// one, or both passed on the same.
	gh, wh := cloneHeaderExact(got.Header), cloneHeaderExact(want.Header)
	if wtp := wh["Traceparent"]; len(wtp) == 1 && (len(before["Traceparent"]) == 0 || wtp[0] != before["Traceparent"][0]) && !c.span {
		gtp := gh["Traceparent"]
		if len(gtp) != 1 || !newTraceparentRE.MatchString(gtp[0]) || !newTraceparentRE.MatchString(wtp[0]) ||
			(len(before["Traceparent"]) > 0 && gtp[0] == before["Traceparent"][0]) {
			t.Fatalf("new traceparent %q, oracle's %q (client's %q)", gtp, wtp, before["Traceparent"])
		}
		delete(gh, "Traceparent")
		delete(wh, "Traceparent")
	}
	if !reflect.DeepEqual(gh, wh) {
		t.Fatalf("client header %q:\nupstream header %q\nwant (oracle)   %q", before, got.Header, want.Header)
	}
	// No value of the upstream request is the client's memory or another
	// field's: writing every one changes neither r nor another field.
	for k, vv := range got.Header {
		for i := range vv {
			vv[i] = "\x00" + k + "\x00" + string(rune('0'+i%10))
		}
	}
	for k, vv := range got.Header {
		for i := range vv {
			if vv[i] != "\x00"+k+"\x00"+string(rune('0'+i%10)) {
				t.Fatalf("field %q value %d is shared with another field", k, i)
			}
		}
		if len(vv) > 0 {
			_ = append(vv, "appended") // must not write into a neighbour
		}
	}
	for k, vv := range got.Header {
		for i := range vv {
			if vv[i] != "\x00"+k+"\x00"+string(rune('0'+i%10)) {
				t.Fatalf("an append to a field wrote into %q value %d", k, i)
			}
		}
	}
	if !reflect.DeepEqual(r.Header, before) {
		t.Fatalf("writing the upstream header changed the client's: %q, was %q", r.Header, before)
	}
}

func netipPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	l, err := parseProxies([]string{s})
	if err != nil {
		t.Fatal(err)
	}
	return l[0]
}

// upstreamTableCases are the client headers the differential test and
// the fuzz seeds start from: every field the fill drops, rewrites or
// keeps, in canonical and other spellings.
func upstreamTableCases() map[string]upCase {
	hop := http.Header{"Keep-Alive": {"timeout=5"}, "Te": {"trailers"}, "Trailer": {"X-T"}, "Upgrade": {"websocket"},
		"Proxy-Connection": {"keep-alive"}, "Proxy-Authorization": {"Basic eDp5"}, "Proxy-Authenticate": {"Basic"},
		"Transfer-Encoding": {"chunked"}, "Connection": {"Upgrade"}, "Upgrade-Insecure-Requests": {"1"}, "Accept": {"*/*"}}
	cond := http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"a"`}, "If-None-Match": {`"a"`, `"b"`}, "If-Modified-Since": {"Mon, 02 Jan 2006 15:04:05 GMT"},
		"If-Match": {"*"}, "If-Unmodified-Since": {"x"}, "Cache-Control": {"no-cache"}, "Pragma": {"no-cache"}}
	over := http.Header{"X-Original-Url": {"/admin"}, "X-Rewrite-Url": {"/admin"}, "X-Http-Method-Override": {"DELETE"},
		"X-Http-Method": {"PUT"}, "X-Method-Override": {"PATCH"}, "X-Host": {"evil.test"}, "X-Hosts": {"kept"}}
	fwd := http.Header{"X-Forwarded-For": {"203.0.113.1, 10.0.0.1", "192.0.2.7"}, "X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host": {"evil.test"}, "X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/p"}, "Forwarded": {"for=203.0.113.1"},
		"X-Real-Ip": {"203.0.113.1"}, "Via": {"1.1 proxy-a", "1.0 proxy-b"}, "Cdn-Loop": {"other-cdn"}, "X-Forwardedfor": {"kept"}}
	named := http.Header{"Connection": {"X-Forwarded-For, via ,, \t,CDN-LOOP", "traceparent,Forwarded", "x-forwarded-host, keep-alive, close"},
		"X-Forwarded-For": {"203.0.113.1"}, "Via": {"1.1 proxy-a"}, "Cdn-Loop": {"other-cdn"}, "Forwarded": {"for=203.0.113.1"},
		"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "X-Forwarded-Host": {"evil.test"},
		"Keep-Alive": {"timeout=5"}, "Accept": {"*/*"}}
	return map[string]upCase{
		"bare":                        {header: http.Header{}},
		"nil":                         {header: nil},
		"browser":                     {header: browserHeader()},
		"hopbyhop":                    {header: hop},
		"conditional":                 {header: cond},
		"conditional/stale":           {header: cond, stale: true},
		"conditional/slice":           {header: cond, slice: &sliceReq{first: 0, last: 99}},
		"conditional/slice-cc":        {header: cond, slice: &sliceReq{first: 100, last: 199, clientCC: true}},
		"conditional/slice-refresh":   {header: cond, slice: &sliceReq{first: 100, last: 199, refresh: true}, stale: true},
		"override":                    {header: over},
		"override/on":                 {header: over, override: true},
		"override/named":              {header: mergeHeaders(over, http.Header{"Connection": {"x-host"}}), override: true},
		"forwarded/untrusted":         {header: fwd},
		"forwarded/trusted":           {header: fwd, trusted: true},
		"forwarded/trusted-v6":        {header: fwd, trusted: true, remote: "[2001:db8::7]:4711"},
		"forwarded/untrusted-v6":      {header: fwd, remote: "[2001:db8::7]:4711"},
		"forwarded/no-remote":         {header: fwd, remote: "pipe"},
		"forwarded/trusted-no-remote": {header: http.Header{"Forwarded": {"for=x"}}, trusted: true, remote: "pipe"},
		"forwarded/peer":              {header: fwd, peer: true},
		"forwarded/replica":           {header: fwd, replica: true},
		"forwarded/origin-host":       {header: fwd, originHost: "origin.internal"},
		"connection/named":            {header: named},
		"connection/named-trusted":    {header: named, trusted: true},
		"connection/odd": {header: http.Header{"Connection": {"foo bar, X_Y,\"q\", , ,,", "ACCEPT", ""}, "foo bar": {"1"}, "X_y": {"2"}, "X_Y": {"3"},
			"Accept": {"a"}, "accept": {"b"}, "Foo Bar": {"4"}, `"q"`: {"5"}}},
		"connection/conditional": {header: mergeHeaders(cond, http.Header{"Connection": {"pragma, cache-control"}}), slice: &sliceReq{last: 9, refresh: true}},
		"noncanonical": {header: http.Header{"connection": {"Accept"}, "Accept": {"a"}, "x-forwarded-for": {"1.2.3.4"}, "range": {"bytes=0-0"},
			"x-original-url": {"/admin"}, "te": {"trailers"}, "via": {"1.1 x"}, "traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"x-real-ip": {"1.2.3.4"}, "forwarded": {"for=x"}, "X-FORWARDED-HOST": {"evil.test"}}},
		"nil-values": {header: http.Header{"X-Nil": nil, "X-Empty": {}, "Via": nil, "X-Forwarded-For": nil, "Connection": nil, "Cdn-Loop": {},
			"Range": nil, "X-Host": nil, "Forwarded": nil, "Traceparent": nil, "Tracestate": {}}},
		"nil-values/trusted":     {header: http.Header{"X-Nil": nil, "Via": nil, "X-Forwarded-For": nil, "X-Forwarded-Port": nil, "Forwarded": {}}, trusted: true},
		"trace/valid":            {header: http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"congo=t61rcWkgMzE"}}},
		"trace/valid-long-state": {header: http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"a=" + strings.Repeat("b", 600)}}},
		"trace/invalid":          {header: http.Header{"Traceparent": {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "Tracestate": {"congo=t61rcWkgMzE"}}},
		"trace/span":             {header: http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": {"congo=t61rcWkgMzE"}}, span: true},
		"trace/span-new":         {header: http.Header{"Tracestate": {"congo=t61rcWkgMzE"}}, span: true},
	}
}

func browserHeader() http.Header {
	return http.Header{
		"Accept":                    {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Accept-Encoding":           {"gzip, deflate, br, zstd"},
		"Accept-Language":           {"en-US,en;q=0.5"},
		"Connection":                {"keep-alive"},
		"Cookie":                    {"session=abc123; theme=dark"},
		"Referer":                   {"https://site.test/"},
		"Sec-Fetch-Dest":            {"document"},
		"Sec-Fetch-Mode":            {"navigate"},
		"Sec-Fetch-Site":            {"same-origin"},
		"Upgrade-Insecure-Requests": {"1"},
		"User-Agent":                {"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
	}
}

func mergeHeaders(a, b http.Header) http.Header {
	m := cloneHeaderExact(a)
	for k, vv := range b {
		m[k] = append(m[k], vv...)
	}
	return m
}

// TestUpstreamRequestMatchesOracle: for every header of the table, in
// every trust and site setting, the fill's upstream request is the one
// the clone-then-delete implementation built (upstream_oracle_test.go).
func TestUpstreamRequestMatchesOracle(t *testing.T) {
	for name, c := range upstreamTableCases() {
		for _, v := range []struct {
			name string
			mod  func(*upCase)
		}{{"", func(*upCase) {}}, {"+trusted", func(c *upCase) { c.trusted = true }}, {"+override", func(c *upCase) { c.override = true }},
			{"+stale", func(c *upCase) { c.stale = true }}, {"+peer", func(c *upCase) { c.peer = true }}} {
			t.Run(name+v.name, func(t *testing.T) {
				c := c
				c.header = cloneHeaderExact(c.header)
				v.mod(&c)
				checkUpstreamSame(t, c)
			})
		}
	}
}

// FuzzUpstreamFields compares the fill's upstream request with the
// oracle's for arbitrary client headers. fields is one field a line,
// "name:value" (the name used as the map key as it is, so non-canonical,
// empty or odd names too) or a bare "name" for a nil value slice; flags
// pick the trust, the site's settings, a stale copy and a slice.
func FuzzUpstreamFields(f *testing.F) {
	for _, c := range upstreamTableCases() {
		var b strings.Builder
		for k, vv := range c.header {
			if vv == nil {
				b.WriteString(k + "\n")
			}
			for _, v := range vv {
				b.WriteString(k + ":" + v + "\n")
			}
		}
		var flags uint16
		for i, on := range []bool{c.trusted, c.override, c.stale, c.slice != nil, c.slice != nil && c.slice.clientCC,
			c.slice != nil && c.slice.refresh, c.peer, c.replica, c.remote != "", c.originHost != ""} {
			if on {
				flags |= 1 << i
			}
		}
		f.Add(b.String(), flags)
	}
	f.Fuzz(func(t *testing.T, fields string, flags uint16) {
		h := http.Header{}
		for line := range strings.SplitSeq(fields, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				if _, there := h[name]; !there {
					h[name] = nil
				}
				continue
			}
			h[name] = append(h[name], value)
		}
		bit := func(i int) bool { return flags&(1<<i) != 0 }
		c := upCase{header: h, trusted: bit(0), override: bit(1), stale: bit(2), peer: bit(6), replica: bit(7) && !bit(6)}
		if bit(3) {
			c.slice = &sliceReq{first: 0, last: 1023, clientCC: bit(4), refresh: bit(5)}
		}
		if bit(8) {
			c.remote = "[2001:db8::7]:4711"
			if bit(9) && bit(10) {
				c.remote = "not an address"
			}
		}
		if bit(9) {
			c.originHost = "origin.internal"
		}
		checkUpstreamSame(t, c)
	})
}

// TestForwardsFieldFollowsPolicy: upstreamHeader drops, by its own list,
// every field policy.RemoveHopByHop always removes and every conditional
// the fill replaces (conditionalFields, which the slicer's subrequests
// drop too), and nothing else of theirs: the lists must not drift apart.
func TestForwardsFieldFollowsPolicy(t *testing.T) {
	names := append([]string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Trailers",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization", "Http2-Settings",
		"Upgrade-Insecure-Requests", "Accept", "Cache-Control", "Pragma", "Cookie", "Authorization", "Host"}, conditionalFields...)
	for _, name := range names {
		h := http.Header{name: {"x"}}
		policy.RemoveHopByHop(h)
		for _, c := range conditionalFields {
			h.Del(c)
		}
		dropped := len(h) == 0
		for _, trusted := range []bool{false, true} {
			if got := forwardsField(name, trusted, true); got == dropped {
				t.Errorf("%s (trusted %v): forwardsField %v, but the policy drops it: %v", name, trusted, got, dropped)
			}
		}
	}
}
