package listen_test

import (
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/net/http2"
)

// The differential HTTP/2 harness's client script (see h2diff_test.go):
// a sequence of ops, each one or a few client frames. The table's named
// sequences are written as ops, and the fuzz target decodes its input
// into ops (decodeOps), so that every table sequence is also a seed
// (encodeOps) and every difference is reported as readable ops.

// h2op is one step of the client: kind says what, a and v are its
// arguments (their meaning is kind's, see the op constants).
type h2op struct {
	kind opKind
	a    byte
	v    uint32
}

type opKind byte

const (
	// opGet opens a stream with a complete request: a's low nibble is
	// the path (diffPaths), its high nibble the variant (diffVariants);
	// a /miss/ path is the run's own number v%4.
	opGet opKind = iota
	// opPost opens a stream with a POST to /post of v%maxPostBody bytes,
	// sent as the server's flow control allows; a&1 adds Expect:
	// 100-continue, a&2 declares a Content-Length one more than is
	// sent, a&4 one less, a&8 ends the request with trailers.
	opPost
	// opReset sends RST_STREAM with code v%16 on the stream a selects
	// (streamSel).
	opReset
	// opWindowUpdate sends WINDOW_UPDATE with increment v (as is: 0 and
	// values past 2^31-1 included) on the stream a selects.
	opWindowUpdate
	// opSettings sends SETTINGS with one parameter: id a%10 (0 and 7
	// are ids RFC 9113 does not define), value v.
	opSettings
	// opPing sends PING with payload v; a&1 sends it as an ACK (one the
	// server never asked for).
	opPing
	// opPriority sends PRIORITY on the stream a selects, depending on
	// stream v&0xff (v&0x100: exclusive).
	opPriority
	// opData sends DATA of v%1024 bytes, ignoring flow control, on the
	// stream a&0x7f selects; a&0x80 sets END_STREAM.
	opData
	// opContinuationFlood opens a stream with a GET /hit/small header
	// block that does not end, then v%2048 CONTINUATION frames; a&1:
	// empty ones, else each carries a 1 KiB field; a&2: the last ends
	// the block.
	opContinuationFlood
	// opBadRequest opens a stream with the malformed request a%len
	// (badRequests); v sizes those that are large.
	opBadRequest
	// opHeadersAt opens stream v&0xffff (as given: even, backwards, 0)
	// with the request opGet would send for a (and v>>16).
	opHeadersAt
	// opRapidReset sends v%256 pairs of HEADERS (GET /slow) and
	// RST_STREAM (CANCEL); over 40 (or 80 in the run), 250 of them.
	opRapidReset
	// opWait sends a PING and waits for its ACK and for every stream
	// the client opened (and did not reset) to end: a point after which
	// what the server does no longer depends on timing.
	opWait
	// opCredit sets the client's flow-control policy: a&1 grants no
	// more credit (a client that stops opening its window), else credit
	// is granted for every DATA frame as it arrives (the default).
	opCredit
	// opRawFrame sends a frame of type a with flags v>>24, on stream
	// (v>>16)&0xff, with a payload of v&0x7fff pattern bytes.
	opRawFrame
	// opPreface, as the first op, replaces the client's preface and
	// SETTINGS with prefaces[a%len]; later, it writes that preface's
	// bytes mid-connection.
	opPreface
	numOpKinds
)

const (
	opBytes     = 6  // an op's encoding: kind, a, v (big-endian)
	maxOps      = 48 // ops decoded from one fuzz input
	maxPostBody = 200 << 10
)

// encodeOps is the fuzz input that decodes into ops.
func encodeOps(ops []h2op) []byte {
	b := make([]byte, 0, len(ops)*opBytes)
	for _, o := range ops {
		b = append(b, byte(o.kind), o.a)
		b = binary.BigEndian.AppendUint32(b, o.v)
	}
	return b
}

// decodeOps reads ops from a fuzz input: opBytes each (a short last one
// padded with zeros), the kind modulo the number of kinds, at most
// maxOps.
func decodeOps(b []byte) []h2op {
	var ops []h2op
	for len(b) > 0 && len(ops) < maxOps {
		var c [opBytes]byte
		n := copy(c[:], b)
		b = b[n:]
		ops = append(ops, h2op{kind: opKind(c[0] % byte(numOpKinds)), a: c[1], v: binary.BigEndian.Uint32(c[2:])})
	}
	return ops
}

