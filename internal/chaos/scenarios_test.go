package chaos_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/chaos"
	"github.com/meridiancdn/meridian/internal/leakcheck"
	"github.com/meridiancdn/meridian/internal/poll"
	"github.com/meridiancdn/meridian/origin"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// Each scenario is a defect of issue 14 (and 12 item 4), measured as the
// issue measured it, with its figure asserted as a bound.

// startCDN starts a CDN in front of o through cdntest.StartCDN, with a
// fault proxy on every peer link (the Links returned): regions r1, r2 and
// r3 of three edges each unless opts names others, peer_timeout 500ms, a
// 2s shutdown timeout, then opts.Config.
func startCDN(t *testing.T, o *chaos.Origin, opts cdntest.CDNOptions) (*cdntest.CDN, *chaos.Links) {
	t.Helper()
	if len(opts.Regions) == 0 {
		opts.Regions = []string{"r1", "r2", "r3"}
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	links := chaos.NewLinks(t)
	opts.PeerAddr = links.PeerAddr
	edit := opts.Config
	opts.Config = func(region string, i int, c *node.Config) {
		c.Sites[0].Origin = o.URL
		c.Cluster.PeerTimeout = 500 * time.Millisecond
		c.Server.ShutdownTimeout = 2 * time.Second
		if edit != nil {
			edit(region, i, c)
		}
	}
	return cdntest.StartCDN(t, nil, opts), links
}

// askEverywhere asks for every target at every running edge at once and
// checks each answer is the whole object. It returns how many interim
// (1xx) answers the clients saw.
func askEverywhere(t *testing.T, cdn *cdntest.CDN, targets []string, size int) int64 {
	t.Helper()
	var interim atomic.Int64
	var wg sync.WaitGroup
	for _, n := range cdn.Nodes() {
		for _, target := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, n.URL+target, nil)
				req.Host = cdntest.SiteHost
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					Got1xxResponse: func(int, textproto.MIMEHeader) error { interim.Add(1); return nil },
				}))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("%s via %s: %v", target, n.Name, err)
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				_, err = b.ReadFrom(resp.Body)
				if err != nil || resp.StatusCode != 200 || b.Len() != size {
					t.Errorf("%s via %s: %d, %d bytes, %v (Cache-Status %q)", target, n.Name, resp.StatusCode, b.Len(), err, resp.Header.Get("Cache-Status"))
				}
			}()
		}
	}
	wg.Wait()
	http.DefaultClient.CloseIdleConnections()
	return interim.Load()
}

func targets(prefix string, n int, query string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("/%s%d?%s", prefix, i, query)
	}
	return out
}

// Item 1: an origin slower than peer_timeout costs one fetch per object
// for the whole CDN (3 regions × 3 edges behind a shield), and leaves no
// member suspect: fast objects asked right after cost one fetch each too.
// On the code before, the 10 slow objects cost 71 fetches here (60 in the
// issue) and 10 fast ones right after 80, every asker having given up on
// its owner after peer_timeout and suspected it.
func TestSlowOriginOneFetchPerObject(t *testing.T) {
	if testing.Short() {
		t.Skip("9 edges; skipped with -short")
	}
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Shield: []string{"r1"}, Config: func(r string, i int, c *node.Config) {
		lanPreset(r, i, c)
		c.Cluster.PeerTimeout = 2 * time.Second
	}})
	const objects = 10
	steady(t, cdn, func(try int) func() {
		before := o.Requests()
		o.SetFault(chaos.Fault{HeaderDelay: 4 * time.Second}) // 2 × peer_timeout
		interim := askEverywhere(t, cdn, targets(fmt.Sprintf("slow%d-", try), objects, "cc=max-age%3D600"), 1024)
		slow := o.Requests() - before
		o.SetFault(chaos.Fault{})
		askEverywhere(t, cdn, targets(fmt.Sprintf("fast%d-", try), objects, "cc=max-age%3D600"), 1024)
		fast := o.Requests() - before - slow
		return func() {
			t.Logf("slow origin: %d origin fetches for %d objects asked at 9 edges (%.1f per object)", slow, objects, float64(slow)/objects)
			t.Logf("fast objects right after: %d origin fetches for %d objects", fast, objects)
			if slow > objects {
				t.Errorf("slow origin: %d origin fetches for %d objects, want at most 1 per object", slow, objects)
			}
			if interim != 0 {
				t.Errorf("clients saw %d interim answers: the peers' liveness signal must stay between peers", interim)
			}
			if fast > objects {
				t.Errorf("after the slow origin, %d fetches for %d fast objects: members were passed over as suspect", fast, objects)
			}
		}
	})
}

