package edge

import (
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

// storedEntry is a sealed entry with a body of n bytes, as put makes them.
func storedEntry(t *testing.T, key string, n int, hdr http.Header) *entry {
	t.Helper()
	h := &Handler{via: "1.1 test"}
	e := newFillingEntry(http.StatusOK, hdr, policy.Policy{Store: true, Lifetime: time.Hour}, time.Unix(1000, 0))
	e.body = make([]byte, n)
	h.seal(e, key, e.baseHeader())
	return e
}

// storeKeys lists the stored keys, protected first, each segment from its
// most recent.
func storeKeys(s *store) []string {
	var keys []string
	s.mu.Lock()
	s.each(func(e *entry) { keys = append(keys, e.key()) })
	s.mu.Unlock()
	return keys
}

func TestStoreEvictsByBytesProbationFirst(t *testing.T) {
	a := storedEntry(t, "h/a", 100, http.Header{})
	s := newStore(3 * a.charge())
	for _, k := range []string{"h/a", "h/b", "h/c"} {
		s.put(storedEntry(t, k, 100, http.Header{}))
	}
	if got := storeKeys(s); !slices.Equal(got, []string{"h/c", "h/b", "h/a"}) {
		t.Fatalf("recency order %v", got)
	}
	if s.get("h/a") == nil { // a is asked again: protected
		t.Fatal("h/a missing")
	}
	s.put(storedEntry(t, "h/d", 100, http.Header{}))
	if got := storeKeys(s); !slices.Equal(got, []string{"h/a", "h/d", "h/c"}) {
		t.Fatalf("after eviction: %v, want h/b evicted", got)
	}
	n, bytes := s.stats()
	if n != 3 || bytes != 3*a.charge() || s.evicted != 1 {
		t.Fatalf("stats %d entries, %d bytes, %d evicted; want 3, %d, 1", n, bytes, s.evicted, 3*a.charge())
	}
	if s.peek("h/c"); storeKeys(s)[2] != "h/c" {
		t.Fatal("peek changed the recency order")
	}
	// An entry larger than the whole budget is not stored.
	s.put(storedEntry(t, "h/big", 1000, http.Header{}))
	if s.peek("h/big") != nil || len(storeKeys(s)) != 3 {
		t.Fatal("an entry over the budget was stored")
	}
}

// A flood of keys asked once cannot evict what clients ask for again, at
// any speed: with plain LRU, enough new keys between two requests for a
// popular object evicted it (TestAttackUniqueKeyFlood lost its hot object
// when the flood outran the legitimate client).
func TestStoreFloodKeepsProtected(t *testing.T) {
	a := storedEntry(t, "h/a", 100, http.Header{})
	s := newStore(10 * a.charge())
	s.put(storedEntry(t, "h/hot", 100, http.Header{}))
	s.get("h/hot")
	for i := range 1000 {
		s.put(storedEntry(t, fmt.Sprintf("h/flood/%d", i), 100, http.Header{}))
	}
	if s.peek("h/hot") == nil {
		t.Fatal("the flood evicted the object asked twice")
	}
	if n, bytes := s.stats(); n < 9 || bytes > s.maxBytes {
		t.Fatalf("%d entries, %d bytes (budget %d)", n, bytes, s.maxBytes)
	}
	// The protected segment is bounded: objects all asked twice push its
	// oldest back to probation, from which they are evicted in turn.
	for i := range 20 {
		k := fmt.Sprintf("h/warm/%d", i)
		s.put(storedEntry(t, k, 100, http.Header{}))
		s.get(k)
	}
	s.mu.Lock()
	prot := s.protectedBytes
	s.mu.Unlock()
	if limit := int64(float64(s.maxBytes) * protectedShare); prot > limit {
		t.Fatalf("protected segment %d bytes, over its share %d", prot, limit)
	}
	if s.peek("h/hot") != nil || s.peek("h/warm/19") == nil {
		t.Fatalf("after 20 warm objects: %v", storeKeys(s))
	}
	// A replacement keeps its segment.
	old := s.peek("h/warm/19")
	if !s.replaceIf("h/warm/19", old, old.clone()) || !s.peek("h/warm/19").protected {
		t.Fatal("a refreshed protected entry fell to probation")
	}
}

func TestStoreReplaceAndRemoveKeepAccounts(t *testing.T) {
	s := newStore(1 << 20)
	tagged := http.Header{"Surrogate-Key": {"red blue"}}
	s.put(storedEntry(t, "h/a", 10, tagged))
	s.put(storedEntry(t, "h/a", 20, http.Header{"Surrogate-Key": {"blue"}})) // replaces
	if n, bytes := s.stats(); n != 1 || bytes != s.peek("h/a").charge() {
		t.Fatalf("after replace: %d entries, %d bytes", n, bytes)
	}
	if got := s.tags.lookup("red"); len(got) != 0 {
		t.Fatalf("tag of the replaced entry still indexed: %v", got)
	}
	if got := s.tags.lookup("blue"); !slices.Equal(got, []string{"h/a"}) {
		t.Fatalf("blue → %v", got)
	}
	old := s.peek("h/a")
	next := old.clone()
	next.setLifetime(0)
	if !s.replaceIf("h/a", old, next) || s.peek("h/a") != next {
		t.Fatal("replaceIf did not swap the current entry")
	}
	if s.replaceIf("h/a", old, old.clone()) {
		t.Fatal("replaceIf swapped an entry that was no longer current")
	}
	if n, bytes := s.stats(); n != 1 || bytes != next.charge() {
		t.Fatalf("after replaceIf: %d entries, %d bytes", n, bytes)
	}
	if !s.remove("h/a") || s.remove("h/a") {
		t.Fatal("remove reported wrongly")
	}
	if n, bytes := s.stats(); n != 0 || bytes != 0 || len(s.tags.keys) != 0 || len(storeKeys(s)) != 0 || s.protectedBytes != 0 {
		t.Fatalf("after remove: %d entries, %d bytes, tags %v", n, bytes, s.tags.keys)
	}
}

func TestStoreSetMaxEvicts(t *testing.T) {
	s := newStore(1 << 20)
	for i := range 10 {
		s.put(storedEntry(t, fmt.Sprintf("h/%d", i), 100, nil))
	}
	one := s.peek("h/0").charge()
	s.setMax(4 * one)
	if got := storeKeys(s); !slices.Equal(got, []string{"h/9", "h/8", "h/7", "h/6"}) {
		t.Fatalf("after shrinking: %v", got)
	}
}

func TestSealedFieldsRoundTrip(t *testing.T) {
	origin := http.Header{
		"Cache-Control":  {"max-age=60"},
		"Content-Type":   {"text/plain"},
		"Date":           {"Fri, 27 Nov 2026 08:00:00 GMT"},
		"Etag":           {`"v1"`},
		"Last-Modified":  {"Thu, 26 Nov 2026 08:00:00 GMT"},
		"Set-Thing":      {"one", "two"},
		"Via":            {"1.1 upstream"},
		"Surrogate-Key":  {"k1 k2"},
		"Cache-Status":   {"parent; hit"},
		"Age":            {"7"},
		"Content-Length": {"5"},
		"X-Evil":         {"a\r\nInjected: yes"},
	}
	e := storedEntry(t, "h/obj", 5, origin)
	if e.key() != "h/obj" {
		t.Fatalf("key %q", e.key())
	}
	if got := e.etag(); got != `"v1"` {
		t.Errorf("etag %q", got)
	}
	if got := e.lastModified(); !got.Equal(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("last-modified %v", got)
	}
	if got := e.field("cache-status"); got != "parent; hit" {
		t.Errorf("Cache-Status %q", got)
	}
	wh := http.Header{}
	e.writeFields(wh, nil)
	want := http.Header{
		"Accept-Ranges":  {"bytes"},
		"Cache-Control":  {"max-age=60"},
		"Content-Type":   {"text/plain"},
		"Date":           {"Fri, 27 Nov 2026 08:00:00 GMT"},
		"Etag":           {`"v1"`},
		"Last-Modified":  {"Thu, 26 Nov 2026 08:00:00 GMT"},
		"Set-Thing":      {"one", "two"},
		"Via":            {"1.1 upstream", "1.1 test"},
		"Content-Length": {"5"},
		"X-Evil":         {"a  Injected: yes"},
	}
	if !reflect.DeepEqual(wh, want) {
		t.Errorf("client fields\n got %v\nwant %v", wh, want)
	}
	base := e.baseHeader()
	for _, name := range []string{"Age", "Content-Length"} {
		if base[name] != nil {
			t.Errorf("base header has %s", name)
		}
	}
	if !slices.Equal(base["Via"], []string{"1.1 upstream"}) || base.Get("Surrogate-Key") != "k1 k2" || base.Get("Cache-Status") != "parent; hit" {
		t.Errorf("base header %v", base)
	}
	if e.flags&(flagHasDate|flagHasType|flagDateCompact) != flagHasDate|flagHasType|flagDateCompact {
		t.Errorf("flags %b", e.flags)
	}
	if strings.Contains(e.own(), "Date") || e.field("date") != "Fri, 27 Nov 2026 08:00:00 GMT" {
		t.Errorf("an IMF-fixdate Date is kept in a block (%q) or lost (%q)", e.own(), e.field("Date"))
	}
	// A Date in an obsolete format is kept as it came, byte for byte.
	obsolete := storedEntry(t, "h/old", 1, http.Header{"Date": {"Thursday, 01-Jan-70 00:16:00 GMT"}})
	if obsolete.flags&flagDateCompact != 0 || !strings.Contains(obsolete.own(), "Date: Thursday, 01-Jan-70 00:16:00 GMT\r\n") {
		t.Errorf("obsolete Date: flags %b, own block %q", obsolete.flags, obsolete.own())
	}
	wh = http.Header{}
	obsolete.writeFields(wh, nil)
	if got := wh["Date"]; !slices.Equal(got, []string{"Thursday, 01-Jan-70 00:16:00 GMT"}) {
		t.Errorf("obsolete Date written as %q", got)
	}
	// An invalid Date (RFC 9110 §5.6.7) is replaced by the response time
	// (RFC 9110 §6.6.1), the time the entry's age counts from.
	for _, date := range [][]string{
		{"Thu, 01 Jan 1970 0:16:00 GMT"}, {"Thu, 01  Jan  1970 00:16:00 GMT"}, {"0"},
		{"Thu, 01 Jan 1970 00:16:00 GMT", "Thu, 01 Jan 1970 00:15:00 GMT"},
	} {
		bad := storedEntry(t, "h/bad", 1, http.Header{"Date": date})
		wh = http.Header{}
		bad.writeFields(wh, nil)
		if got := wh["Date"]; !slices.Equal(got, []string{"Thu, 01 Jan 1970 00:16:40 GMT"}) {
			t.Errorf("invalid Date %q written as %q", date, got)
		}
	}
	// Entries with the same shared fields share one block.
	other := storedEntry(t, "h/other", 9, http.Header{"Cache-Control": {"max-age=60"}, "Content-Type": {"text/plain"}, "Via": {"1.1 upstream"}, "Etag": {`"v2"`}})
	if other.shared != e.shared {
		t.Error("equal shared fields were not interned to one block")
	}
}

func TestEntryPolicyRoundTrip(t *testing.T) {
	p := policy.Policy{Store: true, Lifetime: 90*time.Second + 400*time.Millisecond, StaleWhileRevalidate: time.Minute,
		StaleIfError: 1 << 62, NoStale: true, Immutable: true, InitialAge: 1500 * time.Millisecond}
	e := newFillingEntry(http.StatusOK, http.Header{}, p, time.Unix(0, 0))
	got := e.policy()
	want := p
	want.Lifetime = 90 * time.Second // whole seconds, rounded down
	want.StaleIfError = math.MaxInt32 * time.Second
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("policy\n got %+v\nwant %+v", got, want)
	}
	if age := e.currentAge(time.Unix(10, 0)); age != 11500*time.Millisecond {
		t.Fatalf("current age %v", age)
	}
}
