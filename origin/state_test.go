package origin

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/meridiancdn/meridian/internal/fakeclock"
	"github.com/meridiancdn/meridian/internal/poll"
)

// The pool's State is what the status page shows of it: each server's
// failures (when, why), its open connections, health and the breaker.
func TestPoolStateReportsFailuresConnectionsAndCircuit(t *testing.T) {
	bothClients(t, func(t *testing.T, std bool) {
		a, b := startOrigin(t), startOrigin(t)
		clock := fakeclock.New()
		p := newPool(t, PoolConfig{stdTransport: std,
			Name:    "state",
			Servers: servers(a, b),
			Breaker: BreakerConfig{MaxFailures: 2, OpenFor: 10 * time.Second},
			Outlier: OutlierConfig{ConsecutiveErrors: -1},
			Now:     clock.Now,
		})
		st := p.State()
		if st.Name != "state" || st.HealthChecks || !st.CircuitOpenUntil.IsZero() || len(st.Servers) != 2 {
			t.Fatalf("fresh pool: %+v", st)
		}
		for _, s := range st.Servers {
			if s.Failures != 0 || !s.LastFailure.IsZero() || s.LastError != "" || s.Conns != 0 {
				t.Fatalf("fresh server: %+v", s)
			}
		}

		// b is gone: the try on it is refused and retried on a.
		b.kill()
		for range 4 {
			mustGet(t, p, "/s")
		}
		st = p.State()
		sa, sb := st.Servers[0], st.Servers[1]
		if sb.Failures != 2 || !sb.LastFailure.Equal(clock.Now()) || !strings.Contains(sb.LastError, "refused") {
			t.Errorf("refused server: failures %d at %v (%q), want 2 at %v, refused", sb.Failures, sb.LastFailure, sb.LastError, clock.Now())
		}
		if sb.Conns != 0 {
			t.Errorf("refused server has %d connections open", sb.Conns)
		}
		// Sequential requests reuse one kept-alive connection to a.
		if sa.Failures != 0 || sa.Conns != 1 {
			t.Errorf("live server: %d failures, %d connections, want 0 and 1", sa.Failures, sa.Conns)
		}

		// a answers 500 twice: failures with the status, and the breaker opens.
		clock.Advance(time.Minute)
		b.restart()
		a.demo.SetFailing("500")
		b.demo.SetFailing("500")
		for range 2 {
			mustGet(t, p, "/s")
		}
		st = p.State()
		if want := clock.Now().Add(10 * time.Second); !st.CircuitOpenUntil.Equal(want) {
			t.Errorf("circuit open until %v, want %v", st.CircuitOpenUntil, want)
		}
		failures := st.Servers[0].Failures + st.Servers[1].Failures
		if failures != 4 { // 2 refused before, 2 answers of 500 now
			t.Errorf("%d failures in all, want 4", failures)
		}
		for _, s := range st.Servers {
			if s.Failures > 0 && !s.LastFailure.Equal(clock.Now()) {
				t.Errorf("%s: last failure at %v, want %v", s.URL, s.LastFailure, clock.Now())
			}
		}
		if !strings.Contains(st.Servers[0].LastError, "status 500") {
			t.Errorf("last error %q, want the status", st.Servers[0].LastError)
		}

		// Closing the pool closes the idle connections: none stay counted.
		p.Close()
		poll.Until(t, 5*time.Second, "no connection counted after Close", func() bool {
			for _, s := range p.State().Servers {
				if s.Conns != 0 {
					return false
				}
			}
			return true
		})
	})
}

// A failed health check is a server's last failure too, with its reason;
// the count of failed requests stays what it was.
func TestPoolStateReportsFailedHealthChecks(t *testing.T) {
	a := startOrigin(t)
	clock := fakeclock.New()
	p := newPool(t, PoolConfig{
		Servers: servers(a),
		Health:  HealthConfig{Enabled: true, Interval: time.Hour, Fall: 1, Rise: 1},
		Now:     clock.Now,
	})
	if err := a.demo.SetFailing("500"); err != nil {
		t.Fatal(err)
	}
	p.Check(context.Background())
	st := p.State()
	s := st.Servers[0]
	if !st.HealthChecks || s.Healthy || s.Failures != 0 || !s.LastFailure.Equal(clock.Now()) ||
		!strings.Contains(s.LastError, "health check: status 500") {
		t.Fatalf("after a failed check: %+v (health checks %v)", s, st.HealthChecks)
	}
	if s.Conns != 0 {
		t.Errorf("health checks' connections counted: %d", s.Conns)
	}
}

func TestServerLastErrorIsBounded(t *testing.T) {
	var s server
	s.failed(time.Unix(1, 0), errString(strings.Repeat("é", maxErrorLen)))
	if len(s.lastError) > maxErrorLen+len("…") || !strings.HasSuffix(s.lastError, "…") || !utf8.ValidString(s.lastError) {
		t.Fatalf("last error kept as %d bytes: %q", len(s.lastError), s.lastError)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