// steady runs measure until no ring changed and no member was suspected
// while it ran, at most three times, and then runs the check it returned.
// A member wrongly declared dead, or silent past peer_timeout, on a loaded
// machine (the race detector, 9 edges and other test binaries on 2 cores)
// moves keys or sends them upstream, and an exact count then measures the
// machine, not the code; the faults the scenarios inject never touch
// membership. A defect that makes members suspect one another does so on
// every try, and the third try's check catches it.
func steady(t *testing.T, cdn *cdntest.CDN, measure func(try int) (check func())) {
	t.Helper()
	for try := 1; ; try++ {
		rings := cdn.WatchRings()
		before := suspicions(cdn)
		check := measure(try)
		moved, suspected := !cdntest.Unchanged(rings()), suspicions(cdn)-before
		if !moved && suspected == 0 || try == 3 {
			if try > 1 {
				t.Logf("measured on try %d", try)
			}
			check()
			return
		}
		t.Logf("try %d: a ring changed (%v) or members were suspected (%d times) while measuring; measuring again", try, moved, suspected)
		cdn.WaitConverged()
		poll.Until(t, cdntest.ConvergeTimeout, "no edge suspects a peer", func() bool {
			for _, n := range cdn.Nodes() {
				if len(n.Cluster.Suspects()) > 0 {
					return false
				}
			}
			return true
		})
	}
}

// suspicions is how many times the running edges have passed over a peer
// as suspect (cluster.Member.Suspicions), summed. A suspicion lasts
// cluster.suspect_for.
func suspicions(cdn *cdntest.CDN) uint64 {
	var sum uint64
	for _, n := range cdn.Nodes() {
		sum += n.Cluster.Suspicions()
	}
	return sum
}

// Item 2: while the origin answers 500, a whole CDN of 3 regions behind a
// shield sends it at most one request per client request, for uncached
// objects and for stale ones alike: a 5xx is the origin's answer, not a
// failed path, and goes back once (as the error, or as the stale copy).
// On the code before, regional failover asked every other region, each
// of which asked the same origin: 2.17 origin requests per client request
// here (2.8 in the issue).
func TestFailingOriginIsNotAmplified(t *testing.T) {
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Nodes: 2, Shield: []string{"r1"}, Config: lanPreset})
	// Objects stored everywhere, then stale at once with stale-if-error.
	stale := targets("stale", 4, "cc=max-age%3D1%2C%20stale-if-error%3D600")
	askEverywhere(t, cdn, stale, 1024)
	time.Sleep(1100 * time.Millisecond) // max-age=1 passes: the copies are stale (a wait on the clock, not a speed)

	o.SetFault(chaos.Fault{Status: 500})
	steady(t, cdn, func(try int) func() {
		before := o.Requests()
		clients := 0
		for k, n := range cdn.Nodes() {
			// A new object each time (an uncached miss), then a stale one.
			resp, _, err := n.Get(fmt.Sprintf("/down%d-%d?cc=max-age%%3D600", try, k))
			clients++
			if err != nil || resp.StatusCode < 500 {
				t.Fatalf("uncached object via %s while the origin fails: %v %v", n.Name, resp, err)
			}
			resp, _, err = n.Get(stale[k%len(stale)])
			clients++
			if err != nil || resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "stale") {
				t.Fatalf("stale object via %s while the origin fails: %v %v", n.Name, resp, err)
			}
		}
		got := o.Requests() - before
		return func() {
			t.Logf("failing origin: %d origin requests for %d client requests (%.2f each)", got, clients, float64(got)/float64(clients))
			if got > int64(clients) {
				t.Errorf("failing origin: %d origin requests for %d client requests, want at most 1 each", got, clients)
			}
		}
	})
}

