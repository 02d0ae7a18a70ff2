package edge

import (
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/meridiancdn/meridian/edge/policy"
)

// entry is one stored response, immutable once stored: a refresh stores a
// new entry. A vary index (see entryExtra.vary) stands at a primary key
// whose responses vary; the variants live under variantKey.
//
// An entry is laid out to cost little beyond its body (about 128 bytes
// here, plus its own header block and a map slot): freshness in seconds,
// times as integers, header fields as wire-form blocks, and whatever most
// entries lack behind one pointer.
type entry struct {
	prev, next *entry // the store's recency list, under its lock
	entryData
	// stamp caches the hit fields that change with age; a copy of an
	// entry starts without one.
	stamp atomic.Pointer[hitStamp]
	// hits counts the hits served from this entry, for the status page's
	// top objects.
	hits atomic.Uint32
	// protected says the entry is in the store's protected segment (it
	// was asked for again after it was stored); under the store's lock.
	protected bool
}

// entryData is everything of an entry but its store links and hit state.
type entryData struct {
	// meta is the store key followed by the own fields block (see seal).
	meta string
	body []byte
	// shared is the interned block of fields that many entries have in
	// common; the zero handle until the entry is sealed.
	shared unique.Handle[string]
	extra  *entryExtra
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
	flags      entryFlags
}

// entryFlags are an entry's yes-or-no facts.
type entryFlags uint8

const (
	flagStore            entryFlags = 1 << iota // policy.Policy.Store
	flagHeuristic                               // policy.Policy.Heuristic
	flagNoStale                                 // policy.Policy.NoStale
	flagAlwaysRevalidate                        // policy.Policy.AlwaysRevalidate
	flagImmutable                               // policy.Policy.Immutable
	flagHasDate                                 // the response has a Date field
	flagHasType                                 // the blocks hold a Content-Type field
	// flagDateCompact: the Date field is not in a block but in
	// dateOffset, as it was an IMF-fixdate that formats back the same.
	flagDateCompact
)

// entryExtra holds what most stored entries do not have.
type entryExtra struct {
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
}

// newFillingEntry is an entry for a response being filled: its fields as
// the origin sent them, its policy, and when it arrived.
func newFillingEntry(status int, hdr http.Header, pol policy.Policy, respTime time.Time) *entry {
	e := &entry{entryData: entryData{status: uint16(status), respTime: respTime.UnixNano(), extra: &entryExtra{header: hdr}}}
	e.setPolicy(pol)
	return e
}

// newVaryIndex is a vary index for the Vary field names fields.
func newVaryIndex(fields []string, gen uint64) *entry {
	return &entry{entryData: entryData{extra: &entryExtra{vary: fields, gen: gen}}}
}

