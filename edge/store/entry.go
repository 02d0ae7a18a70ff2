package store

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unique"

	"github.com/meridiancdn/meridian/edge/policy"
)

// Entry is one stored response, immutable once sealed and stored: a
// refresh stores a new entry (see Clone). A vary index (NewVaryIndex)
// stands at a primary key whose responses vary; the variants live under
// keys of their own.
//
// An entry is laid out to cost little beyond its body (about 128 bytes
// here, plus its own header block and a map slot): freshness in seconds,
// times as integers, header fields as wire-form blocks, and whatever most
// entries lack behind one pointer. See the package doc.
type Entry struct {
	prev, next *Entry // the store's recency list, under its lock
	data
	// hits counts the hits served from this entry, for the status page's
	// top objects.
	hits atomic.Uint32
	// hash is the store's hash of the key, set when it is stored and
	// kept for its removal (which then need not read the key).
	hash uint64
	// protected says the entry is in the store's protected segment (it
	// was asked for again after it was stored); under the store's lock.
	protected bool
}

// data is everything of an entry but its store links and hit state.
type data struct {
	// meta is the store key followed by the own fields block (see Seal).
	meta string
	body []byte
	// shared is the interned block of fields that many entries have in
	// common; the zero handle until the entry is sealed.
	shared unique.Handle[string]
	extra  *extra
	// respTime is when the response was received, in Unix nanoseconds
	// (§4.2.3 response_time).
	respTime int64
	// initialAge is corrected_initial_age (§4.2.3).
	initialAge time.Duration
	// lifetime, swr and sie are the freshness lifetime and the
	// stale-while-revalidate and stale-if-error windows, in seconds
	// (RFC 9111 counts in delta-seconds, at most 2^31).
	lifetime, swr, sie int32
	keyLen             uint32
	// dateOffset is, with flagDateCompact, the Date field's time in
	// seconds after respTime's second.
	dateOffset int32
	status     uint16
	flags      flags
}

// flags are an entry's yes-or-no facts.
type flags uint8

const (
	flagStore            flags = 1 << iota // policy.Policy.Store
	flagHeuristic                          // policy.Policy.Heuristic
	flagNoStale                            // policy.Policy.NoStale
	flagAlwaysRevalidate                   // policy.Policy.AlwaysRevalidate
	flagImmutable                          // policy.Policy.Immutable
	flagHasDate                            // the response has a Date field
	// flagTyped: the blocks hold a Content-Type, or a non-empty
	// Content-Encoding, so that net/http would not sniff a type from the
	// body (golang.org/issue/31753). (Records written before it counted
	// the Content-Encoding have the flag for a Content-Type alone.)
	flagTyped
	// flagDateCompact: the Date field is not in a block but in
	// dateOffset, as it was an IMF-fixdate that formats back the same.
	flagDateCompact
)

// extra holds what most stored entries do not have.
type extra struct {
	// header is, while the entry is being filled, its fields as the origin
	// sent them; stored entries have none.
	header http.Header
	// vary and gen make a vary index: the Vary field names, and the
	// generation that is part of its variants' keys.
	vary []string
	gen  uint64
	// tags are the surrogate keys (Surrogate-Key), for purge by tag.
	tags []string
	// cacheStatus is the upstream's Cache-Status field, which this
	// cache's entry is appended to.
	cacheStatus string
	// disk is where the body of an entry of the disk tier is.
	disk *diskRef
}

// NewFilling is an entry for a response being filled: its status, its
// fields as the origin sent them (kept, not copied, until Seal), its
// reuse policy, and when it arrived. Its body is set with SetBody.
//
// The entry and its extra (which holds hdr) are one allocation, so the
// entry is not to be stored itself: what is stored is a sealed Clone,
// which lets go of it (Seal drops the filling extra), so that a stored
// entry does not keep a filling one's memory.
func NewFilling(status int, hdr http.Header, pol policy.Policy, respTime time.Time) *Entry {
	f := &filling{x: extra{header: hdr}}
	f.e.data = data{status: uint16(status), respTime: respTime.UnixNano(), extra: &f.x}
	f.e.setPolicy(pol)
	return &f.e
}