// Item 2, per key: while the origin answers 500, it sees at most one
// request per key per backoff period from the whole CDN (3 regions behind
// a shield), however often and wherever the key is asked: every edge asks
// for every key, uncached ones and ones with a stale copy, round after
// round for three backoff periods. The failure is remembered where the
// fill failed (the shield's owner of the key) and by the edges that asked
// it, so that only the first ask after a period ends reaches the origin.
// The backoff is fixed (error_backoff = max_error_backoff) so that the
// bound is simple: n requests for a key are at least a period apart, so
// n <= 1 + elapsed/period.
func TestFailingOriginOneRequestPerKeyPerBackoff(t *testing.T) {
	const period = 2 * time.Second
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Nodes: 2, Shield: []string{"r1"}, Config: func(r string, i int, c *node.Config) {
		lanPreset(r, i, c) // nobody fails here
		c.Cache.ErrorBackoff, c.Cache.MaxErrorBackoff = period, period
	}})
	stale := targets("keystale", 4, "cc=max-age%3D1%2C%20stale-if-error%3D600")
	askEverywhere(t, cdn, stale, 1024)
	time.Sleep(1100 * time.Millisecond) // max-age=1 passes: the copies are stale (a wait on the clock, not a speed)

	o.SetFault(chaos.Fault{Status: 500})
	steady(t, cdn, func(try int) func() {
		uncached := targets(fmt.Sprintf("keydown%d-", try), 4, "cc=max-age%3D600")
		keys := append(slices.Clone(uncached), stale...)
		before := map[string]int64{}
		for _, k := range keys {
			before[k] = o.RequestsFor(k)
		}
		start := time.Now()
		clients, rounds := 0, 0
		// Rounds a little apart (pacing the load, not synchronising)
		// until three periods have passed.
		tick := time.NewTicker(period / 8)
		defer tick.Stop()
		for ; time.Since(start) < 3*period; <-tick.C {
			rounds++
			var wg sync.WaitGroup
			for _, n := range cdn.Nodes() {
				for _, k := range keys {
					clients++
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, _, err := n.Get(k)
						isStale := slices.Contains(stale, k)
						switch {
						case err != nil:
							t.Errorf("%s via %s while the origin fails: %v", k, n.Name, err)
						case isStale && (resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Status"), "stale")):
							t.Errorf("%s via %s while the origin fails: %d (Cache-Status %q), want the stale copy", k, n.Name, resp.StatusCode, resp.Header.Get("Cache-Status"))
						case !isStale && resp.StatusCode < 500:
							t.Errorf("%s via %s while the origin fails: %d, want the origin's error", k, n.Name, resp.StatusCode)
						}
					}()
				}
			}
			wg.Wait()
		}
		elapsed := time.Since(start)
		bound := 1 + int64(elapsed/period)
		got := map[string]int64{}
		var total int64
		for _, k := range keys {
			got[k] = o.RequestsFor(k) - before[k]
			total += got[k]
		}
		return func() {
			t.Logf("failing origin: %d origin requests for %d keys asked %d times (%d rounds at %d edges over %v, backoff %v): %.2f per key per period, at most %d per key allowed",
				total, len(keys), clients, rounds, len(cdn.Nodes()), elapsed.Round(time.Millisecond), period,
				float64(total)/float64(len(keys))/(float64(elapsed)/float64(period)), bound)
			for _, k := range keys {
				if got[k] > bound {
					t.Errorf("%s: %d origin requests in %v, want at most one per %v backoff period (%d)", k, got[k], elapsed.Round(time.Millisecond), period, bound)
				}
			}
		}
	})
}

// Item 3: while the origin hangs (accepts, never answers), a client
// whose object has a stale copy in the CDN gets that copy after
// grace.stale_timeout (1 s by default), not after the site's timeout: the
// owner answers from its copy early and lets its fill go on. On the code
// before, clients waited 12 s median (20 s max) in the issue, stale
// copies included.
func TestHangingOriginServesStaleEarly(t *testing.T) {
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Nodes: 2, Shield: []string{"r1"}, Config: lanPreset})
	stale := targets("hang", 4, "cc=max-age%3D1")
	askEverywhere(t, cdn, stale, 1024)
	time.Sleep(1100 * time.Millisecond) // max-age=1 passes: the copies are stale (a wait on the clock, not a speed)

	o.SetFault(chaos.Fault{Hang: true})
	var mu sync.Mutex
	var waits []time.Duration
	var wg sync.WaitGroup
	for k, n := range cdn.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, body, err := n.Get(stale[k%len(stale)])
			took := time.Since(start)
			if err != nil || resp.StatusCode != 200 || len(body) != 1024 || !strings.Contains(resp.Header.Get("Cache-Status"), "stale") {
				t.Errorf("stale object via %s while the origin hangs: %v %v (after %v)", n.Name, resp, err, took)
				return
			}
			mu.Lock()
			waits = append(waits, took)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(waits) == 0 {
		return
	}
	slices.Sort(waits)
	p50, worst := waits[len(waits)/2], waits[len(waits)-1]
	t.Logf("hanging origin: stale answers after %v median, %v at most (%d clients; stale_timeout 1s)", p50, worst, len(waits))
	// A bound far from the site's 10 s timeout (the wait before), loose
	// enough for a loaded machine: the figure is the log line's.
	if p50 > 5*time.Second {
		t.Errorf("hanging origin: stale answers after %v median, want about stale_timeout (1s)", p50)
	}
}

