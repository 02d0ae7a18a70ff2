package edge

import (
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
)

// The hit path, for every front. Hits that ServeHTTP answers (net/http's
// HTTP/1.1, HTTP/2, HTTP/3, and the requests the fast front lends to
// net/http) are written by serveHit; the fast HTTP/1.1 front (package
// listen) writes plain hits itself through the hit contract: LookupHit,
// Hit.AppendHead and Hit.Body (or, for a body in the disk tier,
// Hit.AppendBody or Hit.WriteBody, which sends it with sendfile), then
// Delivered. Both book what they
// answered through delivered, the one place where a hit is counted on its
// entry, in the request metrics and in the access log.

// serveHit is the hit path: it writes the entry's sealed fields, the
// Age and Cache-Status shared by every hit within the same second, and the
// stored body, without re-deriving anything.
func (h *Handler) serveHit(w http.ResponseWriter, r *http.Request, s *site, e *store.Entry, age time.Duration) {
	c, again := h.hitStamp(e, age)
	date := h.dateOf(e)
	switch hh := c.hdr.Load(); {
	case hh != nil && hh.Of(e, date):
		hh.WriteTo(w.Header())
	case again:
		// The stamp's second hit at least: the entry is hit more than
		// once a second, so its header is worth keeping (stampCache).
		hh = e.NewHitHeader(&c.st, date) // Age and Cache-Status too
		c.hdr.Store(hh)
		hh.WriteTo(w.Header())
	default:
		e.WriteHitFields(w.Header(), &c.st, date)
	}
	status := e.Status()
	w.WriteHeader(status)
	if r.Method == http.MethodHead || !bodyAllowed(status) {
		h.delivered(s.counters, e, classHit, r.ProtoMajor, 0, nil)
		return
	}
	body := e.Body()
	w.Write(body)
	h.delivered(s.counters, e, classHit, r.ProtoMajor, len(body), nil)
}

// hitStamp returns the Age and Cache-Status of a fresh hit on e at age,
// made once per entry and whole second while the entry is hit (see
// stampCache); again says the stamp was made for an earlier hit.
func (h *Handler) hitStamp(e *store.Entry, age time.Duration) (*cachedStamp, bool) {
	secs := int64(age / time.Second)
	key, size, lifetime, prior := e.Key(), e.BodySize(), e.Lifetime(), e.Field("Cache-Status")
	slot := h.stamps.slot(key)
	if c := slot.Load(); c != nil && c.st.Age() == secs && c.key == key && c.size == size && c.lifetime == lifetime && c.prior == prior {
		return c, true
	}
	c := &cachedStamp{key: key, size: size, lifetime: lifetime, prior: prior,
		st: store.NewStamp(secs, size, appendCacheStatus(prior, h.cfg.Name, cacheStatus{hit: true, ttl: hitTTL(e, age), hasTTL: true}))}
	slot.Store(c)
	return c, false
}

// hitStampOf is hitStamp's stamp.
func (h *Handler) hitStampOf(e *store.Entry, age time.Duration) *store.Stamp {
	c, _ := h.hitStamp(e, age)
	return &c.st
}

// hitTTL is the ttl of a fresh hit's Cache-Status at age: the freshness
// lifetime less the Age the answer carries (whole seconds), so that Age
// plus ttl is the lifetime on every path that serves a hit.
func hitTTL(e *store.Entry, age time.Duration) time.Duration {
	return e.Lifetime() - age.Truncate(time.Second)
}

// stampCache keeps the hit stamps of recently hit entries, by key, in a
// fixed number of slots (a slot holds the latest stamp made for a key
// that falls on it). So an entry hit again within the same second reuses
// its stamp, as the fast front needs to answer without allocating, and an
// entry hit once and never again costs nothing afterwards: when entries
// kept their own stamps, every entry ever hit held one (about 56 bytes
// after the stamp was made small, 240 before), which a million small
// objects pay for. The cache holds at most len(slots) stamps, each with
// its key (a substring of its entry's key and fields, which it keeps
// alive once the entry is gone; never a body) and, once it served a
// second hit through net/http's writers, that hit's header (a few hundred
// bytes for a typical object; an entry hit once a second or less never
// gets one): about 3 MiB at most.
// A stamp is used only for an entry whose stamp it would be: the same
// key, body size, freshness lifetime, upstream Cache-Status and age.
type stampCache struct {
	seed  maphash.Seed
	slots [4096]atomic.Pointer[cachedStamp]
}

