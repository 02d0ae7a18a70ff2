// Package store is the edge's cache storage: stored responses ([Entry])
// by key in a memory tier within a byte budget ([Store]) and, optionally,
// a disk tier under it ([Disk]). Package edge decides what is stored and
// when it may be reused (RFC 9111); this package keeps it compact and
// finds it fast.
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
//     upstream Cache-Status, the header of an entry being filled, the
//     place of a body on disk) is behind one pointer.
//
// An entry is built with [NewFilling] while its response arrives (it then
// holds the origin's header as a map), and [Entry.Seal] puts its fields in
// the stored form just before it is stored. Once stored it is immutable:
// a refresh or a soft purge stores a changed [Entry.Clone]. The fast
// HTTP/1.1 front writes a hit's blocks ([Entry.Blocks]) as they are, with
// no header map; other paths read them line by line ([Entry.EachField],
// [Entry.WriteFields]). The fields that change with age are prepared once
// per hit entry and second ([Stamp]).
//
// # Eviction from memory
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
// golang-lru would add. What the store evicts, and what is larger than its
// whole budget, goes to the next tier ([Store.OnEvict]).
//
// # The disk tier
//
// The tiers are exclusive: an entry evicted from memory is written to
// disk ([Disk.Admit], through a bounded queue and one writer goroutine,
// never on the request's path), a lookup that memory misses asks the disk
// ([Disk.Get]), and a hit there is read from the file as it is sent
// ([Entry.OpenBody]), never held whole. A newer copy stored in memory
// supersedes the one on disk. The index (every entry's data, its body's
// place) is in memory, rebuilt from the files when the tier opens: a
// restart serves what is on disk at once. BenchmarkDiskIndexLoad: a
// million objects load in 3.0 s here, and their index takes 409 bytes of
// heap per object (not counted in either budget).
//
// The layout is a log of segment files (as Traffic Server's cache spans
// and Varnish MSE's stores are): records appended to the active segment
// of SegmentBytes (default an eighth of the budget, 1 to 64 MiB); the
// oldest segment is evicted whole when the budget needs room. It was
// chosen over a file per object (with its index rebuilt from the files'
// headers) by BenchmarkDiskLayout on this project's 2-core ext4 machine:
// storing a 4 KiB object cost 34 µs against 134 µs (no file created and
// renamed per object), a 4 KiB hit 3.9 µs against 27 µs (no open per
// hit), a 64 KiB hit 32 µs against 74 µs, and the index load 4.7 µs per
// object against 51 µs in the prototypes. What it
// gives up is exact LRU: eviction is FIFO by segment, with a second
// chance — an entry asked for since it was written is written again at
// the head when its segment goes (up to half a segment each time), which
// approximates LRU as CLOCK does, and stops one-off objects from pushing
// out the ones asked for. The memory tier's SLRU in front of it already
// keeps the hottest objects off the disk.
//
// A record is a 32-byte header (kind, lengths, a CRC-32C of the body, a
// CRC-32C of the header and meta), the entry's meta (its data, see
// codec.go), then the body. Crash safety:
//
//   - a record's body is written before its header, so a record cut short
//     by a crash (kill -9 at any moment) has no valid header;
//   - at open every record is checked (magic, kind, lengths within the
//     file, header checksum); the segment that was being written (it has
//     no seal) has its bodies checked against their CRC too, is cut after
//     its last good record, and sealed; a corrupt or partial record is
//     dropped, never served, and what follows it in that segment with it;
//   - fsync policy: a segment is synced when it is full (and at Close),
//     then sealed with a seal record; nothing is synced per object (a
//     cache can fetch again). A process crash loses nothing written (the
//     page cache survives it); a power loss can lose the unsynced active
//     segment's tail, which the body checksums find at the next open;
//   - removals (purges) are records too, on disk before the purge
//     returns, so a purged object does not come back after a restart.
//
// A body too large for memory is written to the tier as it arrives, in a
// segment file of its own under a temporary name, renamed into the tier
// when it is complete ([Spool]; disk_spool.go has its layout and why it
// is crash safe).
//
// A failed write (a full or failing disk) stops admission for a while
// (DiskOptions.FullBackoff); what is stored is served as ever. The
// directory is locked (flock) against a second process.
//
// # Concurrency
//
// A Store is safe for concurrent use. Store.mu guards the key map, the
// recency lists (each entry's links and segment) and the byte counts. The
// tag index has its own mutex, a leaf: it is taken under Store.mu when an
// entry is added or dropped, and alone by [Store.KeysByTag]; the order is
// Store.mu → tag index. Nothing under either lock does I/O or calls back
// into the caller (OnEvict's function is called after Store.mu is
// released). A stored entry is read without any lock: its data never
// changes, and its hit count is an atomic.
//
// A Disk is safe for concurrent use. Its writer's lock (wmu) serializes
// appends to the active segment, rotation and eviction: the only lock
// held over file I/O, taken by the writer goroutine, Flush and Close.
// Disk.mu guards the index, the segment list and the counts; no I/O
// happens under it. The queue's lock (qmu) is a leaf apart from reading
// whether the tier is closed. The order is wmu → mu → tag index, and
// qmu → mu. A segment's file is closed when the tier has dropped it and
// its last reader (BodyReader) is done (a reference count).
package store