// lanPreset gives every edge the LAN preset's failure detection, for a
// test in which no member fails, or in which a failure is met on the
// connections to the dead member rather than through membership. Each
// membership change makes every edge build rings (over a second each
// under -race here), during which the local preset's 100ms probes
// declare live members dead: with several edges in one process on a
// loaded machine, regions flapped for minutes and peer asks timed out.
func lanPreset(_ string, _ int, c *node.Config) { c.Cluster.Preset = cluster.PresetLAN }

// Item 2, the other half: when the path fails (region r2 cannot reach
// the shield, and may not fill from the origin directly), the fill still
// fails over to another region, which reaches the shield: one origin
// request, and the client is served.
func TestFailedPathStillFailsOver(t *testing.T) {
	o := chaos.StartOrigin(t)
	// Nothing here waits for a hung peer (the cut link refuses at once):
	// a peer_timeout far above the harness's 500ms keeps a peer that is
	// merely slow on a loaded machine from being passed over (and marked
	// suspect) on the way to the failover region.
	cdn, links := startCDN(t, o, cdntest.CDNOptions{Nodes: 2, Shield: []string{"r1"}, NoDirect: true, Config: func(r string, i int, c *node.Config) {
		lanPreset(r, i, c)
		c.Cluster.PeerTimeout = 10 * time.Second
	}})
	links.Set("r2", "r1", chaos.Link{Refuse: true})
	for k := range 4 {
		target := fmt.Sprintf("/partitioned%d?cc=max-age%%3D600", k)
		resp, body, err := cdn.Region("r2").Get(k%2, target)
		if err != nil || resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("%s via r2 cut off from the shield: %v %v", target, resp, err)
		}
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "r3-") || !strings.Contains(cs, "r1-") {
			t.Errorf("Cache-Status %q: want the fill through r3 and the shield r1", cs)
		}
		if got := o.RequestsFor(target); got != 1 {
			t.Errorf("%s: %d origin requests, want 1", target, got)
		}
	}
}

// Issue 12 item 4: a client's Via naming a shield edge (edge names are
// public in every Via and Cache-Status) does not bypass the shield, even
// with direct fills forbidden. On the code before, the owner took the
// Via for a shield's and went straight to the origin.
func TestClientViaDoesNotBypassShield(t *testing.T) {
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Regions: []string{"r1", "r2"}, Nodes: 2, Shield: []string{"r1"}, NoDirect: true, Config: lanPreset})
	steady(t, cdn, func(try int) func() {
		var counts []int64
		for k := range 4 {
			target := fmt.Sprintf("/via%d-%d?cc=max-age%%3D600", try, k)
			resp, _, err := cdn.Region("r2").Get(k%2, target, "Via", "1.1 r1-1, 1.1 r1-2")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", target, resp, err)
			}
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "r1-") {
				t.Errorf("Cache-Status %q: the shield was bypassed", cs)
			}
			// The shield region asked next has it: the origin saw one
			// request.
			if resp, _, err := cdn.Region("r1").Get(k%2, target); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s via r1: %v %v", target, resp, err)
			}
			counts = append(counts, o.RequestsFor(target))
		}
		return func() {
			for k, got := range counts {
				if got != 1 {
					t.Errorf("object %d: %d origin requests, want 1 (through the shield)", k, got)
				}
			}
		}
	})
}

// Item 4: restarting each edge of a region in turn, the seed first, each
// one killed and back only after the others declared it dead, leaves one
// view everywhere, with the seeds as `meridian up` gave them before (the
// first edge is the others' only seed and has none itself). On the code
// before, the restarted seed stayed alone for ever: members re-joined
// only while alone, and the seed's only seed was itself.
func TestRestartingTheSeedHealsTheRegion(t *testing.T) {
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Regions: []string{"r1"}})
	reg := cdn.Region("r1")
	for i := range 3 {
		name := reg.Node(i).Name
		reg.Kill(i)
		reg.WaitConverged(cdntest.ConvergeTimeout) // the others dropped it
		reg.Restart(i)
		// Bounded wait, not a timing: with the fix the region is whole
		// again within a re-join interval (1s on the local preset).
		reg.WaitConverged(cdntest.ConvergeTimeout)
		t.Logf("after restarting %s: %v", name, views(reg))
	}
	// And it serves as one region: each object once from the origin.
	askEverywhere(t, cdn, targets("healed", 5, "cc=max-age%3D600"), 1024)
	if got := o.Requests(); got != 5 {
		t.Errorf("%d origin requests for 5 objects asked at every edge, want 5", got)
	}
}

