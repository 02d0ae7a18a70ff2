package edge

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// The hit path, for every front. Hits that ServeHTTP answers (net/http's
// HTTP/1.1, HTTP/2, HTTP/3, and the requests the fast front lends to
// net/http) are written by serveHit; the fast HTTP/1.1 front (package
// listen) writes plain hits itself through the hit contract: LookupHit,
// Hit.AppendHead and Hit.Body, then Delivered. Both book what they
// answered through delivered, the one place where a hit is counted on its
// entry, in the request metrics and in the access log.

// serveHit is the hit path: it writes the entry's sealed fields, the
// Age and Cache-Status shared by every hit within the same second, and the
// stored body, without re-deriving anything.
func (h *Handler) serveHit(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration) {
	st := h.hitStampOf(e, age)
	wh := w.Header()
	e.writeFields(wh, st)
	wh["Age"] = st.ageField
	wh["Cache-Status"] = st.statusField
	w.WriteHeader(int(e.status))
	if r.Method == http.MethodHead || !bodyAllowed(int(e.status)) {
		h.delivered(e, classHit, r.ProtoMajor, 0, nil)
		return
	}
	w.Write(e.body)
	h.delivered(e, classHit, r.ProtoMajor, len(e.body), nil)
}

// writeFields puts a sealed entry's fields in wh, with Content-Length
// when its status has a body. The values share one allocation; a hit's
// stamp, when given, supplies the computed ones.
func (e *entry) writeFields(wh http.Header, st *hitStamp) {
	n := e.fieldCount()
	hasBody := bodyAllowed(int(e.status))
	if hasBody {
		n++
	}
	vals := make([]string, 0, n)
	last, start := "", 0
	add := func(name, value string) {
		if name != last { // lines of one field are adjacent in a block
			last, start = name, len(vals)
		}
		vals = append(vals, value)
		wh[name] = vals[start:len(vals):len(vals)]
	}
	eachLine(e.shared.Value(), add)
	eachLine(e.own(), add)
	if e.flags&flagDateCompact != 0 {
		if st != nil {
			add("Date", st.date)
		} else {
			date, _ := e.compactDate()
			add("Date", date)
		}
	}
	if hasBody {
		cl := ""
		if st != nil {
			cl = st.contentLength
		} else {
			cl = strconv.Itoa(len(e.body))
		}
		add("Content-Length", cl)
	}
}

// hitStampOf returns the Age and Cache-Status of a fresh hit on e at age,
// made once per entry and whole second.
func (h *Handler) hitStampOf(e *entry, age time.Duration) *hitStamp {
	secs := int64(age / time.Second)
	st := e.stamp.Load()
	if st == nil || st.age != secs {
		ttl := time.Duration(int64(e.lifetime)-secs) * time.Second
		var cl, date string
		if st != nil { // the same entry a second later
			cl, date = st.contentLength, st.date
		} else {
			cl = strconv.Itoa(len(e.body))
			date, _ = e.compactDate()
		}
		st = &hitStamp{
			age:           secs,
			contentLength: cl,
			date:          date,
			ageField:      []string{strconv.FormatInt(secs, 10)},
			statusField:   []string{appendCacheStatus(e.field("Cache-Status"), h.cfg.Name, cacheStatus{hit: true, ttl: ttl, hasTTL: true})},
		}
		e.stamp.Store(st)
	}
	return st
}

// appendHitKey appends to dst the primary cache key of a request with this
// Host field value and origin-form target, over HTTPS when https, as
// site.keyFor derives it for a site whose cache_key does not rewrite it
// (lookupHit rewrites it for one that does), without allocating. The
// routing host, normalized as normalizeHost does it (lower case, no port,
// no trailing dot), is key[hostStart:hostEnd]. ok is false for a
// malformed Host: such a request is not a hit (ServeHTTP answers 400).
func appendHitKey(dst []byte, https bool, host, target []byte) (key []byte, hostStart, hostEnd int, ok bool) {
	name, ok := splitHost(host)
	if !ok {
		return dst, 0, 0, false
	}
	if https {
		dst = append(dst, keyPrefix("https")...)
	}
	hostStart = len(dst)
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	hostEnd = len(dst)
	return append(dst, target...), hostStart, hostEnd, true
}

