package store

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unique"
	"unsafe"

	"github.com/meridiancdn/meridian/edge/policy"
)

// A sealed entry keeps its header fields as a client gets them on a hit,
// in HTTP/1.1 wire form ("Name: value\r\n" per value), in two blocks:
//
//   - the shared block holds the fields whose values most objects of a
//     site have in common (Content-Type, Cache-Control, Via...), interned
//     with package unique, so that every entry with the same ones points
//     at one copy;
//   - the own block holds the rest (Date, ETag, Last-Modified...), after
//     the store key in the entry's meta string.
//
// The fast front writes both blocks as they are; other paths read them
// line by line. Fields a hit computes (Age, Cache-Status, Content-Length)
// are in neither.

// sharedField reports whether a field goes to the shared block. (A
// switch, where a map lookup hashed the name: it runs for every field of
// every fill, twice.)
func sharedField(name string) bool {
	switch name {
	case "Accept-Ranges", "Access-Control-Allow-Credentials",
		"Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
		"Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Alt-Svc", "Cache-Control",
		"Cdn-Cache-Control", "Content-Encoding", "Content-Language",
		"Content-Security-Policy", "Content-Type",
		"Cross-Origin-Embedder-Policy", "Cross-Origin-Opener-Policy",
		"Cross-Origin-Resource-Policy", "Permissions-Policy",
		"Referrer-Policy", "Server", "Strict-Transport-Security",
		"Surrogate-Control", "Timing-Allow-Origin", "Vary", "Via",
		"X-Content-Type-Options", "X-Frame-Options", "X-Xss-Protection":
		return true
	}
	return false
}

// computedField reports whether a field is never stored in a block: a
// hit writes its own.
func computedField(name string) bool {
	switch name {
	case "Age", "Cache-Status", "Content-Length", "Surrogate-Key":
		return true
	}
	return false
}

// fieldBlocks renders base as a sealed entry keeps it: with via appended
// to its Via field and, when acceptRanges, "Accept-Ranges: bytes" in
// place of its own; in wire form, split into the shared and own blocks;
// names sorted, so that equal field sets give equal blocks. CR and LF in
// values become spaces, as net/http writes them. Computed fields, and
// Date when skipDate, are left out. The shared block is appended to dst;
// own is prefix followed by the own block, in one allocation. base is not
// modified: it may be read concurrently.
func fieldBlocks(dst []byte, base http.Header, via string, acceptRanges, skipDate bool, prefix string) (shared []byte, own string) {
	// The fields to write, with their values, found in one pass over
	// base: no lookup by name after it.
	var fieldBuf [32]blockField // most responses have fewer fields: no allocation
	fields := fieldBuf[:0]
	for name, vs := range base {
		if computedField(name) || skipDate && name == "Date" || name == "Via" || acceptRanges && name == "Accept-Ranges" {
			continue
		}
		fields = append(fields, blockField{name: name, values: vs, shared: sharedField(name)})
	}
	fields = append(fields, blockField{name: "Via", values: base["Via"], extra: via, shared: true})
	if acceptRanges {
		fields = append(fields, blockField{name: "Accept-Ranges", extra: "bytes", shared: true})
	}
	slices.SortFunc(fields, func(a, b blockField) int { return strings.Compare(a.name, b.name) })
	ownSize := 0
	for i := range fields {
		if f := &fields[i]; !f.shared {
			for _, v := range f.values {
				ownSize += len(f.name) + len(v) + 4
			}
			if f.extra != "" {
				ownSize += len(f.name) + len(f.extra) + 4
			}
		}
	}
	ob := make([]byte, len(prefix), len(prefix)+ownSize)
	copy(ob, prefix)
	for i := range fields {
		if f := &fields[i]; f.shared {
			dst = f.appendLines(dst)
		} else {
			ob = f.appendLines(ob)
		}
	}
	return dst, unsafe.String(unsafe.SliceData(ob), len(ob)) // ob is not written again
}

// blockField is a field fieldBlocks writes: its values, then extra (this
// cache's own, when not ""), in the shared block or the own one.
type blockField struct {
	name   string
	values []string
	extra  string
	shared bool
}