// Item 5: with replicas 2, stopping an edge (killed, or gracefully) and
// restarting it costs the origin (almost) nothing: while it is down, the
// fills it owned go to the live replica (the first failed one too); once
// it is back, empty, it takes each key it owns from the replica (or the
// member that held it meanwhile) before the origin. On the code before,
// the restarted edge refetched 27 of 60 keys (killed or graceful), and 2
// more fills went to the origin while it was down.
// views returns, for each live node of a region, the members on its
// ring, sorted.
func views(reg *cdntest.Region) map[string][]string {
	out := map[string][]string{}
	for _, i := range reg.Live() {
		n := reg.Node(i)
		for _, p := range n.Cluster.Ring().Peers() {
			out[n.Name] = append(out[n.Name], p.Name)
		}
	}
	return out
}

func TestRestartWithReplicasCostsNoOriginFetch(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		t.Run(map[bool]string{false: "killed", true: "graceful"}[graceful], func(t *testing.T) {
			restartWithReplicas(t, graceful)
		})
	}
}

func restartWithReplicas(t *testing.T, graceful bool) {
	o := chaos.StartOrigin(t)
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Regions: []string{"r1"}, Config: func(_ string, i int, c *node.Config) {
		c.Cluster.Replicas = 2
		c.Cluster.Zone = []string{"a", "b", "c"}[i]
	}})
	reg := cdn.Region("r1")
	const keys = 60
	all := targets("rep", keys, "cc=max-age%3D600")
	for k, target := range all {
		if resp, _, err := reg.Get(k%3, target); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", target, resp, err)
		}
	}
	// The replicas take their copies in the background.
	poll.Until(t, 20*time.Second, "every key is stored twice", func() bool {
		total := 0
		for i := range 3 {
			e, _, _ := reg.Node(i).Edge.StoreStats()
			total += e
		}
		return total >= 2*keys
	})
	// Setting up is not what is measured: a membership flap on a loaded
	// machine may cost a key a second fetch here.
	filled := o.Requests()
	if filled < keys || filled > keys+keys/30 {
		t.Fatalf("%d origin requests to fill %d keys with their replicas, want %d", filled, keys, keys)
	}

	// Stop edge 3 and ask for every key at the others at once: killed,
	// before the region has noticed, the owner's failed fills go to the
	// replica; gracefully, the region drops it at once.
	if graceful {
		reg.Stop(2)
	} else {
		reg.Kill(2)
	}
	for k, target := range all {
		if resp, _, err := reg.Get(k%2, target); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s with an edge down: %v %v", target, resp, err)
		}
	}
	down := o.Requests() - filled
	reg.WaitConverged(cdntest.ConvergeTimeout)

	// Back, empty: every key asked at every edge.
	reg.Restart(2)
	reg.WaitConverged(cdntest.ConvergeTimeout)
	for i := range 3 {
		for _, target := range all {
			if resp, _, err := reg.Get(i, target); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s after the restart: %v %v", target, resp, err)
			}
		}
	}
	back := o.Requests() - filled - down
	t.Logf("replicas 2: %d origin fetches while an edge was down, %d after it restarted (of %d keys)", down, back, keys)
	if down+back > keys/30 {
		t.Errorf("restarting an edge with replicas 2 cost %d origin fetches (%d while down, %d after), want about 0 (at most %d)", down+back, down, back, keys/30)
	}
}

