// Package store is the edge's in-memory cache: stored responses
// ([Entry]) by key, within a byte budget ([Store]). Package edge decides
// what is stored and when it may be reused (RFC 9111); this package keeps
// it compact and finds it fast.
//
// # The entry's layout
//
// With small objects, per-entry bookkeeping is most of what a cache costs
// beyond the bodies, so an entry is about 128 bytes plus its own header
// block and a map slot:
//
//   - meta is one string: the store key, then the entry's own header
//     block;
//   - header fields are kept as a client gets them on a hit, in HTTP/1.1
//     wire form ("Name: value\r\n" per value, names sorted), in two
//     blocks: the shared block holds the fields most objects of a site
//     have in common (Content-Type, Cache-Control, Via...), interned with
//     package unique so that every entry with the same ones points at one
//     copy; the own block holds the rest (ETag, Last-Modified...). A Date
//     that is an IMF-fixdate is kept as 4 bytes of offset from the
//     response time instead of 37 in a block. Fields a hit computes (Age,
//     Cache-Status, Content-Length) are in neither;
//   - freshness is in seconds (int32: RFC 9111 counts in delta-seconds),
//     times are Unix nanoseconds, policy facts are bit flags;
//   - what most entries lack (vary index fields, surrogate keys, an
//     upstream Cache-Status, the header of an entry being filled) is
//     behind one pointer.
//
// An entry is built with [NewFilling] while its response arrives (it then
// holds the origin's header as a map), and [Entry.Seal] puts its fields in
// the stored form just before it is stored. Once stored it is immutable:
// a refresh or a soft purge stores a changed [Entry.Clone]. The fast
// HTTP/1.1 front writes a hit's blocks ([Entry.Blocks]) as they are, with
// no header map; other paths read them line by line ([Entry.EachField],
// [Entry.WriteFields]). The fields that change with age are prepared once
// per entry and second ([Stamp]).
//
// # Eviction
//
// The budget counts keys, header blocks and bodies ([Entry.Charge]), not
// entries. Eviction is a segmented LRU (SLRU): a new entry enters the
// probation segment; one asked for again ([Store.Get]) moves to the
// protected segment, which holds at most 80 % of the budget (its least
// recently used entries fall back to probation). Eviction takes
// probation's least recently used entry first. So a flood of objects asked
// once (a scan, or an attacker's unique keys) cycles through probation and
// cannot evict the objects clients keep asking for, which plain LRU lets
// any fast enough flood do. The recency lists run through the entries
// themselves: no list element per entry, as a container/list or
// golang-lru would add.
//
// # Concurrency
//
// A Store is safe for concurrent use. Store.mu guards the key map, the
// recency lists (each entry's links and segment) and the byte counts. The
// tag index has its own mutex, a leaf: it is taken under Store.mu when an
// entry is added or dropped, and alone by [Store.KeysByTag]; the order is
// Store.mu → tag index. Nothing under either lock does I/O or calls back
// into the caller. A stored entry is read without any lock: its data never
// changes, and its hit stamp and hit count are atomics.
package store

import (
	"sort"
	"sync"
)

// Store is an in-memory cache of sealed entries by key within a byte
// budget, evicting by a segmented LRU (see the package doc).
type Store struct {
	mu    sync.Mutex
	byKey map[string]*Entry
	// probation and protected are the segments' sentinels: next is the
	// most recently used entry, prev the least.
	probation, protected Entry
	bytes                int64
	protectedBytes       int64
	maxBytes             int64
	evicted              int64 // entries evicted to make room
	tags                 *tagIndex
}

// protectedShare is the part of the budget the protected segment may hold,
// as in Caffeine's and TinyLFU's SLRU.
const protectedShare = 0.8