// setPolicy records the parts of pol that reuse needs.
func (e *entry) setPolicy(pol policy.Policy) {
	e.initialAge = pol.InitialAge
	e.lifetime, e.swr, e.sie = seconds(pol.Lifetime), seconds(pol.StaleWhileRevalidate), seconds(pol.StaleIfError)
	e.flags &^= flagStore | flagHeuristic | flagNoStale | flagAlwaysRevalidate | flagImmutable
	for _, f := range []struct {
		on   bool
		flag entryFlags
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

// policy is the entry's reuse policy, for Judge and CurrentAge.
func (e *entry) policy() policy.Policy {
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

// currentAge is the entry's age at now (§4.2.3).
func (e *entry) currentAge(now time.Time) time.Duration {
	p := e.policy()
	return p.CurrentAge(e.responseTime(), now)
}

// judge says how the entry may be reused at age.
func (e *entry) judge(age time.Duration, req *policy.Directives) policy.Verdict {
	p := e.policy()
	return p.Judge(age, req)
}

// usableDisconnected reports whether the entry may be served at age by a
// cache that cannot reach the origin (RFC 9111 §4.2.4), at most window
// past its freshness: never when the origin forbade stale use
// (must-revalidate, proxy-revalidate, no-cache, s-maxage).
func (e *entry) usableDisconnected(age, window time.Duration) bool {
	if e.flags&(flagNoStale|flagAlwaysRevalidate) != 0 || window <= 0 {
		return false
	}
	return age-time.Duration(e.lifetime)*time.Second < window
}

// storable reports the policy's Store.
func (e *entry) storable() bool { return e.flags&flagStore != 0 }

// ttl is the freshness left when the entry arrived.
func (e *entry) ttl() time.Duration {
	return time.Duration(e.lifetime)*time.Second - e.initialAge
}

// setLifetime changes the freshness lifetime.
func (e *entry) setLifetime(d time.Duration) { e.lifetime = seconds(d) }

func (e *entry) responseTime() time.Time { return time.Unix(0, e.respTime) }

// key is the store key of a sealed entry.
func (e *entry) key() string { return e.meta[:e.keyLen] }

// own is the sealed entry's own fields block.
func (e *entry) own() string { return e.meta[e.keyLen:] }

// sealed reports whether the entry's fields are in their stored form.
func (e *entry) sealed() bool { return e.shared != unique.Handle[string]{} }

// filling returns the fields of an entry being filled, or nil.
func (e *entry) filling() http.Header {
	if e.extra == nil {
		return nil
	}
	return e.extra.header
}

// varyIndex returns a vary index's field names and generation; ok is false
// for any other entry, or nil.
func (e *entry) varyIndex() (fields []string, gen uint64, ok bool) {
	if e == nil || e.extra == nil || e.extra.vary == nil {
		return nil, 0, false
	}
	return e.extra.vary, e.extra.gen, true
}

// isVaryIndex reports whether the entry is a vary index.
func (e *entry) isVaryIndex() bool { return e.extra != nil && e.extra.vary != nil }

// tags returns the entry's surrogate keys.
func (e *entry) tags() []string {
	if e.extra == nil {
		return nil
	}
	return e.extra.tags
}

// baseHeader is the entry's header as the origin sent it (hop-by-hop and
// stripped fields removed): the header of an entry being filled, or, once
// sealed, its fields without this cache's Via entry and with its surrogate
// keys and upstream Cache-Status back.
func (e *entry) baseHeader() http.Header {
	if hdr := e.filling(); hdr != nil || !e.sealed() {
		return hdr
	}
	h := http.Header{}
	e.eachField(func(name, value string) {
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

// eachField calls fn with every field of a sealed entry.
func (e *entry) eachField(fn func(name, value string)) {
	eachLine(e.shared.Value(), fn)
	eachLine(e.own(), fn)
	if date, ok := e.compactDate(); ok {
		fn("Date", date)
	}
}

// compactDate returns the Date field kept in dateOffset, if it is there.
func (e *entry) compactDate() (string, bool) {
	if e.flags&flagDateCompact == 0 {
		return "", false
	}
	secs := e.respTime/int64(time.Second) + int64(e.dateOffset)
	return time.Unix(secs, 0).UTC().Format(http.TimeFormat), true
}

// field returns a header field of the entry, stored or being filled.
func (e *entry) field(name string) string {
	if hdr := e.filling(); hdr != nil {
		return hdr.Get(name)
	}
	if !e.sealed() {
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
		return strings.Join(e.tags(), " ")
	}
	if v, ok := lineValue(e.shared.Value(), name); ok {
		return v
	}
	if v, ok := lineValue(e.own(), name); ok {
		return v
	}
	if name == "Date" {
		v, _ := e.compactDate()
		return v
	}
	return ""
}

// etag is the entry's ETag field value.
func (e *entry) etag() string { return e.field("Etag") }

// lastModified is the entry's Last-Modified time, zero if it has none or
// it is not a valid HTTP-date (policy.ParseHTTPDate; an rfc850-date's
// century is resolved against the response time).
func (e *entry) lastModified() time.Time {
	if lm := e.field("Last-Modified"); lm != "" {
		if t, ok := policy.ParseHTTPDate(lm, time.Unix(0, e.respTime)); ok {
			return t
		}
	}
	return time.Time{}
}

// clone copies an entry, without its store links and hit state.
func (e *entry) clone() *entry { return &entry{entryData: e.entryData} }

// hitStamp is the Age and Cache-Status of a fresh hit at one whole age in
// seconds, shared by every hit on the entry within that second.
type hitStamp struct {
	age           int64
	ageField      []string
	statusField   []string
	contentLength string // the body's length, for net/http's hits
	date          string // the Date field, when kept as a number
}

// entryOverhead approximates the bytes an entry costs beyond its key,
// header blocks and body: the entry struct and its map slot.
const entryOverhead = 176

// charge is what the entry counts against the store's budget. The shared
// block is charged to every entry that uses it, so that the budget holds
// even when an origin makes every one of them different.
func (e *entry) charge() int64 {
	n := int64(entryOverhead + len(e.meta) + len(e.body))
	if e.sealed() {
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

// store is the in-memory cache: sealed entries by key within a byte
// budget that counts keys, header blocks and bodies, not entries. It
// evicts by a segmented LRU (SLRU). A new entry enters the probation
// segment; one asked for again moves to the protected segment, which holds
// at most protectedShare of the budget (its least recently used entries
// fall back to probation). Eviction takes probation's least recently used
// entry first. So a flood of objects asked once (a scan, or an attacker's
// unique keys) cycles through probation and cannot evict the objects
// clients keep asking for, which plain LRU lets any fast enough flood do.
//
// The recency lists run through the entries themselves (no list element
// per entry, as a container/list or golang-lru would add): with small
// objects, per-entry bookkeeping is most of what a cache costs beyond the
// bodies.
type store struct {
	mu    sync.Mutex
	byKey map[string]*entry
	// probation and protected are the segments' sentinels: next is the
	// most recently used entry, prev the least.
	probation, protected entry
	bytes                int64
	protectedBytes       int64
	maxBytes             int64
	evicted              int64 // entries evicted to make room, for metrics
	tags                 *tagIndex
}

// protectedShare is the part of the budget the protected segment may hold,
// as in Caffeine's and TinyLFU's SLRU.
const protectedShare = 0.8

// tagIndex maps surrogate keys to the store keys of the entries that carry
// them. The store keeps it in step with every add and removal.
type tagIndex struct {
	mu   sync.Mutex
	keys map[string]map[string]struct{}
}

func (t *tagIndex) add(key string, tags []string) {
	t.mu.Lock()
	for _, tag := range tags {
		set := t.keys[tag]
		if set == nil {
			set = map[string]struct{}{}
			t.keys[tag] = set
		}
		set[key] = struct{}{}
	}
	t.mu.Unlock()
}

func (t *tagIndex) remove(key string, tags []string) {
	t.mu.Lock()
	for _, tag := range tags {
		if set := t.keys[tag]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(t.keys, tag)
			}
		}
	}
	t.mu.Unlock()
}

// lookup returns the store keys carrying tag.
func (t *tagIndex) lookup(tag string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.keys[tag]))
	for k := range t.keys[tag] {
		keys = append(keys, k)
	}
	return keys
}

func newStore(maxBytes int64) *store {
	s := &store{maxBytes: maxBytes, byKey: map[string]*entry{}, tags: &tagIndex{keys: map[string]map[string]struct{}{}}}
	s.probation.prev, s.probation.next = &s.probation, &s.probation
	s.protected.prev, s.protected.next = &s.protected, &s.protected
	return s
}

// link puts e at the front of its segment (e.protected says which). The
// caller holds s.mu.
func (s *store) link(e *entry) {
	head := &s.probation
	if e.protected {
		head = &s.protected
		s.protectedBytes += e.charge()
	}
	e.prev, e.next = head, head.next
	head.next.prev = e
	head.next = e
}

// unlink takes e out of its segment. The caller holds s.mu.
func (s *store) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	if e.protected {
		s.protectedBytes -= e.charge()
	}
}

// drop removes e, which is stored, with its charge and tags. The caller
// holds s.mu.
func (s *store) drop(e *entry) {
	s.unlink(e)
	delete(s.byKey, e.key())
	s.bytes -= e.charge()
	if tags := e.tags(); len(tags) > 0 {
		s.tags.remove(e.key(), tags)
	}
}

// add stores e, which is sealed and not stored anywhere, replacing the
// entry at its key; a replacement keeps the segment of the entry it
// replaces (a refreshed popular object stays protected). The caller holds
// s.mu.
func (s *store) add(e *entry) {
	e.protected = false
	if old := s.byKey[e.key()]; old == e {
		return
	} else if old != nil {
		e.protected = old.protected
		s.drop(old)
	}
	s.byKey[e.key()] = e
	s.link(e)
	s.bytes += e.charge()
	if tags := e.tags(); len(tags) > 0 {
		s.tags.add(e.key(), tags)
	}
	s.balance()
}

// balance moves the protected segment's least recently used entries to the
// front of probation while the segment is over its share. The caller holds
// s.mu.
func (s *store) balance() {
	limit := int64(float64(s.maxBytes) * protectedShare)
	for s.protectedBytes > limit && s.protected.prev != &s.protected {
		e := s.protected.prev
		s.unlink(e)
		e.protected = false
		s.link(e)
	}
}

// shrink evicts entries, probation's least recently used first, until the
// store is within its budget. The caller holds s.mu.
func (s *store) shrink() {
	for s.bytes > s.maxBytes {
		victim := s.probation.prev
		if victim == &s.probation {
			victim = s.protected.prev
			if victim == &s.protected {
				return
			}
		}
		s.drop(victim)
		s.evicted++
	}
}

// get returns the entry at key and counts the use: a protected entry
// becomes its segment's most recent, a probation entry is promoted.
func (s *store) get(key string) *entry {
	s.mu.Lock()
	e := s.byKey[key]
	if e != nil && s.protected.next != e {
		s.unlink(e)
		if !e.protected {
			e.protected = true
			s.link(e)
			s.balance()
		} else {
			s.link(e)
		}
	}
	s.mu.Unlock()
	return e
}

// put stores the sealed entry e at its key, replacing what was there, and
// evicts until the store is within its budget. An entry larger than the
// whole budget is not stored.
func (s *store) put(e *entry) {
	if e.charge() > s.maxBytes {
		return
	}
	s.mu.Lock()
	s.add(e)
	s.shrink()
	s.mu.Unlock()
}

func (s *store) remove(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byKey[key]
	if e == nil {
		return false
	}
	s.drop(e)
	return true
}

// stats returns the number of entries and the bytes they are charged.
func (s *store) stats() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey), s.bytes
}

// peek returns the entry at key without touching its recency.
func (s *store) peek(key string) *entry {
	s.mu.Lock()
	e := s.byKey[key]
	s.mu.Unlock()
	return e
}

// replaceIf swaps the entry at key for next (sealed with the same key) if
// it is still old. next takes old's segment, as its most recent entry.
func (s *store) replaceIf(key string, old, next *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKey[key] != old {
		return false
	}
	s.add(next)
	s.shrink()
	return true
}

// setMax changes the budget, evicting at once if it shrank.
func (s *store) setMax(maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxBytes = maxBytes
	s.balance()
	s.shrink()
}

// each calls fn for every stored entry, protected ones first, each
// segment from its most recent. The caller holds s.mu.
func (s *store) each(fn func(*entry)) {
	for _, head := range []*entry{&s.protected, &s.probation} {
		for e := head.next; e != head; e = e.next {
			fn(e)
		}
	}
}

// top returns the n most-hit entries' keys and hit counts.
func (s *store) top(n int) []TopObject {
	s.mu.Lock()
	out := make([]TopObject, 0, len(s.byKey))
	s.each(func(e *entry) {
		if !e.isVaryIndex() {
			out = append(out, TopObject{Key: e.key(), Hits: int64(e.hits.Load()), Bytes: int64(len(e.body))})
		}
	})
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hits != out[j].Hits {
			return out[i].Hits > out[j].Hits
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// countHit counts a hit on the entry, saturating.
func (e *entry) countHit() {
	if e.hits.Load() != math.MaxUint32 {
		e.hits.Add(1)
	}
}

// TopObject is a stored object and how often it was hit.
type TopObject struct {
	Key   string `json:"key"`
	Hits  int64  `json:"hits"`
	Bytes int64  `json:"bytes"`
}