// Item 6: killing the owner while it streams an object larger than the
// 1 MiB a peer answer is buffered to: every reader at the other edges
// still gets the whole body, resumed with a Range request (If-Range: the
// object's strong ETag) from the next source, here the origin. On the
// code before, every reader got a 200 cut at half the body.
func TestOwnerDyingMidStreamIsResumed(t *testing.T) {
	o := chaos.StartOrigin(t)
	// The owner's death is met on its connections, not through failure
	// detection: see lanPreset.
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Regions: []string{"r1"}, Config: lanPreset})
	reg := cdn.Region("r1")
	const size = 4 << 20
	target := fmt.Sprintf("/big?size=%d&etag=1&cc=max-age%%3D600", size)
	want := origin.DemoBody("/big", size)
	owner := reg.Owner(target)
	// The origin sends half the body, then waits: the owner is
	// mid-stream, and so are the readers.
	o.SetFault(chaos.Fault{BodyStall: time.Minute})
	var wg sync.WaitGroup
	var complete atomic.Int32
	var progress []*atomic.Int64
	for i := range 3 {
		if i == owner {
			continue
		}
		for range 2 {
			read := new(atomic.Int64)
			progress = append(progress, read)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, body, err := getReading(reg.Node(i), target, read)
				switch {
				case err != nil:
					t.Errorf("reader at edge %d: %v after %d bytes", i+1, err, len(body))
				case resp.StatusCode != 200 || !bytes.Equal(body, want):
					t.Errorf("reader at edge %d: status %d, %d bytes (want %d, the same bytes)", i+1, resp.StatusCode, len(body), size)
				default:
					complete.Add(1)
				}
			}()
		}
	}
	waitReading(t, o, progress)
	reg.Kill(owner)
	wg.Wait()
	t.Logf("owner killed mid-stream: %d of %d readers got the whole body; %d Range requests at the origin", complete.Load(), len(progress), o.RangeRequests())
	if o.RangeRequests() < 1 {
		t.Errorf("no Range request reached the origin: the rest of the body was not resumed from it")
	}
}

// waitReading waits until the origin has stalled half-way through the
// owner's fill and every reader has bytes of the owner's answer: only
// then is the owner mid-stream for every reader's edge. Killed before an
// edge had the owner's answer (which it reads up to 1 MiB of before
// passing it on), the edge met a failed peer fill, not a broken stream,
// and filled from the origin itself: a time.Sleep here raced that, and
// lost under load.
func waitReading(t *testing.T, o *chaos.Origin, readers []*atomic.Int64) {
	t.Helper()
	poll.Until(t, 20*time.Second, "the origin stalls half-way", func() bool { return o.Stalls() > 0 })
	poll.Until(t, 20*time.Second, "every reader has bytes of the owner's answer", func() bool {
		for _, r := range readers {
			if r.Load() == 0 {
				return false
			}
		}
		return true
	})
}

// getReading is n.Get that counts the body's bytes in read as they
// arrive.
func getReading(n *cdntest.Node, target string, read *atomic.Int64) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, n.URL+target, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = cdntest.SiteHost
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		body.Write(buf[:k])
		read.Add(int64(k))
		if err == io.EOF {
			return resp, body.Bytes(), nil
		}
		if err != nil {
			return resp, body.Bytes(), err
		}
	}
}

// Item 6, otherwise: without a strong validator the rest cannot be asked
// for safely, and the truncation is signalled to the readers (a body
// shorter than its Content-Length), never passed off as whole.
func TestOwnerDyingMidStreamWithoutValidatorIsSignalled(t *testing.T) {
	o := chaos.StartOrigin(t)
	// The owner's death is met on its connections, not through failure
	// detection: see lanPreset.
	cdn, _ := startCDN(t, o, cdntest.CDNOptions{Regions: []string{"r1"}, Config: lanPreset})
	reg := cdn.Region("r1")
	const size = 4 << 20
	target := fmt.Sprintf("/weak?size=%d&lm=1&cc=max-age%%3D600", size)
	owner := reg.Owner(target)
	reader := (owner + 1) % 3
	o.SetFault(chaos.Fault{BodyStall: time.Minute})
	done := make(chan error, 1)
	read := new(atomic.Int64)
	go func() {
		resp, body, err := getReading(reg.Node(reader), target, read)
		if err == nil && resp.StatusCode == 200 && len(body) == size {
			err = errors.New("whole body")
		} else if err == nil {
			err = fmt.Errorf("status %d, %d bytes, no error", resp.StatusCode, len(body))
			if resp.ContentLength == size && len(body) < size {
				err = nil // short of its Content-Length: detectable
			}
		} else {
			err = nil // the body broke: detectable
		}
		done <- err
	}()
	waitReading(t, o, []*atomic.Int64{read})
	reg.Kill(owner)
	if err := <-done; err != nil {
		t.Errorf("reader of an object without a strong validator: %v; want a detectable truncation", err)
	}
	if n := o.RangeRequests(); n != 0 {
		t.Errorf("%d Range requests without a strong validator, want 0", n)
	}
}