// New returns an empty store with a budget of maxBytes.
func New(maxBytes int64) *Store {
	s := &Store{maxBytes: maxBytes, byKey: map[string]*Entry{}, tags: &tagIndex{keys: map[string]map[string]struct{}{}}}
	s.probation.prev, s.probation.next = &s.probation, &s.probation
	s.protected.prev, s.protected.next = &s.protected, &s.protected
	return s
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

// link puts e at the front of its segment (e.protected says which). The
// caller holds s.mu.
func (s *Store) link(e *Entry) {
	head := &s.probation
	if e.protected {
		head = &s.protected
		s.protectedBytes += e.Charge()
	}
	e.prev, e.next = head, head.next
	head.next.prev = e
	head.next = e
}

// unlink takes e out of its segment. The caller holds s.mu.
func (s *Store) unlink(e *Entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	if e.protected {
		s.protectedBytes -= e.Charge()
	}
}

// drop removes e, which is stored, with its charge and tags. The caller
// holds s.mu.
func (s *Store) drop(e *Entry) {
	s.unlink(e)
	delete(s.byKey, e.Key())
	s.bytes -= e.Charge()
	if tags := e.Tags(); len(tags) > 0 {
		s.tags.remove(e.Key(), tags)
	}
}

// add stores e, which is sealed and not stored anywhere, replacing the
// entry at its key; a replacement keeps the segment of the entry it
// replaces (a refreshed popular object stays protected). The caller holds
// s.mu.
func (s *Store) add(e *Entry) {
	e.protected = false
	if old := s.byKey[e.Key()]; old == e {
		return
	} else if old != nil {
		e.protected = old.protected
		s.drop(old)
	}
	s.byKey[e.Key()] = e
	s.link(e)
	s.bytes += e.Charge()
	if tags := e.Tags(); len(tags) > 0 {
		s.tags.add(e.Key(), tags)
	}
	s.balance()
}

// balance moves the protected segment's least recently used entries to the
// front of probation while the segment is over its share. The caller holds
// s.mu.
func (s *Store) balance() {
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
func (s *Store) shrink() {
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

// Get returns the entry at key, nil if none, and counts the use: a
// protected entry becomes its segment's most recent, a probation entry is
// promoted to the protected segment.
func (s *Store) Get(key string) *Entry {
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

// Peek returns the entry at key without touching its recency.
func (s *Store) Peek(key string) *Entry {
	s.mu.Lock()
	e := s.byKey[key]
	s.mu.Unlock()
	return e
}

// Put stores the sealed entry e at its key, replacing what was there, and
// evicts until the store is within its budget. An entry larger than the
// whole budget is not stored. e must not be stored anywhere already (store
// a Clone to store it twice).
func (s *Store) Put(e *Entry) {
	s.mu.Lock()
	if e.Charge() <= s.maxBytes { // under the lock: SetMax may be changing it
		s.add(e)
		s.shrink()
	}
	s.mu.Unlock()
}

// Remove removes the entry at key and reports whether there was one.
func (s *Store) Remove(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byKey[key]
	if e == nil {
		return false
	}
	s.drop(e)
	return true
}

// ReplaceIf swaps the entry at key for next (sealed with the same key, not
// stored anywhere) if it is still old, and reports whether it did. next
// takes old's segment, as its most recent entry.
func (s *Store) ReplaceIf(key string, old, next *Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byKey[key] != old {
		return false
	}
	s.add(next)
	s.shrink()
	return true
}

// SetMax changes the budget, evicting at once if it shrank.
func (s *Store) SetMax(maxBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxBytes = maxBytes
	s.balance()
	s.shrink()
}

// KeysByTag returns the keys of the stored entries that carry the
// surrogate key tag, in no particular order.
func (s *Store) KeysByTag(tag string) []string { return s.tags.lookup(tag) }

// Keys returns the keys of every stored entry, in no particular order: a
// snapshot, for a walk over the store (such as the edge's ban sweeper)
// that looks each one up again without holding the store.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.byKey))
	for k := range s.byKey {
		keys = append(keys, k)
	}
	return keys
}

// Stats are a store's counts.
type Stats struct {
	Entries  int   // entries stored (vary indexes included)
	Bytes    int64 // bytes they are charged (see Entry.Charge)
	MaxBytes int64 // the budget
	Evicted  int64 // entries evicted to make room, since New
}

// Stats returns the store's counts.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Entries: len(s.byKey), Bytes: s.bytes, MaxBytes: s.maxBytes, Evicted: s.evicted}
}

// each calls fn for every stored entry, protected ones first, each
// segment from its most recent. The caller holds s.mu.
func (s *Store) each(fn func(*Entry)) {
	for _, head := range []*Entry{&s.protected, &s.probation} {
		for e := head.next; e != head; e = e.next {
			fn(e)
		}
	}
}

// TopObject is a stored object and how often it was hit.
type TopObject struct {
	Key   string `json:"key"`
	Hits  int64  `json:"hits"`
	Bytes int64  `json:"bytes"` // the body's
}

// Top returns the n most-hit objects (vary indexes left out), most hits
// first, then by key.
func (s *Store) Top(n int) []TopObject {
	s.mu.Lock()
	out := make([]TopObject, 0, len(s.byKey))
	s.each(func(e *Entry) {
		if !e.IsVaryIndex() {
			out = append(out, TopObject{Key: e.Key(), Hits: e.Hits(), Bytes: int64(len(e.body))})
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
