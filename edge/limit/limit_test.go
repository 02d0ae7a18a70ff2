package limit

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/meridiancdn/meridian/internal/fakeclock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustNew(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// key returns a distinct IPv4 client key for i.
func key(i int) netip.Prefix {
	return ClientKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Enabled() || c.Burst != 0 || c.MaxClients != 65536 || c.Name != "default" || c.Now == nil {
		t.Errorf("zero config: %+v", c)
	}
	for _, tc := range []struct {
		rate  float64
		burst int
	}{{0.1, 1}, {1, 1}, {2.5, 3}, {100, 100}, {1e12, 1<<31 - 1}} {
		if c := (Config{RequestsPerSecond: tc.rate}).WithDefaults(); c.Burst != tc.burst || !c.Enabled() {
			t.Errorf("rate %v: burst %d, want %d", tc.rate, c.Burst, tc.burst)
		}
	}
	if c := (Config{RequestsPerSecond: 10, Burst: 50}).WithDefaults(); c.Burst != 50 {
		t.Errorf("burst set: %d", c.Burst)
	}
	if !(Config{MaxConcurrent: 1}).Enabled() {
		t.Error("max_concurrent alone is a limit")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{RequestsPerSecond: -1}, "rate: negative"},
		{Config{RequestsPerSecond: nan()}, "rate: NaN is not a rate"},
		{Config{RequestsPerSecond: inf()}, "rate: +Inf is not a rate"},
		{Config{RequestsPerSecond: 1, Burst: -1}, "burst: negative (-1)"},
		{Config{Burst: 5}, "burst: set without a rate"},
		{Config{MaxConcurrent: -1}, "max_concurrent: negative (-1)"},
		{Config{MaxClients: -3}, "max_clients: negative (-3)"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
		if _, err := New(tc.cfg); err == nil || !strings.HasPrefix(err.Error(), "limits: ") {
			t.Errorf("New(%+v) = %v, want the same error", tc.cfg, err)
		}
	}
	err := Config{RequestsPerSecond: -1, MaxConcurrent: -1}.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("want both mistakes, got %v", err)
	}
}

func nan() float64 { var z float64; return z / z }
func inf() float64 { var z float64; return 1 / z }

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := ClientKey(netip.MustParseAddr(tc.addr)); got.String() != tc.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if a, b := ClientKey(netip.MustParseAddr("2001:db8::1")), ClientKey(netip.MustParseAddr("2001:db8:0:1::1")); a == b {
		t.Error("two /64s share a key")
	}
	if got := ClientKey(netip.Addr{}); got != (netip.Prefix{}) {
		t.Errorf("invalid address: %v", got)
	}
}

// A client gets its burst at once, then its rate; it is told how long to
// wait; other clients are not affected. No sleeping: the clock is fake.
func TestRate(t *testing.T) {
	clock := fakeclock.New()
	l := mustNew(t, Config{RequestsPerSecond: 2, Burst: 3, Now: clock.Now})
	a, b := key(1), key(2)
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok %v, retry after %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Error("another client refused")
	}
	clock.Advance(200 * time.Millisecond)
	if ok, wait := l.Allow(a); ok || wait != 300*time.Millisecond {
		t.Errorf("200ms later: ok %v, retry after %v; want refused, 300ms", ok, wait)
	}
	clock.Advance(300 * time.Millisecond)
	if ok, _ := l.Allow(a); !ok {
		t.Error("refused once a token was back")
	}
	if ok, _ := l.Allow(a); ok {
		t.Error("two requests on one token")
	}
	// A quiet spell refills the bucket to the burst, no further.
	clock.Advance(time.Hour)
	n := 0
	for range 10 {
		if ok, _ := l.Allow(a); ok {
			n++
		}
	}
	if n != 3 {
		t.Errorf("after an hour: %d allowed, want the burst of 3", n)
	}
	if st := l.Stats(); st.RefusedRate != 10 || st.RateClients != 2 {
		t.Errorf("stats %+v", st)
	}
}

// A slow rate still gives a finite, exact wait.
func TestRateSlow(t *testing.T) {
	clock := fakeclock.New()
	l := mustNew(t, Config{RequestsPerSecond: 1.0 / 60, Now: clock.Now})
	if ok, _ := l.Allow(key(1)); !ok {
		t.Fatal("first refused")
	}
	if ok, wait := l.Allow(key(1)); ok || wait != time.Minute {
		t.Errorf("second: %v, %v; want refused for a minute", ok, wait)
	}
}

// The zero config limits nothing and keeps no table.
func TestZeroConfigAdmitsAll(t *testing.T) {
	l := mustNew(t, Config{})
	for i := range 1000 {
		if ok, _ := l.Allow(key(i % 3)); !ok {
			t.Fatal("refused by the zero config")
		}
		if !l.Acquire(key(i % 3)) {
			t.Fatal("refused by the zero config")
		}
	}
	if st := l.Stats(); st != (Stats{}) {
		t.Errorf("stats %+v", st)
	}
}

