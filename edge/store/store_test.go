package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// storedEntry is a sealed entry with a body of n bytes, as edge makes
// them.
func storedEntry(t *testing.T, key string, n int, hdr http.Header) *Entry {
	t.Helper()
	e := NewFilling(http.StatusOK, hdr, policy.Policy{Store: true, Lifetime: time.Hour}, time.Unix(1000, 0))
	e.SetBody(make([]byte, n))
	e.Seal(key, e.BaseHeader(), "1.1 test")
	return e
}

// storeKeys lists the stored keys, protected first, each segment from its
// most recent.
func storeKeys(s *Store) []string {
	var keys []string
	s.mu.Lock()
	s.each(func(e *Entry) { keys = append(keys, e.Key()) })
	s.mu.Unlock()
	return keys
}

func TestStoreEvictsByBytesProbationFirst(t *testing.T) {
	a := storedEntry(t, "h/a", 100, http.Header{})
	s := New(3 * a.Charge())
	for _, k := range []string{"h/a", "h/b", "h/c"} {
		s.Put(storedEntry(t, k, 100, http.Header{}))
	}
	if got := storeKeys(s); !slices.Equal(got, []string{"h/c", "h/b", "h/a"}) {
		t.Fatalf("recency order %v", got)
	}
	if s.Get("h/a") == nil { // a is asked again: protected
		t.Fatal("h/a missing")
	}
	s.Put(storedEntry(t, "h/d", 100, http.Header{}))
	if got := storeKeys(s); !slices.Equal(got, []string{"h/a", "h/d", "h/c"}) {
		t.Fatalf("after eviction: %v, want h/b evicted", got)
	}
	if st := s.Stats(); st != (Stats{Entries: 3, Bytes: 3 * a.Charge(), MaxBytes: 3 * a.Charge(), Evicted: 1}) {
		t.Fatalf("stats %+v; want 3 entries, %d bytes, 1 evicted", st, 3*a.Charge())
	}
	if s.Peek("h/c"); storeKeys(s)[2] != "h/c" {
		t.Fatal("peek changed the recency order")
	}
	// An entry larger than the whole budget is not stored.
	s.Put(storedEntry(t, "h/big", 1000, http.Header{}))
	if s.Peek("h/big") != nil || len(storeKeys(s)) != 3 {
		t.Fatal("an entry over the budget was stored")
	}
}

// A flood of keys asked once cannot evict what clients ask for again, at
// any speed: with plain LRU, enough new keys between two requests for a
// popular object evicted it (TestAttackUniqueKeyFlood lost its hot object
// when the flood outran the legitimate client).
func TestStoreFloodKeepsProtected(t *testing.T) {
	a := storedEntry(t, "h/a", 100, http.Header{})
	s := New(10 * a.Charge())
	s.Put(storedEntry(t, "h/hot", 100, http.Header{}))
	s.Get("h/hot")
	for i := range 1000 {
		s.Put(storedEntry(t, fmt.Sprintf("h/flood/%d", i), 100, http.Header{}))
	}
	if s.Peek("h/hot") == nil {
		t.Fatal("the flood evicted the object asked twice")
	}
	if st := s.Stats(); st.Entries < 9 || st.Bytes > st.MaxBytes {
		t.Fatalf("%+v", st)
	}
	// The protected segment is bounded: objects all asked twice push its
	// oldest back to probation, from which they are evicted in turn.
	for i := range 20 {
		k := fmt.Sprintf("h/warm/%d", i)
		s.Put(storedEntry(t, k, 100, http.Header{}))
		s.Get(k)
	}
	s.mu.Lock()
	prot := s.protectedBytes
	s.mu.Unlock()
	if limit := int64(float64(s.maxBytes) * protectedShare); prot > limit {
		t.Fatalf("protected segment %d bytes, over its share %d", prot, limit)
	}
	if s.Peek("h/hot") != nil || s.Peek("h/warm/19") == nil {
		t.Fatalf("after 20 warm objects: %v", storeKeys(s))
	}
	// A replacement keeps its segment.
	old := s.Peek("h/warm/19")
	if !s.ReplaceIf("h/warm/19", old, old.Clone()) || !s.Peek("h/warm/19").protected {
		t.Fatal("a refreshed protected entry fell to probation")
	}
}

func TestStoreReplaceAndRemoveKeepAccounts(t *testing.T) {
	s := New(1 << 20)
	tagged := http.Header{"Surrogate-Key": {"red blue"}}
	s.Put(storedEntry(t, "h/a", 10, tagged))
	s.Put(storedEntry(t, "h/a", 20, http.Header{"Surrogate-Key": {"blue"}})) // replaces
	if st := s.Stats(); st.Entries != 1 || st.Bytes != s.Peek("h/a").Charge() {
		t.Fatalf("after replace: %+v", st)
	}
	if got := s.KeysByTag("red"); len(got) != 0 {
		t.Fatalf("tag of the replaced entry still indexed: %v", got)
	}
	if got := s.KeysByTag("blue"); !slices.Equal(got, []string{"h/a"}) {
		t.Fatalf("blue → %v", got)
	}
	old := s.Peek("h/a")
	next := old.Clone()
	next.SetLifetime(0)
	if !s.ReplaceIf("h/a", old, next) || s.Peek("h/a") != next {
		t.Fatal("replaceIf did not swap the current entry")
	}
	if s.ReplaceIf("h/a", old, old.Clone()) {
		t.Fatal("replaceIf swapped an entry that was no longer current")
	}
	if st := s.Stats(); st.Entries != 1 || st.Bytes != next.Charge() {
		t.Fatalf("after ReplaceIf: %+v", st)
	}
	if !s.Remove("h/a") || s.Remove("h/a") {
		t.Fatal("remove reported wrongly")
	}
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 || len(s.tags.keys) != 0 || len(storeKeys(s)) != 0 || s.protectedBytes != 0 {
		t.Fatalf("after Remove: %+v, tags %v", st, s.tags.keys)
	}
}