// filling is an entry being filled and its extra, in one allocation (see
// NewFilling).
type filling struct {
	e Entry
	x extra
}

// NewVaryIndex is a vary index stored at the primary key key, for the
// Vary field names fields; gen is the generation that the keys of its
// variants carry.
func NewVaryIndex(key string, fields []string, gen uint64) *Entry {
	return &Entry{data: data{meta: key, keyLen: uint32(len(key)), extra: &extra{vary: ownCopy(fields), gen: gen}}}
}

// ownCopy copies ss into strings of its own (one allocation for all of
// them): a Vary field's names may be parts of a larger string (the
// origin's whole head, as package origin's lean reader makes them), which
// a stored entry would otherwise keep for its life.
func ownCopy(ss []string) []string {
	all := strings.Join(ss, "")
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i], all = all[:len(s)], all[len(s):]
	}
	return out
}

// setPolicy records the parts of pol that reuse needs.
func (e *Entry) setPolicy(pol policy.Policy) {
	e.initialAge = pol.InitialAge
	e.lifetime, e.swr, e.sie = seconds(pol.Lifetime), seconds(pol.StaleWhileRevalidate), seconds(pol.StaleIfError)
	e.flags &^= flagStore | flagHeuristic | flagNoStale | flagAlwaysRevalidate | flagImmutable
	for _, f := range []struct {
		on   bool
		flag flags
	}{{pol.Store, flagStore}, {pol.Heuristic, flagHeuristic}, {pol.NoStale, flagNoStale}, {pol.AlwaysRevalidate, flagAlwaysRevalidate}, {pol.Immutable, flagImmutable}} {
		if f.on {
			e.flags |= f.flag
		}
	}
}

// seconds is d in whole seconds, rounded down and capped to int32: a
// lifetime cut short by under a second errs on the side of freshness
// checks, never of serving stale.
func seconds(d time.Duration) int32 {
	s := d / time.Second
	switch {
	case s < 0:
		return 0
	case s > math.MaxInt32:
		return math.MaxInt32
	}
	return int32(s)
}

// Policy is the entry's reuse policy as it was recorded: durations in
// whole seconds, StripFields and Reason not kept.
func (e *Entry) Policy() policy.Policy {
	return policy.Policy{
		Store:                e.flags&flagStore != 0,
		Lifetime:             time.Duration(e.lifetime) * time.Second,
		Heuristic:            e.flags&flagHeuristic != 0,
		StaleWhileRevalidate: time.Duration(e.swr) * time.Second,
		StaleIfError:         time.Duration(e.sie) * time.Second,
		NoStale:              e.flags&flagNoStale != 0,
		AlwaysRevalidate:     e.flags&flagAlwaysRevalidate != 0,
		Immutable:            e.flags&flagImmutable != 0,
		InitialAge:           e.initialAge,
	}
}

// CurrentAge is the entry's age at now (RFC 9111 §4.2.3).
func (e *Entry) CurrentAge(now time.Time) time.Duration {
	p := e.Policy()
	return p.CurrentAge(e.ResponseTime(), now)
}

// Judge says how the entry may be reused at age, given the request's
// directives (nil: none).
func (e *Entry) Judge(age time.Duration, req *policy.Directives) policy.Verdict {
	p := e.Policy()
	return p.Judge(age, req)
}

// UsableDisconnected reports whether the entry may be served at age by a
// cache that cannot reach the origin (RFC 9111 §4.2.4), at most window
// past its freshness: never when the origin forbade stale use
// (must-revalidate, proxy-revalidate, no-cache, s-maxage).
func (e *Entry) UsableDisconnected(age, window time.Duration) bool {
	if e.flags&(flagNoStale|flagAlwaysRevalidate) != 0 || window <= 0 {
		return false
	}
	return age-time.Duration(e.lifetime)*time.Second < window
}

