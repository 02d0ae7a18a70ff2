package store

import (
	"fmt"
	"math"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/meridiancdn/meridian/edge/policy"
)

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
	if e.Key() != "h/obj" {
		t.Fatalf("key %q", e.Key())
	}
	if got := e.ETag(); got != `"v1"` {
		t.Errorf("etag %q", got)
	}
	if got := e.LastModified(); !got.Equal(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("last-modified %v", got)
	}
	if got := e.Field("cache-status"); got != "parent; hit" {
		t.Errorf("Cache-Status %q", got)
	}
	wh := http.Header{}
	e.WriteFields(wh, nil)
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
	base := e.BaseHeader()
	for _, name := range []string{"Age", "Content-Length"} {
		if base[name] != nil {
			t.Errorf("base header has %s", name)
		}
	}
	if !slices.Equal(base["Via"], []string{"1.1 upstream"}) || base.Get("Surrogate-Key") != "k1 k2" || base.Get("Cache-Status") != "parent; hit" {
		t.Errorf("base header %v", base)
	}
	if e.flags&(flagHasDate|flagTyped|flagDateCompact) != flagHasDate|flagTyped|flagDateCompact {
		t.Errorf("flags %b", e.flags)
	}
	if strings.Contains(e.own(), "Date") || e.Field("date") != "Fri, 27 Nov 2026 08:00:00 GMT" {
		t.Errorf("an IMF-fixdate Date is kept in a block (%q) or lost (%q)", e.own(), e.Field("Date"))
	}
	// The type a client gets is sniffed only where net/http sniffs it:
	// neither a Content-Type nor a non-empty Content-Encoding.
	for i, tc := range []struct {
		h     http.Header
		sniff bool
	}{
		{http.Header{"Content-Type": {"text/plain"}}, false},
		{http.Header{"Content-Type": {""}}, false},
		{http.Header{"Content-Encoding": {"gzip"}}, false},
		{http.Header{"Content-Encoding": {""}}, true},
		{http.Header{"X-Other": {"1"}}, true},
	} {
		if got := storedEntry(t, fmt.Sprintf("h/sniff%d", i), 1, tc.h).SniffsType(); got != tc.sniff {
			t.Errorf("fields %v: SniffsType %v, want %v", tc.h, got, tc.sniff)
		}
	}
	// A Date in an obsolete format is kept as it came, byte for byte.
	obsolete := storedEntry(t, "h/old", 1, http.Header{"Date": {"Thursday, 01-Jan-70 00:16:00 GMT"}})
	if obsolete.flags&flagDateCompact != 0 || !strings.Contains(obsolete.own(), "Date: Thursday, 01-Jan-70 00:16:00 GMT\r\n") {
		t.Errorf("obsolete Date: flags %b, own block %q", obsolete.flags, obsolete.own())
	}
	wh = http.Header{}
	obsolete.WriteFields(wh, nil)
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
		bad.WriteFields(wh, nil)
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
	e := NewFilling(http.StatusOK, http.Header{}, p, time.Unix(0, 0))
	got := e.Policy()
	want := p
	want.Lifetime = 90 * time.Second // whole seconds, rounded down
	want.StaleIfError = math.MaxInt32 * time.Second
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("policy\n got %+v\nwant %+v", got, want)
	}
	if age := e.CurrentAge(time.Unix(10, 0)); age != 11500*time.Millisecond {
		t.Fatalf("current age %v", age)
	}
}

