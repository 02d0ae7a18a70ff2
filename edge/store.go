package edge

import (
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/meridiancdn/meridian/edge/policy"
)

// entry is one stored response, immutable once stored: a refresh stores a
// new entry. A vary index (vary != nil, body nil) stands at a primary key
// whose responses vary; the variants live under variantKey.
type entry struct {
	entryData
	// stamp caches the hit fields that change with age; a copy of an
	// entry starts without one.
	stamp atomic.Pointer[hitStamp]
	// hits counts the hits served from this entry, for the status page's
	// top objects.
	hits atomic.Int64
}

// entryData is everything of an entry but its hit stamp.
type entryData struct {
	status   int
	header   http.Header // stored fields, hop-by-hop and stripped fields removed
	body     []byte
	pol      policy.Policy
	respTime time.Time // when the response was received (§4.2.3 response_time)
	etag     string
	lastMod  time.Time
	vary     []string // Vary field names, for a vary index entry only
	gen      uint64   // a vary index's generation, part of its variants' keys
	size     int64    // bytes charged to the store
	tags     []string // surrogate keys (Surrogate-Key), for purge by tag

	// clientHeader is header as a client gets it on a hit, prepared once
	// when the entry is stored: Via, Accept-Ranges and Content-Length in,
	// Surrogate-Key out.
	clientHeader fieldList
}

// baseHeader is the entry's header as the origin sent it (hop-by-hop and
// stripped fields removed): the header of an entry being filled, or, once
// stored, its client header without this cache's Via entry and with its
// surrogate keys back.
func (e *entry) baseHeader() http.Header {
	if e.header != nil || e.clientHeader == nil {
		return e.header
	}
	h := e.clientHeader.header()
	if v := h["Via"]; len(v) > 1 {
		h["Via"] = v[:len(v)-1]
	} else {
		delete(h, "Via")
	}
	if len(e.tags) > 0 {
		h["Surrogate-Key"] = []string{strings.Join(e.tags, " ")}
	}
	return h
}

// field returns a header field of the entry, stored or being filled.
func (e *entry) field(name string) string {
	if e.header != nil {
		return e.header.Get(name)
	}
	return e.clientHeader.get(http.CanonicalHeaderKey(name))
}

// clone copies an entry, without its hit stamp.
func (e *entry) clone() *entry { return &entry{entryData: e.entryData} }

// hitStamp is the Age and Cache-Status of a fresh hit at one whole age in
// seconds, shared by every hit on the entry within that second.
type hitStamp struct {
	age         int64
	ageField    []string
	statusField []string
}

// entryOverhead approximates the bytes an entry costs beyond its key,
// header fields and body: the entry struct, the LRU element and map slot.
const entryOverhead = 256

func (e *entry) charge(key string) int64 {
	n := int64(entryOverhead + len(key) + len(e.body) + len(e.etag))
	for k, vs := range e.header {
		n += int64(len(k)) + 16
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	for _, f := range e.clientHeader {
		n += int64(len(f.name)) + 40
		for _, v := range f.values {
			n += int64(len(v)) + 16
		}
	}
	for _, f := range e.vary {
		n += int64(len(f)) + 16
	}
	return n
}

// store is the byte-bounded LRU of entries. Its budget counts keys, header
// fields and bodies, not entries.
type store struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[string, *entry]
	bytes    int64
	maxBytes int64
	evicted  int64 // entries evicted to make room, for metrics
	tags     *tagIndex
}

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
	s := &store{maxBytes: maxBytes, tags: &tagIndex{keys: map[string]map[string]struct{}{}}}
	// The entry-count bound is unused: eviction is by bytes.
	s.lru, _ = simplelru.NewLRU[string, *entry](math.MaxInt32, func(k string, e *entry) {
		s.bytes -= e.size
		if len(e.tags) > 0 {
			s.tags.remove(k, e.tags)
		}
	})
	return s
}

func (s *store) get(key string) *entry {
	s.mu.Lock()
	e, _ := s.lru.Get(key)
	s.mu.Unlock()
	return e
}

// put stores e at key, replacing what was there, and evicts the least
// recently used entries until the store is within its budget. An entry larger
// than the whole budget is not stored.
func (s *store) put(key string, e *entry) {
	e.size = e.charge(key)
	if e.size > s.maxBytes {
		return
	}
	s.mu.Lock()
	s.lru.Remove(key) // the callback uncharges a replaced entry
	s.lru.Add(key, e)
	s.bytes += e.size
	if len(e.tags) > 0 {
		s.tags.add(key, e.tags)
	}
	for s.bytes > s.maxBytes {
		if _, _, ok := s.lru.RemoveOldest(); !ok {
			break
		}
		s.evicted++
	}
	s.mu.Unlock()
}

func (s *store) remove(key string) bool {
	s.mu.Lock()
	ok := s.lru.Remove(key)
	s.mu.Unlock()
	return ok
}

// stats returns the number of entries and the bytes they are charged.
func (s *store) stats() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.bytes
}

// peek returns the entry at key without touching its recency.
func (s *store) peek(key string) *entry {
	s.mu.Lock()
	e, _ := s.lru.Peek(key)
	s.mu.Unlock()
	return e
}

// replaceIf swaps the entry at key for next if it is still old.
func (s *store) replaceIf(key string, old, next *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.lru.Peek(key); !ok || cur != old {
		return false
	}
	next.size = old.size
	s.lru.Remove(key)
	s.lru.Add(key, next)
	s.bytes += next.size
	if len(next.tags) > 0 {
		s.tags.add(key, next.tags)
	}
	return true
}

// setMax changes the budget, evicting at once if it shrank.
func (s *store) setMax(maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxBytes = maxBytes
	for s.bytes > s.maxBytes {
		if _, _, ok := s.lru.RemoveOldest(); !ok {
			break
		}
		s.evicted++
	}
}

// top returns the n most-hit entries' keys and hit counts.
func (s *store) top(n int) []TopObject {
	s.mu.Lock()
	keys := s.lru.Keys()
	out := make([]TopObject, 0, len(keys))
	for _, k := range keys {
		if e, ok := s.lru.Peek(k); ok && e.vary == nil {
			out = append(out, TopObject{Key: k, Hits: e.hits.Load(), Bytes: int64(len(e.body))})
		}
	}
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

// TopObject is a stored object and how often it was hit.
type TopObject struct {
	Key   string `json:"key"`
	Hits  int64  `json:"hits"`
	Bytes int64  `json:"bytes"`
}