// appendLines appends the field's lines to b.
func (f *blockField) appendLines(b []byte) []byte {
	for _, v := range f.values {
		b = appendFieldLine(b, f.name, v)
	}
	if f.extra != "" {
		b = appendFieldLine(b, f.name, f.extra)
	}
	return b
}

func appendFieldLine(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	start := len(b)
	b = append(b, value...)
	if strings.IndexByte(value, '\r') >= 0 || strings.IndexByte(value, '\n') >= 0 {
		for i := start; i < len(b); i++ {
			if b[i] == '\r' || b[i] == '\n' {
				b[i] = ' '
			}
		}
	}
	return append(b, "\r\n"...)
}

// eachLine calls fn with the name and value of every line of a block.
func eachLine(block string, fn func(name, value string)) {
	for block != "" {
		line, rest, _ := strings.Cut(block, "\r\n")
		block = rest
		name, value, _ := strings.Cut(line, ": ")
		fn(name, value)
	}
}

// lineValue returns the value of the first line of block named name.
func lineValue(block, name string) (string, bool) {
	for block != "" {
		line, rest, _ := strings.Cut(block, "\r\n")
		block = rest
		if len(line) > len(name)+1 && line[len(name)] == ':' && line[:len(name)] == name {
			return line[len(name)+2:], true
		}
	}
	return "", false
}

// Seal puts a complete entry's fields in their stored form, under store
// key key. base is its header as the origin sent it (see BaseHeader); the
// blocks get via, this cache's Via entry, and, for a 200, Accept-Ranges;
// the surrogate keys and an upstream Cache-Status are kept apart. base
// itself is not changed (waiters may be reading it). A sealed entry no
// longer holds the header it was filled with.
func (e *Entry) Seal(key string, base http.Header, via string) {
	e.flags &^= flagHasDate | flagTyped | flagDateCompact
	if _, ok := base["Date"]; ok {
		e.flags |= flagHasDate
	}
	skipDate := false
	if off, ok := dateOffset(base["Date"], e.respTime); ok {
		// An IMF-fixdate is 37 bytes in a block and 4 as a number.
		skipDate = true
		e.dateOffset = off
		e.flags |= flagDateCompact
	}
	_, typed := base["Content-Type"]
	typed = typed || base.Get("Content-Encoding") != "" // as net/http reads it
	var scratch [512]byte
	shared, meta := fieldBlocks(scratch[:0], base, via, e.status == http.StatusOK, skipDate, key)
	e.meta = meta
	e.keyLen = uint32(len(key))
	// (unique.Make keeps a copy of a block it has not seen: scratch
	// is not kept.)
	e.shared = unique.Make(unsafe.String(unsafe.SliceData(shared), len(shared)))
	if typed {
		e.flags |= flagTyped
	}
	var x extra
	if e.extra != nil {
		x.vary, x.gen = e.extra.vary, e.extra.gen
	}
	// The tags and Cache-Status are copied: base's values may be parts
	// of a larger string (the origin's whole head, as package origin's
	// lean reader makes them), which the entry would keep for its life.
	if sk := base.Get("Surrogate-Key"); sk != "" {
		x.tags = strings.Fields(strings.Clone(sk))
	}
	x.cacheStatus = strings.Clone(base.Get("Cache-Status"))
	e.extra = nil
	if x.vary != nil || x.tags != nil || x.cacheStatus != "" {
		e.extra = new(extra) // (x itself stays on the stack)
		*e.extra = x
	}
}

// dateOffset returns the Date field to store, as seconds after respTime's
// second. A valid IMF-fixdate is kept as the time it names; an invalid
// HTTP-date (policy.ParseHTTPDate; several lines must agree) is replaced
// by the response time, as RFC 9110 §6.6.1 allows: it is the time the
// entry's age was computed from (RFC 9111 §4.2.3). ok=false, keep the
// field as it came, when there is none, it is a valid date in an obsolete
// format, or the offset does not fit.
func dateOffset(vs []string, respTime int64) (int32, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	v := strings.Trim(vs[0], " \t")
	t, ok := policy.ParseHTTPDate(v, time.Unix(0, respTime))
	for _, o := range vs[1:] {
		ok = ok && o == vs[0]
	}
	switch {
	case !ok:
		return 0, true
	case len(v) != len(http.TimeFormat) || v[3] != ',': // rfc850-date, asctime-date
		return 0, false
	}
	off := t.Unix() - respTime/int64(time.Second)
	if off < math.MinInt32 || off > math.MaxInt32 {
		return 0, false
	}
	return int32(off), true
}