// HitRequest is what a front that writes answers itself read of a GET
// or HEAD over HTTP/1.1 that may be answered by a stored response as it
// is: no conditionals, no Range, no Authorization, no body, not an
// upgrade (the front checks that; everything else is decided here). Its
// byte slices are the front's own buffer: they must stay unchanged until
// the hit is Delivered.
type HitRequest struct {
	Head   bool   // HEAD, else GET
	Host   []byte // the Host field value, as sent
	Target []byte // the request target in origin form, as sent
	// ForwardedProto is the last X-Forwarded-Proto field line, nil when
	// there is none; it is believed only from a trusted proxy
	// (server.trusted_proxies), as ServeHTTP believes it.
	ForwardedProto []byte
	// CacheControl says the request has a Cache-Control field: a site
	// that honours the client's (honor_client_cache_control) then
	// answers it through ServeHTTP.
	CacheControl bool
	// Remote is the client connection's peer address: the trusted proxy
	// check and the access log's remote.
	Remote net.Addr
}

// Hit is the hit contract between the cache and a front that writes
// answers itself (the fast HTTP/1.1 front): a fresh stored answer that
// needs nothing but the entry's prepared header and body. The front fills
// one with LookupHit, writes AppendHead and Body, and reports it with
// Delivered; it never reads the entry itself. A Hit is reused for the
// next request once delivered (a front keeps one per connection: a key
// that repeats is then not allocated again). It is not safe for
// concurrent use.
type Hit struct {
	e     *entry
	stamp *hitStamp
	start time.Time // when the lookup began: the access log's duration starts here
	req   HitRequest
	// keyBuf is where the request's key is derived; key is the last key
	// looked up, kept while requests repeat it.
	keyBuf []byte
	key    string
}

// LookupHit looks up a plain GET or HEAD (see HitRequest) and reports
// whether the answer is a fresh stored one with a body status (not 204
// or 304, whose fields net/http trims) that needs nothing but the
// entry's prepared header and body; x then holds it, to be written and
// Delivered. It reports false for everything else (a malformed or
// unknown host, a sliced site (slice.go), a miss, a stale entry, a
// varying response, a client Cache-Control that the site honours): such
// requests go through ServeHTTP. Nothing is counted until Delivered. It does not allocate
// when the request's key is the last one x looked up.
func (h *Handler) LookupHit(req HitRequest, x *Hit) bool {
	// The scheme, as ServeHTTP derives it (proxyList.scheme): a front
	// that writes hits itself listens for plain HTTP, unless a trusted
	// proxy says HTTPS.
	https := req.ForwardedProto != nil && forwardedProto(req.ForwardedProto) == "https" && h.trustsPeer(req.Remote)
	var hostStart, hostEnd int
	var ok bool
	x.keyBuf, hostStart, hostEnd, ok = appendHitKey(x.keyBuf[:0], https, req.Host, req.Target)
	if !ok {
		return false
	}
	if string(x.keyBuf) != x.key {
		x.key = string(x.keyBuf)
	}
	if !h.lookupHit(x, x.key, hostStart, hostEnd, req.CacheControl) {
		return false
	}
	x.req = req
	return true
}

// trustsPeer reports whether a connection's peer is one of the trusted
// proxies (server.trusted_proxies).
func (h *Handler) trustsPeer(remote net.Addr) bool {
	a, ok := remote.(*net.TCPAddr)
	return ok && len(h.trusted) > 0 && h.trusted.contains(a.AddrPort().Addr())
}