import (
	"hash/maphash"
	"sort"
	"sync"
)

// Store is an in-memory cache of sealed entries by key within a byte
// budget, evicting by a segmented LRU (see the package doc).
type Store struct {
	mu sync.Mutex
	// byHash indexes the entries by a seeded hash of their key
	// (Entry.hash): a 64-bit map key is held in the map's slot, where a
	// string key is a pointer to bytes elsewhere, so growing the map
	// rehashes without reading every key, and its slots are two thirds
	// the size. An entry whose hash is another key's is in collided
	// instead, by its key: the seed is random, so that needs about 2^32
	// keys, and a client cannot aim for it.
	byHash   map[uint64]*Entry
	collided map[string]*Entry
	hash     func(key string) uint64 // maphash with the store's seed; tests weaken it
	// probation and protected are the segments' sentinels: next is the
	// most recently used entry, prev the least.
	probation, protected Entry
	bytes                int64
	protectedBytes       int64
	maxBytes             int64
	evicted              int64 // entries evicted to make room
	tags                 *tagIndex
	// onEvict is called with what the store lets go for its budget (see
	// OnEvict); set before use.
	onEvict func(*Entry)
}

// protectedShare is the part of the budget the protected segment may hold,
// as in Caffeine's and TinyLFU's SLRU.
const protectedShare = 0.8

// New returns an empty store with a budget of maxBytes.
func New(maxBytes int64) *Store {
	s := &Store{maxBytes: maxBytes, byHash: map[uint64]*Entry{}, tags: &tagIndex{keys: map[string]map[string]struct{}{}}}
	seed := maphash.MakeSeed()
	s.hash = func(key string) uint64 { return maphash.String(seed, key) }
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
	s.unindex(e)
	s.bytes -= e.Charge()
	if tags := e.Tags(); len(tags) > 0 {
		s.tags.remove(e.Key(), tags)
	}
}

// lookup returns the stored entry at key, whose hash is h, or nil. The
// caller holds s.mu.
func (s *Store) lookup(h uint64, key string) *Entry {
	e, _ := s.find(h, key)
	return e
}

// find returns the stored entry at key, whose hash is h (nil if none),
// and the entry that holds h's slot in byHash (nil if it is free): that
// one or another key's. The caller holds s.mu.
func (s *Store) find(h uint64, key string) (e, holder *Entry) {
	holder = s.byHash[h]
	if holder != nil && holder.Key() == key {
		return holder, holder
	}
	if len(s.collided) > 0 {
		e = s.collided[key]
	}
	return e, holder
}

// unindex takes e, which is indexed, out of the index. The caller holds
// s.mu.
func (s *Store) unindex(e *Entry) {
	if s.byHash[e.hash] == e {
		delete(s.byHash, e.hash)
		return
	}
	delete(s.collided, e.Key())
}