// Storable reports the policy's Store.
func (e *Entry) Storable() bool { return e.flags&flagStore != 0 }

// TTL is the freshness left when the entry arrived.
func (e *Entry) TTL() time.Duration {
	return time.Duration(e.lifetime)*time.Second - e.initialAge
}

// Lifetime is the freshness lifetime, in whole seconds.
func (e *Entry) Lifetime() time.Duration { return time.Duration(e.lifetime) * time.Second }

// InitialAge is the entry's age when it arrived (corrected_initial_age,
// RFC 9111 §4.2.3).
func (e *Entry) InitialAge() time.Duration { return e.initialAge }

// SetLifetime changes the freshness lifetime (rounded down to whole
// seconds). Only for an entry not stored yet: a stored one is replaced
// by a changed Clone.
func (e *Entry) SetLifetime(d time.Duration) { e.lifetime = seconds(d) }

// ResponseTime is when the response was received.
func (e *Entry) ResponseTime() time.Time { return time.Unix(0, e.respTime) }

// Status is the response's status code.
func (e *Entry) Status() int { return int(e.status) }

// Body is the stored body, shared by every reader: it must not be
// changed.
func (e *Entry) Body() []byte { return e.body }

// SetBody sets the body of an entry not stored yet.
func (e *Entry) SetBody(b []byte) { e.body = b }

// OnDisk reports whether the entry's body is on disk (an entry of the
// disk tier): Body is then nil, and the body is read with OpenBody.
func (e *Entry) OnDisk() bool { return e.body == nil && e.extra != nil && e.extra.disk != nil }

// BodySize is the body's length, in memory or on disk.
func (e *Entry) BodySize() int64 {
	if e.OnDisk() {
		return e.extra.disk.size
	}
	return int64(len(e.body))
}

// OpenBody returns a reader of the body of an entry on disk, to be
// closed when done (the disk tier keeps the file open until then). It
// fails for an entry not on disk, or when the disk tier has dropped the
// body since the entry was looked up: look the key up again.
func (e *Entry) OpenBody() (*BodyReader, error) {
	if !e.OnDisk() {
		return nil, errNotOnDisk
	}
	return e.extra.disk.open()
}

// Key is the store key of a sealed entry or vary index.
func (e *Entry) Key() string { return e.meta[:e.keyLen] }

// own is the sealed entry's own fields block.
func (e *Entry) own() string { return e.meta[e.keyLen:] }

// Blocks returns a sealed entry's header fields in HTTP/1.1 wire form
// ("Name: value\r\n" per value): the shared block, then the entry's own.
// Together they hold every stored field but a Date kept as a number
// (CompactDate) and the fields a hit computes (Age, Cache-Status,
// Content-Length); they hold this cache's Via entry, and Accept-Ranges
// for a 200.
func (e *Entry) Blocks() (shared, own string) { return e.shared.Value(), e.meta[e.keyLen:] }

// Sealed reports whether the entry's fields are in their stored form.
func (e *Entry) Sealed() bool { return e.shared != unique.Handle[string]{} }

// HasDate reports whether the sealed response has a Date field, in a
// block or kept as a number.
func (e *Entry) HasDate() bool { return e.flags&flagHasDate != 0 }

// SniffsType reports whether a client gets a Content-Type sniffed from
// the body (http.DetectContentType) with the sealed fields, as net/http
// adds one: when they hold neither a Content-Type nor a non-empty
// Content-Encoding.
func (e *Entry) SniffsType() bool { return e.flags&flagTyped == 0 }

// Filling returns the fields of an entry being filled (as the origin
// sent them), or nil for a sealed one.
func (e *Entry) Filling() http.Header {
	if e.extra == nil {
		return nil
	}
	return e.extra.header
}