// Stream selectors (an op's a): which stream a frame goes to.
const (
	selLast   = 0   // the stream the client opened last (0 before any)
	selZero   = 1   // stream 0, the connection
	selIdle   = 2   // the next odd stream ID, taken so that no stream opens on it
	selEven   = 3   // the last stream + 1: an even, server-initiated ID
	selNumber = 4   // from here on, a selects the odd stream 2a-1 (to 507)
	selAll    = 255 // every stream the client opened and has not reset (opReset only)
)

func selString(a byte) string {
	switch a {
	case selLast:
		return "last"
	case selZero:
		return "0"
	case selIdle:
		return "idle"
	case selEven:
		return "even"
	case selAll:
		return "every open stream"
	}
	return fmt.Sprint(2*uint32(a) - 1)
}

// diffPath is a path the origin answers (see diffOrigin).
type diffPath struct {
	path string
	what string
}

// diffPaths are opGet's paths. The cacheable ones are stored before
// any sequence runs (warm), so that they are hits in every run, in
// whatever order runs come; a /miss/ path is made unique per run and op.
var diffPaths = [16]diffPath{
	{"/hit/small", "1 KiB hit"},
	{"/hit/large", "200 KiB hit"},
	{"/hit/vary", "hit that varies on Accept-Encoding"},
	{"/hit/204", "cached 204"},
	{"/nostore", "uncacheable (no-store)"},
	{"/cookie", "uncacheable (Set-Cookie)"},
	{"/miss/", "miss, then stored (one of the run's 4 own paths)"},
	{"/hints", "103 Early Hints, then 200"},
	{"/status/404", "cached 404"},
	{"/hit/etagless", "hit with Last-Modified only"},
	{"/slow", "origin answers only when the request ends"},
	{"/hit/redirect", "cached 301"},
	{"/hit/window", "64 KiB hit (one byte past the initial window)"},
	{"/hit/empty", "hit with an empty body"},
	{"/nostore/large", "100 KiB uncacheable"},
	{"/hit/small", "1 KiB hit"},
}

// diffVariants are opGet's request variants: fields added to a GET (or
// the method changed).
var diffVariants = [16]struct {
	name   string
	fields [][2]string // added after the pseudo-fields
}{
	{"GET", nil},
	{"HEAD", [][2]string{{":method", "HEAD"}}},
	{"If-None-Match match", [][2]string{{"if-none-match", `"v1"`}}},
	{"If-Modified-Since", [][2]string{{"if-modified-since", "Fri, 27 Nov 2026 12:00:00 GMT"}}},
	{"Range 0-99", [][2]string{{"range", "bytes=0-99"}}},
	{"Range unsatisfiable", [][2]string{{"range", "bytes=999999-"}}},
	{"Accept-Encoding gzip", [][2]string{{"accept-encoding", "gzip"}}},
	{"If-None-Match other", [][2]string{{"if-none-match", `"other"`}}},
	{"Range two parts", [][2]string{{"range", "bytes=0-1,5-6"}}},
	{"Authorization", [][2]string{{"authorization", "Bearer x"}}},
	{"cookie crumbs", [][2]string{{"cookie", "a=1"}, {"cookie", "b=2"}}},
	{"te: trailers", [][2]string{{"te", "trailers"}}},
	{"Cache-Control no-cache", [][2]string{{"cache-control", "no-cache"}}},
	{":authority with port", [][2]string{{":authority", testHost + ":443"}}},
	{"host instead of :authority", [][2]string{{":authority", ""}, {"host", testHost}}},
	{"END_STREAM on an empty DATA", nil},
}

// variantSplitEnd is the variant whose request ends with an empty DATA
// frame instead of END_STREAM on its HEADERS.
const variantSplitEnd = 15

// badPath is the target of opBadRequest's requests: a stored object
// that only they ask for. Some of them reach the origin with an unsafe
// method ("get", OPTIONS), which invalidates what is stored for their
// target (RFC 9111 §4.4): the other paths stay hits, and badPath is
// stored again before the next run (diffPair.run).
const badPath = "/hit/bad"