// len is the number of stored entries. The caller holds s.mu.
func (s *Store) len() int { return len(s.byHash) + len(s.collided) }

// add stores e, which is sealed and not stored anywhere, replacing the
// entry at its key; a replacement keeps the segment of the entry it
// replaces (a refreshed popular object stays protected). The caller holds
// s.mu.
func (s *Store) add(e *Entry) {
	e.protected = false
	e.hash = s.hash(e.Key())
	old, holder := s.find(e.hash, e.Key())
	if old == e {
		return
	} else if old != nil {
		e.protected = old.protected
		s.drop(old)
		if old == holder {
			holder = nil
		}
	}
	if holder == nil {
		s.byHash[e.hash] = e
	} else {
		if s.collided == nil {
			s.collided = map[string]*Entry{}
		}
		s.collided[e.Key()] = e
	}
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
// store is within its budget, and returns them when OnEvict wants them.
// The caller holds s.mu.
func (s *Store) shrink() (victims []*Entry) {
	for s.bytes > s.maxBytes {
		victim := s.probation.prev
		if victim == &s.probation {
			victim = s.protected.prev
			if victim == &s.protected {
				return victims
			}
		}
		s.drop(victim)
		s.evicted++
		if s.onEvict != nil {
			victims = append(victims, victim)
		}
	}
	return victims
}

// OnEvict makes fn receive every entry the store evicts to keep its
// budget, and every entry Put refuses for being larger than the whole
// budget: the next tier's admission. fn is called after the store's lock
// is released, in the goroutine that stored, and must not block long.
// Call it before the store is used.
func (s *Store) OnEvict(fn func(*Entry)) { s.onEvict = fn }

// hand gives victims to onEvict, outside the lock.
func (s *Store) hand(victims []*Entry) {
	for _, e := range victims {
		s.onEvict(e)
	}
}

// Get returns the entry at key, nil if none, and counts the use: a
// protected entry becomes its segment's most recent, a probation entry is
// promoted to the protected segment.
func (s *Store) Get(key string) *Entry {
	h := s.hash(key)
	s.mu.Lock()
	e := s.lookup(h, key)
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
	h := s.hash(key)
	s.mu.Lock()
	e := s.lookup(h, key)
	s.mu.Unlock()
	return e
}

// Put stores the sealed entry e at its key, replacing what was there, and
// evicts until the store is within its budget. An entry larger than the
// whole budget is not stored. e must not be stored anywhere already (store
// a Clone to store it twice).
func (s *Store) Put(e *Entry) {
	var victims []*Entry
	s.mu.Lock()
	if e.Charge() <= s.maxBytes { // under the lock: SetMax may be changing it
		s.add(e)
		victims = s.shrink()
	} else if s.onEvict != nil {
		victims = []*Entry{e}
	}
	s.mu.Unlock()
	s.hand(victims)
}

// Remove removes the entry at key and reports whether there was one.
func (s *Store) Remove(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookup(s.hash(key), key)
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
	if s.lookup(s.hash(key), key) != old {
		s.mu.Unlock()
		return false
	}
	s.add(next)
	victims := s.shrink()
	s.mu.Unlock()
	s.hand(victims)
	return true
}

// SetMax changes the budget, evicting at once if it shrank.
func (s *Store) SetMax(maxBytes int64) {
	s.mu.Lock()
	s.maxBytes = maxBytes
	s.balance()
	victims := s.shrink()
	s.mu.Unlock()
	s.hand(victims)
}

// Entries returns the stored entries (vary indexes included), protected
// ones first, each segment from its most recent: a snapshot, for writing
// the store out at a shutdown.
func (s *Store) Entries() []*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Entry, 0, s.len())
	s.each(func(e *Entry) { out = append(out, e) })
	return out
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
	keys := make([]string, 0, s.len())
	for _, e := range s.byHash {
		keys = append(keys, e.Key())
	}
	for k := range s.collided {
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
	return Stats{Entries: s.len(), Bytes: s.bytes, MaxBytes: s.maxBytes, Evicted: s.evicted}
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
	out := make([]TopObject, 0, s.len())
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