// lookupHit finds the fresh hit for key, whose routing host is
// key[hostStart:hostEnd] and target follows it as sent (see
// appendHitKey; the site's cache_key rules are applied here), and fills
// x's entry and stamp: see LookupHit.
func (h *Handler) lookupHit(x *Hit, key string, hostStart, hostEnd int, clientCC bool) bool {
	st := h.route(key[hostStart:hostEnd])
	if st == nil || clientCC && st.cfg.HonorClientCacheControl || st.cfg.SliceBytes > 0 {
		return false
	}
	if st.cfg.CacheKey.rewrites() {
		key = key[:hostEnd] + st.cfg.CacheKey.target(key[hostEnd:])
	}
	e := h.store.get(key)
	if e == nil {
		e = h.hot.get(key)
	}
	if e == nil || !e.sealed() || !bodyAllowed(int(e.status)) {
		return false
	}
	now := h.now()
	age := e.currentAge(now)
	reqCC := policy.NoDirectives()
	if !e.judge(age, &reqCC).Fresh {
		return false
	}
	x.e, x.stamp, x.start = e, h.hitStampOf(e, age), now
	return true
}

// AppendHead appends to b the HTTP/1.1 status line and header fields of
// the answer, as net/http would write them for serveHit, without the
// blank line that ends the header (the front adds its own connection
// fields, then the blank line). dateLine gives a whole "Date: ...\r\n"
// line of now; it is called only for an entry stored without a Date.
func (x *Hit) AppendHead(b []byte, dateLine func() []byte) []byte {
	e, st, status := x.e, x.stamp, int(x.e.status)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(status), 10)
	}
	b = append(b, "\r\n"...)
	// The sealed blocks are in wire form already.
	b = append(b, e.shared.Value()...)
	b = append(b, e.own()...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(e.body)), 10)
	b = append(b, "\r\n"...)
	b = appendField(b, "Age", st.ageField)
	b = appendField(b, "Cache-Status", st.statusField)
	if e.flags&flagHasType == 0 && !x.req.Head && len(e.body) > 0 {
		// net/http sniffs a missing Content-Type from the body.
		b = append(b, "Content-Type: "...)
		b = append(b, http.DetectContentType(e.body)...)
		b = append(b, "\r\n"...)
	}
	switch {
	case e.flags&flagDateCompact != 0:
		b = append(b, "Date: "...)
		b = append(b, st.date...)
		b = append(b, "\r\n"...)
	case e.flags&flagHasDate == 0:
		b = append(b, dateLine()...)
	}
	return b
}

// Body is the body to send after the header: the stored body, shared (it
// must not be changed), or nil for a HEAD.
func (x *Hit) Body() []byte {
	if x.req.Head {
		return nil
	}
	return x.e.body
}

// Delivered books a hit that the front has written, bodyBytes of its
// body sent: the hit on its entry, the request and byte counters
// (cache_status hit, protocol http/1.1), and the access log line when
// one is kept. It forgets the entry, so that x may be reused.
func (h *Handler) Delivered(x *Hit, bodyBytes int) {
	var line *accessLine
	if h.accessLog != nil {
		method := "GET"
		if x.req.Head {
			method = "HEAD"
		}
		line = &accessLine{remote: addrString(x.req.Remote), proto: "HTTP/1.1", method: method,
			host: string(x.req.Host), uri: string(x.req.Target), status: int(x.e.status), bytes: int64(bodyBytes),
			cacheStatus: strings.Join(x.stamp.statusField, ", "), start: x.start}
	}
	h.delivered(x.e, classHit, 1, bodyBytes, line)
	x.e, x.stamp, x.req = nil, nil, HitRequest{}
}

// addrString is a peer address as net/http's Request.RemoteAddr has it.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func appendField(b []byte, name string, vs []string) []byte {
	for _, v := range vs {
		b = append(b, name...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	return b
}

// delivered books one answered request, for every front and protocol:
// a fresh hit on its entry (e; nil when no entry answered), the request
// counter of its class and protocol (protoMajor as http.Request has it),
// the body bytes sent, and, when line is not nil and an access log is
// kept, the access log line. Requests that ServeHTTP answers get their
// line from serveLogged.
func (h *Handler) delivered(e *entry, class, protoMajor, bodyBytes int, line *accessLine) {
	if e != nil && class == classHit {
		e.countHit()
	}
	h.metrics.request(protoMajor, class, bodyBytes)
	if line != nil && h.accessLog != nil {
		h.logLine(context.Background(), line)
	}
}