// An attacker rotating addresses cannot grow the rate table past
// max_clients; the least recently seen client is forgotten and comes back
// with a full bucket, while a client seen recently keeps its state.
func TestRateTableBounded(t *testing.T) {
	const maxClients = 512
	clock := fakeclock.New()
	l := mustNew(t, Config{RequestsPerSecond: 1, Burst: 1, MaxClients: maxClients, Now: clock.Now})
	victim := key(0)
	l.Allow(victim)
	if ok, _ := l.Allow(victim); ok {
		t.Fatal("second request on a burst of 1")
	}
	for i := 1; i < 20_000; i++ {
		l.Allow(key(i))
		if i%100 == 0 {
			if ok, _ := l.Allow(victim); ok { // seen often: remembered
				t.Fatalf("after %d rotating clients the busy client's bucket was forgotten", i)
			}
		}
	}
	if n := l.Stats().RateClients; n > maxClients {
		t.Errorf("%d clients remembered, want at most %d", n, maxClients)
	}
	for i := 200_000; i < 202_000; i++ { // the victim falls silent
		l.Allow(key(i))
	}
	if ok, _ := l.Allow(victim); !ok {
		t.Error("a forgotten client was refused: eviction must only forget")
	}
}

func TestConcurrent(t *testing.T) {
	l := mustNew(t, Config{MaxConcurrent: 2})
	a, b := key(1), key(2)
	if !l.Acquire(a) || !l.Acquire(a) {
		t.Fatal("under the cap refused")
	}
	if l.Acquire(a) {
		t.Fatal("third in flight admitted")
	}
	if !l.Acquire(b) {
		t.Fatal("another client refused")
	}
	l.Release(a)
	if !l.Acquire(a) {
		t.Fatal("refused after a release")
	}
	l.Release(a)
	l.Release(a)
	l.Release(b)
	l.Release(b) // without its Acquire: ignored
	if st := l.Stats(); st.ConcurrentClients != 0 || st.RefusedConcurrent != 1 {
		t.Errorf("after every release: %+v", st)
	}
	if !l.Acquire(b) || !l.Acquire(b) || l.Acquire(b) {
		t.Error("an unmatched Release raised the cap")
	}
}

// The concurrency table holds only clients in flight; when it is full a
// new client is refused, a known one is not, and a finished one makes
// room.
func TestConcurrentTableFull(t *testing.T) {
	const maxClients = 256
	l := mustNew(t, Config{MaxConcurrent: 4, MaxClients: maxClients})
	admitted := 0
	for i := range 2 * maxClients {
		if l.Acquire(key(i)) {
			admitted++
		}
	}
	if admitted != maxClients {
		t.Fatalf("%d clients admitted, want %d", admitted, maxClients)
	}
	if !l.Acquire(key(0)) {
		t.Error("a client in the table refused")
	}
	if l.Acquire(key(100_000)) {
		t.Error("a new client admitted into a full table")
	}
	l.Release(key(5))
	if !l.Acquire(key(100_000)) {
		t.Error("no room after a client finished")
	}
	if st := l.Stats(); st.ConcurrentClients != maxClients || st.RefusedFull != maxClients+1 {
		t.Errorf("stats %+v", st)
	}
}

// Under -race: many goroutines on a few keys never hold more than the cap
// per key, and the table empties when they are done.
func TestConcurrentRace(t *testing.T) {
	const keys, workers, rounds, limit = 4, 16, 2000, 3
	clock := fakeclock.New()
	l := mustNew(t, Config{MaxConcurrent: limit, RequestsPerSecond: 1e6, Burst: 10, Now: clock.Now})
	var inflight [keys]atomic.Int32
	var over atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				k := (w + i) % keys
				l.Allow(key(k))
				if !l.Acquire(key(k)) {
					continue
				}
				if inflight[k].Add(1) > limit {
					over.Add(1)
				}
				runtime.Gosched()
				inflight[k].Add(-1)
				l.Release(key(k))
			}
		})
	}
	wg.Wait()
	if over.Load() != 0 {
		t.Errorf("%d times above the cap", over.Load())
	}
	if st := l.Stats(); st.ConcurrentClients != 0 || st.RateClients != keys {
		t.Errorf("after the run: %+v", st)
	}
}

func TestLimiterMetrics(t *testing.T) {
	l := mustNew(t, Config{Name: "www.example", RequestsPerSecond: 1, MaxConcurrent: 1, Now: fakeclock.New().Now})
	l.Allow(key(1))
	l.Allow(key(1))
	l.Acquire(key(1))
	l.Acquire(key(1))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l)
	got := gather(t, reg)
	for series, want := range map[string]float64{
		"meridian_limit_clients,limiter=www.example,table=concurrency":        1,
		"meridian_limit_clients,limiter=www.example,table=rate":               1,
		"meridian_limit_refused_total,limiter=www.example,reason=concurrency": 1,
		"meridian_limit_refused_total,limiter=www.example,reason=rate":        1,
		"meridian_limit_refused_total,limiter=www.example,reason=table_full":  0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// gather returns every series of reg as "name,label=value,..." -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}