// VaryIndex returns a vary index's field names and generation; ok is
// false for any other entry, or nil.
func (e *Entry) VaryIndex() (fields []string, gen uint64, ok bool) {
	if e == nil || e.extra == nil || e.extra.vary == nil {
		return nil, 0, false
	}
	return e.extra.vary, e.extra.gen, true
}

// IsVaryIndex reports whether the entry is a vary index.
func (e *Entry) IsVaryIndex() bool { return e.extra != nil && e.extra.vary != nil }

// Tags returns a sealed entry's surrogate keys.
func (e *Entry) Tags() []string {
	if e.extra == nil {
		return nil
	}
	return e.extra.tags
}

// BaseHeader is the entry's header as the origin sent it (hop-by-hop and
// stripped fields removed): the header of an entry being filled, or, once
// sealed, a new map of its fields without this cache's Via entry and with
// its surrogate keys and upstream Cache-Status back.
func (e *Entry) BaseHeader() http.Header {
	if hdr := e.Filling(); hdr != nil || !e.Sealed() {
		return hdr
	}
	h := http.Header{}
	e.EachField(func(name, value string) {
		h[name] = append(h[name], value)
	})
	if v := h["Via"]; len(v) > 1 {
		h["Via"] = v[:len(v)-1]
	} else {
		delete(h, "Via")
	}
	if e.extra != nil {
		if len(e.extra.tags) > 0 {
			h["Surrogate-Key"] = []string{strings.Join(e.extra.tags, " ")}
		}
		if e.extra.cacheStatus != "" {
			h["Cache-Status"] = []string{e.extra.cacheStatus}
		}
	}
	return h
}

// EachField calls fn with every field line of a sealed entry as a client
// gets it (the blocks, then a Date kept as a number).
func (e *Entry) EachField(fn func(name, value string)) {
	eachLine(e.shared.Value(), fn)
	eachLine(e.own(), fn)
	if date, ok := e.CompactDate(); ok {
		fn("Date", date)
	}
}

// CompactDate returns the Date field when the entry keeps it as a number
// rather than in a block (an IMF-fixdate that formats back the same, or
// an invalid one replaced by the response time).
func (e *Entry) CompactDate() (string, bool) {
	if e.flags&flagDateCompact == 0 {
		return "", false
	}
	var buf [len(http.TimeFormat)]byte
	return string(e.appendCompactDate(buf[:0])), true
}

// CompactDateUnix returns the Date field's time in Unix seconds when the
// entry keeps it as a number (see CompactDate).
func (e *Entry) CompactDateUnix() (int64, bool) {
	if e.flags&flagDateCompact == 0 {
		return 0, false
	}
	return e.respTime/int64(time.Second) + int64(e.dateOffset), true
}

// appendCompactDate appends to b the Date field's value when the entry
// keeps it as a number (see CompactDate), and returns b as it is
// otherwise.
func (e *Entry) appendCompactDate(b []byte) []byte {
	secs, ok := e.CompactDateUnix()
	if !ok {
		return b
	}
	return time.Unix(secs, 0).UTC().AppendFormat(b, http.TimeFormat)
}

// Field returns a header field of the entry, stored or being filled: the
// first value of a sealed entry's field; Cache-Status is the upstream's,
// Surrogate-Key the entry's tags.
func (e *Entry) Field(name string) string {
	if hdr := e.Filling(); hdr != nil {
		return hdr.Get(name)
	}
	if !e.Sealed() {
		return ""
	}
	name = http.CanonicalHeaderKey(name)
	switch name {
	case "Cache-Status":
		if e.extra != nil {
			return e.extra.cacheStatus
		}
		return ""
	case "Surrogate-Key":
		return strings.Join(e.Tags(), " ")
	}
	if v, ok := lineValue(e.shared.Value(), name); ok {
		return v
	}
	if v, ok := lineValue(e.own(), name); ok {
		return v
	}
	if name == "Date" {
		v, _ := e.CompactDate()
		return v
	}
	return ""
}