// An entry being filled is one allocation with what it holds apart
// (its extra: the origin's header), and the sealed Clone that is stored
// does not keep it: once its readers let go of the filling entry, the
// collector takes it while the stored entry lives on.
func TestFillingEntryIsOneAllocationAndNotKeptByItsStoredClone(t *testing.T) {
	hdr := http.Header{"Cache-Control": {"max-age=60"}, "Surrogate-Key": {"a b"}, "Cache-Status": {"up; hit"}}
	now := time.Unix(1_800_000_000, 0)
	pol := policy.Policy{Store: true, Lifetime: time.Minute}
	if n := testing.AllocsPerRun(100, func() { _ = NewFilling(200, hdr, pol, now) }); n != 1 {
		t.Errorf("NewFilling: %v allocations, want 1", n)
	}
	e := NewFilling(200, hdr, pol, now)
	gone := weak.Make(e)
	stored := e.Clone()
	stored.SetBody([]byte("body"))
	stored.Seal("k", hdr, "1.1 edge")
	e = nil
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the stored clone keeps the filling entry")
	}
	if got := stored.Field("Cache-Control"); got != "max-age=60" || stored.Filling() != nil || !slices.Equal(stored.Tags(), []string{"a", "b"}) || stored.Field("Cache-Status") != "up; hit" {
		t.Fatalf("stored clone: Cache-Control %q, filling %v, tags %q", got, stored.Filling(), stored.Tags())
	}
	runtime.KeepAlive(stored)
}

// A sealed entry, or a vary index, keeps no part of the strings its
// header's values were cut from (package origin's lean reader cuts them
// all from the origin's head): its surrogate keys, upstream Cache-Status
// and Vary names are its own, so a stored entry costs what it is charged,
// not the whole head.
func TestStoredEntriesKeepNoneOfTheHeadTheyCameIn(t *testing.T) {
	head := strings.Repeat("x", 4096) + "tag-a tag-b" + "up; hit"
	hdr := http.Header{"Cache-Control": {"max-age=60"}, "Surrogate-Key": {head[4096:4107]}, "Cache-Status": {head[4107:]}}
	gone := weak.Make(unsafe.StringData(head))
	e := NewFilling(200, hdr, policy.Policy{Store: true, Lifetime: time.Minute}, time.Unix(1_800_000_000, 0))
	stored := e.Clone()
	stored.Seal("k", hdr, "1.1 edge")
	head, hdr, e = "", nil, nil
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the sealed entry keeps the head its fields came in")
	}
	if !slices.Equal(stored.Tags(), []string{"tag-a", "tag-b"}) || stored.Field("Cache-Status") != "up; hit" {
		t.Fatalf("tags %q, Cache-Status %q", stored.Tags(), stored.Field("Cache-Status"))
	}
	runtime.KeepAlive(stored)

	// A vary index keeps its field names, not the head they came in.
	head = strings.Repeat("x", 4096) + "Accept-EncodingOrigin"
	gone = weak.Make(unsafe.StringData(head))
	idx := NewVaryIndex("k", []string{head[4096:4111], head[4111:]}, 1)
	head = ""
	runtime.GC()
	if gone.Value() != nil {
		t.Fatal("the vary index keeps the head its field names came in")
	}
	if fields, gen, ok := idx.VaryIndex(); !ok || gen != 1 || !slices.Equal(fields, []string{"Accept-Encoding", "Origin"}) {
		t.Fatalf("vary index %q %d %v", fields, gen, ok)
	}
}

// BenchmarkSeal seals a typical 1 KiB miss's entry (a fill's clone of its
// filling entry, as stored): the fields' wire-form blocks, the shared one
// interned.
func BenchmarkSeal(b *testing.B) {
	hdr := http.Header{
		"Cache-Control":  {"public, max-age=3600"},
		"Content-Length": {"1024"},
		"Content-Type":   {"application/octet-stream"},
		"Date":           {"Mon, 07 Dec 2026 03:00:00 GMT"},
		"Etag":           {`"5f3c-400"`},
		"Last-Modified":  {"Sun, 06 Dec 2026 12:00:00 GMT"},
		"Vary":           {"Accept-Encoding"},
		"X-Demo-Count":   {"1"},
	}
	e := NewFilling(200, hdr, policy.Policy{Store: true, Lifetime: time.Hour}, time.Unix(1_796_612_400, 0))
	b.ReportAllocs()
	for b.Loop() {
		c := e.Clone()
		c.Seal("bench.test/miss/obj?size=1024", hdr, "1.1 bench")
	}
}