// cachedStamp is a stamp and what it was made for.
type cachedStamp struct {
	key      string
	size     int64
	lifetime time.Duration
	prior    string // the upstream's Cache-Status
	st       store.Stamp
	// hdr is the whole header of a hit with this stamp, for the writers
	// of net/http, HTTP/2 and HTTP/3 (serveHit), made on the stamp's
	// second such hit; it names the entry it is for (store.HitHeader.Of),
	// which may be another with the same key and stamp.
	hdr atomic.Pointer[store.HitHeader]
}

// slot is key's slot.
func (c *stampCache) slot(key string) *atomic.Pointer[cachedStamp] {
	return &c.slots[maphash.String(c.seed, key)%uint64(len(c.slots))]
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
// or HEAD over HTTP/1.1 or HTTP/2 that may be answered by a stored response as it
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
	// that honours the client's (honor_client_cache_control), or that
	// compresses (the field may say no-transform), then answers it
	// through ServeHTTP.
	CacheControl bool
	// Remote is the client connection's peer address: the trusted proxy
	// check and the access log's remote.
	Remote net.Addr
	// AcceptEncoding is the Accept-Encoding field value, nil when there
	// is none; a request with more than one such line is not plain. On
	// a site that compresses it selects the stored variant of the coding
	// the client gets (see encoding.go).
	AcceptEncoding []byte
	// UserAgent, Referer and Traceparent are the first of these fields,
	// ForwardedFor the one X-Forwarded-For line (a front hands a request
	// with several to ServeHTTP); nil when absent. Only the access log
	// reads them.
	UserAgent, Referer, Traceparent, ForwardedFor []byte
	// TLS says the request came over TLS: its scheme is https, as
	// ServeHTTP derives it from r.TLS (a trusted proxy's
	// X-Forwarded-Proto still has the last word).
	TLS bool
	// HTTP2 says the request came over HTTP/2: it is counted and logged
	// as such (protocol http/2, "HTTP/2.0"), as ServeHTTP does.
	HTTP2 bool
}

// Hit is the hit contract between the cache and a front that writes
// answers itself (the fast HTTP/1.1 and HTTP/2 fronts): a fresh stored answer that
// needs nothing but the entry's prepared header and body. The front fills
// one with LookupHit, writes AppendHead and Body (AppendBody or
// WriteBody when BodyOnDisk), and reports it with
// Delivered; it never reads the entry itself. A Hit is reused for the
// next request once delivered (a front keeps one per connection: a key
// that repeats is then not allocated again). It is not safe for
// concurrent use.
type Hit struct {
	e     *store.Entry
	site  *site
	stamp *store.Stamp
	date  string    // the entry's Date kept as a number, formatted (Handler.dateOf); "" if it keeps none
	start time.Time // when the lookup began: the access log's duration starts here
	req   HitRequest
	// keyBuf is where the request's key is derived; key is the last key
	// an entry was found at, kept while requests repeat it. While
	// borrowed, lookupHit's key is keyBuf's bytes (see ownKey).
	keyBuf   []byte
	key      string
	borrowed bool
	// varBuf and varKey are the same for the key of a coding's variant.
	varBuf []byte
	varKey string
	// rd is the body's file when the entry is on disk (the disk tier),
	// open until Delivered; nil for a body in memory.
	rd *store.BodyReader
}

