package cluster

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// The cache keeps a signature for as long as its time is within the skew,
// drops it after, and refuses new ones when full rather than forgetting.
func TestReplayCache(t *testing.T) {
	c := newReplayCache(30, 3)
	mac := func(i int) []byte { return []byte(fmt.Sprintf("%016d-rest-of-the-mac", i)) }
	const t0 = 1_795_780_800
	if err := c.use(mac(1), t0, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.use(mac(1), t0, t0+30); !errors.Is(err, errReplayed) {
		t.Fatalf("again within the skew: %v, want %v", err, errReplayed)
	}
	if err := c.use(mac(2), t0+1, t0+1); err != nil {
		t.Fatal(err)
	}
	if err := c.use(mac(3), t0+2, t0+2); err != nil {
		t.Fatal(err)
	}
	if err := c.use(mac(4), t0+2, t0+2); !errors.Is(err, errReplayFull) {
		t.Fatalf("a fourth signature in a cache of 3: %v, want %v", err, errReplayFull)
	}
	if err := c.use(mac(1), t0, t0+2); !errors.Is(err, errReplayed) {
		t.Fatalf("a full cache still tells replays: %v", err)
	}
	// t0 leaves the window at t0+31: its signature is dropped (verify
	// refuses it on the clock anyway) and the room is reused.
	if err := c.use(mac(4), t0+31, t0+31); err != nil {
		t.Fatalf("after the first signature expired: %v", err)
	}
	if c.len() != 3 {
		t.Errorf("len = %d, want 3", c.len())
	}
	if err := c.use(mac(9), t0+100, t0+100); err != nil || c.len() != 1 {
		t.Errorf("after every group expired: %v, len %d; want nil, 1", err, c.len())
	}
}

// verify refuses a signature the second time, whatever its version, and
// the signer's own requests never collide.
func TestVerifyOnce(t *testing.T) {
	now := signTime
	s := &signer{key: []byte(testSecret), skew: 30 * time.Second, now: func() time.Time { return now },
		seen: newReplayCache(30, maxReplayEntries)}
	h := http.Header{}
	s.sign(h, "GET", InternalHost, "/purge?k=1", "edge1", hopInternal, s.self)
	if _, _, err := s.verify("GET", InternalHost, "/purge?k=1", h); err != nil {
		t.Fatal(err)
	}
	now = now.Add(29 * time.Second)
	if _, _, err := s.verify("GET", InternalHost, "/purge?k=1", h); !errors.Is(err, errReplayed) {
		t.Fatalf("replayed 29s later: %v, want %v", err, errReplayed)
	}
	now = now.Add(2 * time.Second)
	if _, _, err := s.verify("GET", InternalHost, "/purge?k=1", h); !errors.Is(err, errClockSkew) {
		t.Fatalf("replayed 31s later: %v, want %v", err, errClockSkew)
	}
	for i := range 100 { // same parts, same second: each signed anew
		h := http.Header{}
		s.sign(h, "GET", "site.test", "/a", "edge1", hopOwner, s.self)
		if _, _, err := s.verify("GET", "site.test", "/a", h); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

// BenchmarkReplayCacheFull fills a cache to its bound and reports the heap
// it holds (bytes/entry).
func BenchmarkReplayCacheFull(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := newReplayCache(30, maxReplayEntries)
		mac := make([]byte, 16)
		const t0 = 1_795_780_800
		for i := range maxReplayEntries {
			mac[0], mac[1], mac[2], mac[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
			if err := c.use(mac, t0+int64(i%61)-30, t0); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/maxReplayEntries, "bytes/entry")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
		runtime.KeepAlive(c)
	}
}