// ETag is the entry's ETag field value.
func (e *Entry) ETag() string { return e.Field("Etag") }

// LastModified is the entry's Last-Modified time, zero if it has none or
// it is not a valid HTTP-date (policy.ParseHTTPDate; an rfc850-date's
// century is resolved against the response time).
func (e *Entry) LastModified() time.Time {
	if lm := e.Field("Last-Modified"); lm != "" {
		if t, ok := policy.ParseHTTPDate(lm, time.Unix(0, e.respTime)); ok {
			return t
		}
	}
	return time.Time{}
}

// Clone copies an entry, without its store links and hit state, to be
// changed (SetLifetime, SetBody) and stored in its place.
func (e *Entry) Clone() *Entry { return &Entry{data: e.data} }

// Stamp is what every fresh hit on an entry within one whole second of
// age shares: the fields a hit computes, prepared once. The caller makes
// it (NewStamp) and keeps it where it likes: an entry does not hold one,
// so that an entry hit once costs nothing more than one never hit
// (package edge keeps the stamps of recently hit entries in a bounded
// cache). The Date kept as a number is not in it either (package edge
// keeps one formatted string per second of date, see
// Entry.CompactDateUnix and Entry.WriteHitFields).
type Stamp struct {
	// text is the Age value, the Content-Length value, then the
	// Cache-Status value, in one allocation.
	text string
	// age is the age it is for, in whole seconds (a fresh entry's age is
	// below its lifetime, an int32).
	age int32
	// ageEnd and clEnd end the Age and Content-Length values in text.
	ageEnd, clEnd uint8
}

// NewStamp makes the stamp of a hit at age whole seconds on an entry whose
// body has bodySize bytes, with this Cache-Status value.
func NewStamp(age, bodySize int64, cacheStatus string) Stamp {
	age = min(max(age, 0), math.MaxInt32)
	var num [40]byte
	b := strconv.AppendInt(num[:0], age, 10)
	ageEnd := len(b)
	b = strconv.AppendInt(b, bodySize, 10)
	return Stamp{text: string(b) + cacheStatus, age: int32(age), ageEnd: uint8(ageEnd), clEnd: uint8(len(b))}
}

// Age is the age the stamp is for, in whole seconds.
func (st *Stamp) Age() int64 { return int64(st.age) }

// AgeValue is the Age field's value.
func (st *Stamp) AgeValue() string { return st.text[:st.ageEnd] }

// ContentLength is the body's length, in decimal.
func (st *Stamp) ContentLength() string { return st.text[st.ageEnd:st.clEnd] }

// CacheStatus is the Cache-Status field's value.
func (st *Stamp) CacheStatus() string { return st.text[st.clEnd:] }

// CountHit counts a hit on the entry, saturating; safe for concurrent
// use.
func (e *Entry) CountHit() {
	if e.hits.Load() != math.MaxUint32 {
		e.hits.Add(1)
	}
}

// Hits is the number of hits counted on the entry.
func (e *Entry) Hits() int64 { return int64(e.hits.Load()) }

// entryOverhead approximates the bytes an entry costs beyond its key,
// header blocks and body: the entry struct and its map slot
// (TestStoreChargeMatchesHeap in package edge compares the charge with
// the live heap of entries that have been hit).
const entryOverhead = 176

// Charge is what the entry counts against a store's budget. The shared
// block is charged to every entry that uses it, so that the budget holds
// even when an origin makes every one of them different.
func (e *Entry) Charge() int64 {
	n := int64(entryOverhead + len(e.meta) + len(e.body))
	if e.Sealed() {
		n += int64(len(e.shared.Value()))
	}
	if x := e.extra; x != nil {
		n += 64 + int64(len(x.cacheStatus))
		for _, s := range x.vary {
			n += int64(len(s)) + 16
		}
		for _, s := range x.tags {
			n += int64(len(s)) + 16
		}
	}
	return n
}