// badRequests are opBadRequest's malformed (or merely unusual) requests,
// each the fields of a GET of badPath changed by fn; size is the op's v.
var badRequests = []struct {
	name string
	fn   func(f [][2]string, size int) [][2]string
}{
	{"uppercase field name", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"X-Upper", "1"}) }},
	{"connection: keep-alive", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"connection", "keep-alive"}) }},
	{"te: gzip", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"te", "gzip"}) }},
	{"no :path", func(f [][2]string, _ int) [][2]string { return without(f, ":path") }},
	{"no :method", func(f [][2]string, _ int) [][2]string { return without(f, ":method") }},
	{"CONNECT", func(f [][2]string, _ int) [][2]string {
		return [][2]string{{":method", "CONNECT"}, {":authority", testHost + ":443"}}
	}},
	{"CONNECT with :path", func(f [][2]string, _ int) [][2]string { return set(f, ":method", "CONNECT") }},
	{"pseudo-field after a field", func(f [][2]string, _ int) [][2]string {
		return append(without(f, ":path"), [2]string{"accept", "*/*"}, [2]string{":path", badPath})
	}},
	{"two :path", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{":path", "/nostore"}) }},
	{"unknown pseudo-field", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{":foo", "bar"}) }},
	{"CR LF in a value", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"x-split", "a\r\nx-injected: 1"}) }},
	{"oversized header list", func(f [][2]string, size int) [][2]string {
		return append(f, [2]string{"x-big", strings.Repeat("b", 60<<10+size%(200<<10))})
	}},
	{"empty :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "") }},
	{":path *", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "*") }},
	{":scheme http", func(f [][2]string, _ int) [][2]string { return set(f, ":scheme", "http") }},
	{"content-length 5 without a body", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"content-length", "5"}) }},
	{"upgrade: h2c", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"upgrade", "h2c"}) }},
	{"keep-alive field", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"keep-alive", "timeout=5"}) }},
	{"transfer-encoding: chunked", func(f [][2]string, _ int) [][2]string {
		return append(f, [2]string{"transfer-encoding", "chunked"})
	}},
	{"extended CONNECT websocket", func(f [][2]string, _ int) [][2]string {
		return append(set(f, ":method", "CONNECT"), [2]string{":protocol", "websocket"})
	}},
	{"host differs from :authority", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"host", "other.test"}) }},
	{"space in a field name", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"bad name", "1"}) }},
	{"lowercase :method", func(f [][2]string, _ int) [][2]string { return set(f, ":method", "get") }},
	{"many fields", func(f [][2]string, size int) [][2]string {
		for i := range size % 4000 {
			f = append(f, [2]string{"x-n", fmt.Sprint(i)})
		}
		return f
	}},
	{":path without a slash", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath[1:]) }},
	{"absolute :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "https://"+testHost+badPath) }},
	{"empty field name", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"", "1"}) }},
	{"unknown :authority", func(f [][2]string, _ int) [][2]string { return set(f, ":authority", "unknown.test") }},
	{"NUL in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath+"\x00") }},
	{"empty :authority", func(f [][2]string, _ int) [][2]string { return set(f, ":authority", "") }},
	{"proxy-connection", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"proxy-connection", "keep-alive"}) }},
	{"OPTIONS *", func(f [][2]string, _ int) [][2]string { return set(set(f, ":path", "*"), ":method", "OPTIONS") }},
	// Unusual but valid requests of a stored object: the lean front
	// reads them itself (or declines), x/net's server and edge's
	// ServeHTTP parse them their way.
	{"uppercase :authority", func(f [][2]string, _ int) [][2]string { return set(f, ":authority", strings.ToUpper(testHost)) }},
	{":authority with a trailing dot", func(f [][2]string, _ int) [][2]string { return set(f, ":authority", testHost+".") }},
	{":authority with userinfo", func(f [][2]string, _ int) [][2]string { return set(f, ":authority", "user@"+testHost) }},
	{"percent-encoded :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "/hit/%62ad") }},
	{"dot segments in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "/hit/../hit/bad") }},
	{"double slash in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "/"+badPath) }},
	{"empty query on :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath+"?") }},
	{"fragment in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath+"#frag") }},
	{"x-forwarded-proto http", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"x-forwarded-proto", "http"}) }},
	{"two accept-encoding fields", func(f [][2]string, _ int) [][2]string {
		return append(f, [2]string{"accept-encoding", "gzip"}, [2]string{"accept-encoding", "br"})
	}},
	{"x-forwarded-for", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"x-forwarded-for", "192.0.2.1"}) }},
	{"pragma: no-cache", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"pragma", "no-cache"}) }},
	{"max-forwards: 0", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"max-forwards", "0"}) }},
	{"cache-control: only-if-cached", func(f [][2]string, _ int) [][2]string {
		return append(f, [2]string{"cache-control", "only-if-cached"})
	}},
	{"tab in a value", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"user-agent", "a\tb"}) }},
	{"value with trailing space", func(f [][2]string, _ int) [][2]string { return append(f, [2]string{"user-agent", "ab "}) }},
	{"DEL in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath+"\x7f") }},
	{"space in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", "/hit/ bad") }},
	{"8-bit byte in :path", func(f [][2]string, _ int) [][2]string { return set(f, ":path", badPath+"\xe9") }},
}