// LookupHit looks up a plain GET or HEAD (see HitRequest) and reports
// whether the answer is a fresh stored one with a body status (not 204
// or 304, whose fields net/http trims) that needs nothing but the
// entry's prepared header and body; x then holds it, to be written and
// Delivered. It reports false for everything else (a malformed or
// unknown host, a sliced site (slice.go), a miss, a stale entry, a
// varying response other than a compressing site's coding variant
// (chosen by AcceptEncoding), a client Cache-Control that the site
// honours, a site with rules, whose rules apply in ServeHTTP): such
// requests go through ServeHTTP. Nothing is counted until Delivered. It does not allocate
// when the request's key is the last one x looked up.
func (h *Handler) LookupHit(req HitRequest, x *Hit) bool {
	// The scheme, as ServeHTTP derives it (proxyList.scheme): the
	// connection's, unless a trusted proxy says otherwise.
	https := req.TLS
	if req.ForwardedProto != nil && h.trustsPeer(req.Remote) {
		if s := forwardedProto(req.ForwardedProto); s != "" {
			https = s == "https"
		}
	}
	var hostStart, hostEnd int
	var ok bool
	x.keyBuf, hostStart, hostEnd, ok = appendHitKey(x.keyBuf[:0], https, req.Host, req.Target)
	if !ok {
		return false
	}
	key := x.key
	x.borrowed = string(x.keyBuf) != key
	if x.borrowed {
		// A key not seen last: looked up as the bytes of keyBuf until an
		// entry is found at it (lookupHit), so that a miss, which goes
		// on to ServeHTTP, allocates nothing here.
		key = unsafe.String(unsafe.SliceData(x.keyBuf), len(x.keyBuf))
	}
	found := h.lookupHit(x, key, hostStart, hostEnd, req.CacheControl, req.AcceptEncoding)
	x.borrowed = false
	if !found {
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
func (h *Handler) lookupHit(x *Hit, key string, hostStart, hostEnd int, clientCC bool, acceptEncoding []byte) bool {
	if h.tracer.Recording() {
		// Every request gets its span in ServeHTTP.
		return false
	}
	st := h.route(key[hostStart:hostEnd])
	// A site with rules is served through ServeHTTP, where its rules
	// apply (siterules.go), and so is a sliced site (slice.go): never
	// from here. A client Cache-Control on a compressing site may say
	// no-transform (see negotiated): ServeHTTP reads it. So is a site
	// whose Alt-Svc is its own (altsvc.go).
	if st == nil || st.rules != nil || st.cfg.SliceBytes > 0 || st.altSvcField != nil || st.cfg.AltSvc == AltSvcOff ||
		clientCC && (st.cfg.HonorClientCacheControl || st.coder != nil) {
		return false
	}
	if st.cfg.CacheKey.rewrites() {
		// Owned first: a concatenation with an empty part is the other.
		key = x.ownKey(key)
		key = key[:hostEnd] + st.cfg.CacheKey.target(key[hostEnd:])
	}
	// The tiers in the order of lookupTiers: memory, hot copies, disk.
	// A tier's Get keeps nothing of the key; a ban may store under it
	// (unbanned), so the key is made a string of its own first.
	var src tier = h.store
	e := src.Get(key)
	if e != nil {
		key = x.ownKey(key)
		e = h.unbanned(src, key, e)
	}
	if e == nil {
		src = h.hot
		if e = src.Get(key); e != nil {
			key = x.ownKey(key)
			e = h.unbanned(src, key, e)
		}
	}
	if e == nil && h.disk != nil {
		src = h.disk
		if e = src.Get(key); e != nil {
			key = x.ownKey(key)
			e = h.unbanned(src, key, e)
		}
	}
	if fields, gen, ok := e.VaryIndex(); ok && st.coder != nil && varyOnCodingOnly(fields) {
		// One variant per coding (encoding.go): the client's.
		x.varBuf = appendCodingVariantKey(x.varBuf[:0], key, gen, st.coder.NegotiateBytes(acceptEncoding))
		if string(x.varBuf) != x.varKey {
			x.varKey = string(x.varBuf)
		}
		index := src
		e = h.unbanned(src, x.varKey, src.Get(x.varKey))
		if e == nil && h.disk != nil && index != tier(h.disk) {
			// The vary index is in memory; its variant may be on disk.
			e = h.unbanned(h.disk, x.varKey, h.disk.Get(x.varKey))
		}
	}
	if e == nil || !e.Sealed() || !bodyAllowed(e.Status()) {
		return false
	}
	now := h.now()
	age := e.CurrentAge(now)
	reqCC := policy.NoDirectives()
	if !e.Judge(age, &reqCC).Fresh {
		return false
	}
	if e.OnDisk() {
		// Streamed from its file (WriteBody). A body with no
		// Content-Type is sniffed from its first bytes, as net/http
		// does: ServeHTTP answers that rare case.
		if e.SniffsType() {
			return false
		}
		rd, err := h.openDiskBody(e)
		if err != nil {
			return false // ServeHTTP looks again, and says why
		}
		x.rd = rd
	}
	x.e, x.site, x.stamp, x.date, x.start = e, st, h.hitStampOf(e, age), h.dateOf(e), now
	return true
}

// ownKey returns key, lookupHit's, as a string that outlives the
// request: while x.borrowed, key is the bytes of x.keyBuf, which the
// next request overwrites; it is then copied once, kept as x.key for
// the requests that repeat it.
func (x *Hit) ownKey(key string) string {
	if !x.borrowed {
		return key
	}
	x.borrowed = false
	x.key = string(x.keyBuf)
	return x.key
}

// AppendHead appends to b the HTTP/1.1 status line and header fields of
// the answer, as net/http would write them for serveHit, without the
// blank line that ends the header (the front adds its own connection
// fields, then the blank line). dateLine gives a whole "Date: ...\r\n"
// line of now; it is called only for an entry stored without a Date.
func (x *Hit) AppendHead(b []byte, dateLine func() []byte) []byte {
	st := x.stamp
	b = appendStatusAndBlocks(b, x.e)
	b = append(b, "Content-Length: "...)
	b = append(b, st.ContentLength()...)
	b = append(b, "\r\nAge: "...)
	b = append(b, st.AgeValue()...)
	b = append(b, "\r\nCache-Status: "...)
	b = append(b, st.CacheStatus()...)
	b = append(b, "\r\n"...)
	return appendTypeAndDate(b, x.e, x.Body(), x.date, dateLine)
}

// appendStatusAndBlocks appends the HTTP/1.1 status line of a sealed
// entry's answer and its sealed blocks, which are in wire form already:
// the start of every answer written from an entry as it is stored (Hit,
// StoredAnswer).
func appendStatusAndBlocks(b []byte, e *store.Entry) []byte {
	status := e.Status()
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
	shared, own := e.Blocks()
	b = append(b, shared...)
	return append(b, own...)
}

// appendTypeAndDate appends the fields net/http adds to an answer written
// from a sealed entry: a Content-Type sniffed from body (the body sent:
// none for a HEAD) where net/http sniffs one (Entry.SniffsType), and the
// Date: date, the entry's own kept as a number (Handler.dateOf), or the
// front's now (dateLine) for an entry stored without one.
func appendTypeAndDate(b []byte, e *store.Entry, body []byte, date string, dateLine func() []byte) []byte {
	if e.SniffsType() && len(body) > 0 {
		// net/http sniffs a missing Content-Type from the body, unless
		// it is encoded.
		b = append(b, "Content-Type: "...)
		b = append(b, http.DetectContentType(body)...)
		b = append(b, "\r\n"...)
	}
	switch {
	case date != "":
		b = append(b, "Date: "...)
		b = append(b, date...)
		b = append(b, "\r\n"...)
	case !e.HasDate():
		b = append(b, dateLine()...)
	}
	return b
}

// Body is the body to send after the header: the stored body, shared (it
// must not be changed), or nil for a HEAD or a body on disk (BodyOnDisk).
func (x *Hit) Body() []byte {
	if x.req.Head {
		return nil
	}
	return x.e.Body()
}

// BodyOnDisk reports whether the body to send is on disk: the front
// then sends it with WriteBody instead of Body.
func (x *Hit) BodyOnDisk() bool { return x.rd != nil && !x.req.Head }

// BodySize is the length of the body to send: 0 for a HEAD.
func (x *Hit) BodySize() int64 {
	if x.req.Head {
		return 0
	}
	return x.e.BodySize()
}

// AppendBody appends a body on disk (BodyOnDisk) to b, read from its
// file: for a small body, so that it goes out in one write with the
// header.
func (x *Hit) AppendBody(b []byte) ([]byte, error) {
	if !x.BodyOnDisk() {
		return b, nil
	}
	n := int(x.e.BodySize())
	b = slices.Grow(b, n)
	m, err := x.rd.ReadAt(b[len(b):len(b)+n], 0)
	if m == n {
		err = nil // io.ReaderAt may say EOF with the last byte
	}
	return b[:len(b)+m], err
}

// WriteBody writes a body on disk (BodyOnDisk) to w: straight from the
// file with sendfile(2) when w is the client's socket (a *net.TCPConn),
// within its write deadline. It returns the bytes written; an error
// means the client has a short body and the connection must close.
func (x *Hit) WriteBody(w io.Writer) (int64, error) {
	if !x.BodyOnDisk() {
		return 0, nil
	}
	n, err := x.rd.WriteTo(w)
	if err == nil && n != x.e.BodySize() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Delivered books a hit that the front has written, bodyBytes of its
// body sent: the hit on its entry, the request and byte counters
// (cache_status hit, protocol http/1.1 or http/2), and the access log
// line when one is kept. It forgets the entry, so that x may be reused.
func (h *Handler) Delivered(x *Hit, bodyBytes int) {
	var line *accessLine
	proto, protoMajor := "HTTP/1.1", 1
	if x.req.HTTP2 {
		proto, protoMajor = "HTTP/2.0", 2
	}
	if h.accessLog != nil {
		method := "GET"
		if x.req.Head {
			method = "HEAD"
		}
		r := &x.req
		line = &accessLine{start: x.start, remote: addrString(r.Remote), client: h.hitClient(r), proto: proto,
			method: method, host: string(r.Host), uri: string(r.Target), status: x.e.Status(), bytes: int64(bodyBytes),
			cacheStatus: x.stamp.CacheStatus(), userAgent: string(r.UserAgent),
			referer: string(r.Referer), traceID: traceIDOfField(r.Traceparent)}
	}
	h.delivered(x.site.counters, x.e, classHit, protoMajor, bodyBytes, line)
	x.Release()
}

// Release forgets a hit that LookupHit found and the front did not
// write after all (HTTP/2: the body does not fit the flow-control
// windows), without booking it: the request then goes through
// ServeHTTP. Delivered releases what it books.
func (x *Hit) Release() {
	if x.rd != nil {
		x.rd.Close()
	}
	x.e, x.site, x.stamp, x.date, x.req, x.rd = nil, nil, nil, "", HitRequest{}, nil
}

// hitClient is the client of a hit request, as ClientAddr has it for
// ServeHTTP's.
func (h *Handler) hitClient(r *HitRequest) netip.Addr {
	a, ok := r.Remote.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	client := a.AddrPort().Addr().Unmap().WithZone("")
	if r.ForwardedFor == nil || !h.trustsPeer(r.Remote) {
		return client
	}
	return h.trusted.clientOf(client, []string{string(r.ForwardedFor)})
}

// delivered books one answered request, for every front and protocol:
// a fresh hit on its entry (e; nil when no entry answered), the request
// counter of its site (sc; see Handler.countersOf), class and protocol
// (protoMajor as http.Request has it), the body bytes sent, and, when
// line is not nil and an access log is kept, the access log line.
// Requests that ServeHTTP answers get their line from serveLogged.
func (h *Handler) delivered(sc *siteCounters, e *store.Entry, class, protoMajor, bodyBytes int, line *accessLine) {
	if e != nil && class == classHit {
		e.CountHit()
	}
	sc.request(protoMajor, class, bodyBytes)
	if line != nil && h.accessLog != nil {
		h.logLine(line)
	}
}