// FieldCount is the number of field lines of a sealed entry (see
// EachField).
func (e *Entry) FieldCount() int {
	n := strings.Count(e.shared.Value(), "\r\n") + strings.Count(e.own(), "\r\n")
	if e.flags&flagDateCompact != 0 {
		n++
	}
	return n
}

// WriteFields puts a sealed entry's fields in wh as a client gets them,
// with Content-Length when its status has a body. The values share one
// allocation. A hit's stamp, when given, supplies the computed ones
// (Content-Length, Age and Cache-Status); nil computes Content-Length and
// leaves Age and Cache-Status out.
func (e *Entry) WriteFields(wh http.Header, st *Stamp) { e.WriteHitFields(wh, st, "") }

// WriteHitFields is WriteFields with the Date kept as a number already
// formatted by the caller (date, as CompactDate would give it; "" formats
// it here), so that a hit need not allocate it.
func (e *Entry) WriteHitFields(wh http.Header, st *Stamp, date string) {
	n := e.FieldCount()
	hasBody := bodyAllowed(int(e.status))
	if hasBody {
		n++
	}
	if st != nil {
		n += 2
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
		if date == "" {
			date, _ = e.CompactDate()
		}
		add("Date", date)
	}
	if hasBody {
		cl := ""
		if st != nil {
			cl = st.ContentLength()
		} else {
			cl = strconv.Itoa(len(e.body))
		}
		add("Content-Length", cl)
	}
	if st != nil {
		add("Age", st.AgeValue())
		add("Cache-Status", st.CacheStatus())
	}
}

// HitHeader is a fresh hit's header fields in the form http.Header holds
// them, made once from an entry, its hit stamp and its Date (NewHitHeader)
// and written into the header of every response that serves that hit
// (WriteTo): a hit through net/http, HTTP/2 or HTTP/3 then neither parses
// the entry's blocks nor allocates its values. The responses share the
// header's value slices, each bounded by its capacity: a writer that
// changes a field replaces its slice (Set, delete, an append, which
// copies), never writes into it, as net/http, its HTTP/2 server (which
// clones the header), quic-go's HTTP/3 server and the response header
// rules do.
type HitHeader struct {
	// meta, shared, status and date say which entry's fields these are
	// (Of); meta is compared by address, so that holding it here keeps the
	// identity sound (its bytes cannot be reused while it is held).
	meta   string
	shared unique.Handle[string]
	status uint16
	date   string
	fields []hitField
}

type hitField struct {
	name string
	vals []string
}

// NewHitHeader makes the header of a fresh hit on a sealed entry e with
// stamp st and Date date (as for WriteHitFields).
func (e *Entry) NewHitHeader(st *Stamp, date string) *HitHeader {
	wh := make(http.Header, e.FieldCount()+3)
	e.WriteHitFields(wh, st, date)
	hh := &HitHeader{meta: e.meta, shared: e.shared, status: e.status, date: date,
		fields: make([]hitField, 0, len(wh))}
	for name, vals := range wh {
		hh.fields = append(hh.fields, hitField{name, vals})
	}
	return hh
}

// Of reports whether hh holds the fields of entry e with Date date: e is
// the entry it was made from, or a copy of it with the same status.
// The stamp's part (Age, Content-Length, Cache-Status) is the caller's to
// match.
func (hh *HitHeader) Of(e *Entry, date string) bool {
	return len(hh.meta) == len(e.meta) && unsafe.StringData(hh.meta) == unsafe.StringData(e.meta) &&
		hh.shared == e.shared && hh.status == e.status && hh.date == date
}

// WriteTo puts the fields in wh, as WriteHitFields would.
func (hh *HitHeader) WriteTo(wh http.Header) {
	for i := range hh.fields {
		f := &hh.fields[i]
		wh[f.name] = f.vals
	}
}

// bodyAllowed reports whether a response of status has a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