func without(f [][2]string, name string) [][2]string {
	var out [][2]string
	for _, kv := range f {
		if kv[0] != name {
			out = append(out, kv)
		}
	}
	return out
}

func set(f [][2]string, name, value string) [][2]string {
	out := append([][2]string(nil), f...)
	for i := range out {
		if out[i][0] == name {
			out[i][1] = value
		}
	}
	return out
}

// prefaces are opPreface's openings of a connection.
var prefaces = []string{
	"preface and SETTINGS",
	"garbage preface (an HTTP/1.1 request)",
	"SETTINGS before the preface",
	"preface, then HEADERS before SETTINGS",
	"preface, then a SETTINGS ACK first",
}

func (o h2op) String() string {
	switch o.kind {
	case opGet:
		return fmt.Sprintf("GET %s [%s]", diffPaths[o.a&15].path, diffVariants[o.a>>4].name)
	case opPost:
		s := fmt.Sprintf("POST /post, %d bytes", o.v%maxPostBody)
		if o.a&1 != 0 {
			s += ", Expect: 100-continue"
		}
		switch {
		case o.a&2 != 0:
			s += ", Content-Length one more"
		case o.a&4 != 0 && o.v%maxPostBody > 0:
			s += ", Content-Length one less"
		}
		if o.a&8 != 0 {
			s += ", with trailers"
		}
		return s
	case opReset:
		return fmt.Sprintf("RST_STREAM(%s, %v)", selString(o.a), http2.ErrCode(o.v%16))
	case opWindowUpdate:
		return fmt.Sprintf("WINDOW_UPDATE(%s, +%d)", selString(o.a), o.v)
	case opSettings:
		return fmt.Sprintf("SETTINGS(%v=%d)", http2.SettingID(o.a%10), o.v)
	case opPing:
		if o.a&1 != 0 {
			return fmt.Sprintf("PING ACK(%d) unasked", o.v)
		}
		return fmt.Sprintf("PING(%d)", o.v)
	case opPriority:
		return fmt.Sprintf("PRIORITY(%s, on %d, exclusive %v)", selString(o.a), o.v&0xff, o.v&0x100 != 0)
	case opData:
		return fmt.Sprintf("DATA(%s, %d bytes, END_STREAM %v)", selString(o.a&0x7f), o.v%1024, o.a&0x80 != 0)
	case opContinuationFlood:
		return fmt.Sprintf("HEADERS without END_HEADERS + %d CONTINUATION (empty %v, last ends %v)", o.v%2048, o.a&1 != 0, o.a&2 != 0)
	case opBadRequest:
		return "malformed request: " + badRequests[int(o.a)%len(badRequests)].name + fmt.Sprintf(" (size %d)", o.v)
	case opHeadersAt:
		return fmt.Sprintf("GET %s [%s] on stream %d", diffPaths[o.a&15].path, diffVariants[o.a>>4].name, o.v&0xffff)
	case opRapidReset:
		n := o.v % 256
		if n > 40 {
			n = 250
		}
		return fmt.Sprintf("%d × (HEADERS GET /slow + RST_STREAM CANCEL)", n)
	case opWait:
		return "wait (PING barrier, every stream ended)"
	case opCredit:
		if o.a&1 != 0 {
			return "client stops granting flow-control credit"
		}
		return "client grants flow-control credit"
	case opRawFrame:
		return fmt.Sprintf("raw frame type %#x flags %#x stream %d, %d bytes", o.a, o.v>>24, (o.v>>16)&0xff, o.v&0x7fff)
	case opPreface:
		return prefaces[int(o.a)%len(prefaces)]
	}
	return fmt.Sprintf("op %d", o.kind)
}

// opsString lists ops one per line, numbered, for reports.
func opsString(ops []h2op) string {
	var b strings.Builder
	for i, o := range ops {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, o)
	}
	return b.String()
}

// Helpers that write the table's sequences.
func get(path, variant int) h2op              { return h2op{kind: opGet, a: byte(variant<<4 | path)} }
func opOf(kind opKind, a byte, v uint32) h2op { return h2op{kind: kind, a: a, v: v} }
func bad(name string, size uint32) h2op {
	for i, b := range badRequests {
		if b.name == name {
			return h2op{kind: opBadRequest, a: byte(i), v: size}
		}
	}
	panic("no bad request " + name)
}
func repeat(n int, ops ...h2op) []h2op {
	var out []h2op
	for range n {
		out = append(out, ops...)
	}
	return out
}