func TestStoreSetMaxEvicts(t *testing.T) {
	s := New(1 << 20)
	for i := range 10 {
		s.Put(storedEntry(t, fmt.Sprintf("h/%d", i), 100, nil))
	}
	one := s.Peek("h/0").Charge()
	s.SetMax(4 * one)
	if got := storeKeys(s); !slices.Equal(got, []string{"h/9", "h/8", "h/7", "h/6"}) {
		t.Fatalf("after shrinking: %v", got)
	}
}

// Put and SetMax may run at once (a reload changes the budget while
// fills store): Put read the budget without the lock.
func TestStoreSetMaxWhilePut(t *testing.T) {
	s := New(1 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			s.SetMax(int64(1<<20 - i))
		}
	}()
	for i := range 200 {
		s.Put(storedEntry(t, fmt.Sprintf("h/%d", i), 10, nil))
	}
	<-done
	if st := s.Stats(); st.Bytes > st.MaxBytes || st.Entries != 200 {
		t.Fatalf("%+v", st)
	}
}

func TestStoreTop(t *testing.T) {
	s := New(1 << 20)
	for _, k := range []string{"h/a", "h/b", "h/c"} {
		s.Put(storedEntry(t, k, 10, nil))
	}
	s.Put(NewVaryIndex("h/v", []string{"Accept-Encoding"}, 1))
	for k, n := range map[string]int{"h/a": 1, "h/b": 3, "h/c": 1} {
		for range n {
			s.Get(k).CountHit()
		}
	}
	want := []TopObject{{Key: "h/b", Hits: 3, Bytes: 10}, {Key: "h/a", Hits: 1, Bytes: 10}}
	if got := s.Top(2); !slices.Equal(got, want) {
		t.Fatalf("Top(2) = %v, want %v", got, want)
	}
	if got := s.Top(10); len(got) != 3 {
		t.Fatalf("Top(10) = %v: the vary index is not an object", got)
	}
}

// TestStoreIndexAgreesWithAMap runs random puts, gets, replacements and
// removals, evicting as they go, against a map of what should be stored,
// with the store's hash weakened so that keys share hashes (the index's
// collision path, which a seeded 64-bit hash almost never takes).
func TestStoreIndexAgreesWithAMap(t *testing.T) {
	for _, weak := range []struct {
		name string
		hash func(string) uint64
	}{
		{"seeded", nil},
		{"by length", func(k string) uint64 { return uint64(len(k)) }},
		{"one hash", func(string) uint64 { return 7 }},
	} {
		t.Run(weak.name, func(t *testing.T) {
			tmpl := storedEntry(t, "k", 10, http.Header{})
			entry := func(key string) *Entry {
				d := tmpl.data
				d.meta, d.keyLen = key+tmpl.own(), uint32(len(key))
				return &Entry{data: d}
			}
			const keys, steps = 40, 4000
			s := New(25 * entry("h/00").Charge())
			if weak.hash != nil {
				s.hash = weak.hash
			}
			model := map[string]*Entry{}
			s.OnEvict(func(e *Entry) {
				if model[e.Key()] != e {
					t.Fatalf("evicted %q, which is not what the model holds", e.Key())
				}
				delete(model, e.Key())
			})
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range steps {
				key := fmt.Sprintf("h/%d", rnd.IntN(keys)) // "h/7" and "h/17" differ in length
				switch op := rnd.IntN(10); {
				case op < 4:
					e := entry(key)
					model[key] = e
					s.Put(e)
				case op < 7:
					if got := s.Get(key); got != model[key] {
						t.Fatalf("step %d: Get(%q) = %p, want %p", i, key, got, model[key])
					}
				case op < 8:
					_, had := model[key]
					delete(model, key)
					if got := s.Remove(key); got != had {
						t.Fatalf("step %d: Remove(%q) = %v, want %v", i, key, got, had)
					}
				default:
					next := entry(key)
					old := model[key]
					if s.ReplaceIf(key, old, next) != true {
						t.Fatalf("step %d: ReplaceIf(%q) refused the stored entry", i, key)
					}
					model[key] = next
				}
				if i%100 != 0 {
					continue
				}
				// Every key the model holds is found, no other is, and the
				// counts agree.
				stored := s.Keys()
				slices.Sort(stored)
				want := slices.Sorted(maps.Keys(model))
				if !slices.Equal(stored, want) {
					t.Fatalf("step %d: store keys %v, model %v", i, stored, want)
				}
				for k := range keys {
					key := fmt.Sprintf("h/%d", k)
					if got := s.Peek(key); got != model[key] {
						t.Fatalf("step %d: Peek(%q) = %p, want %p", i, key, got, model[key])
					}
				}
				if st := s.Stats(); st.Entries != len(model) || len(s.Entries()) != len(model) {
					t.Fatalf("step %d: %d entries counted, %d listed, model %d", i, st.Entries, len(s.Entries()), len(model))
				}
			}
		})
	}
}
