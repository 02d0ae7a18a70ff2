package node_test

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// diskBody is what the disk tests' origin serves at path: a length and
// bytes that differ by path, so that a body cut short, or another's, shows.
// The crash test's objects are larger (up to 512 KiB), so that a kill
// lands in the middle of a write more often; its large ones (/crash-large/,
// 2 to 6 MiB) are above its max_object_bytes, filled to disk as they
// arrive (spooled). Bodies are made once.
func diskBody(path string) []byte {
	if b, ok := diskBodies.Load(path); ok {
		return b.([]byte)
	}
	sum := crc32.ChecksumIEEE([]byte(path))
	size := 120 << 10
	n := 1 + int(sum%uint32(size))
	switch {
	case strings.HasPrefix(path, "/crash/"):
		n = 1 + int(sum%(512<<10))
	case strings.HasPrefix(path, "/crash-large/"):
		n = 2<<20 + 1 + int(sum%(4<<20))
	}
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(sum), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	diskBodies.Store(path, b)
	return b
}

var diskBodies sync.Map // path → diskBody

// diskOrigin serves diskBody, fresh for an hour, and counts requests.
type diskOrigin struct {
	requests atomic.Int64
	failing  atomic.Bool // answer 503 (uncacheable) to everything
}

func (o *diskOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.requests.Add(1)
	if o.failing.Load() {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(diskBody(r.URL.Path))
}

// diskNodeConfig is a node without a cluster, with a memory store of a
// few objects over a disk tier in dir.
func diskNodeConfig(name, originURL, dir string) node.Config {
	cfg := nodeConfig(name, originURL)
	cfg.Cluster = nil
	cfg.Admin.DrainDelay = 0
	cfg.Cache.MaxBytes = 512 << 10
	cfg.Cache.MaxObjectBytes = 128 << 10
	cfg.Cache.Disk = edge.DiskConfig{Path: dir, MaxBytes: 64 << 20}
	return cfg
}

// fetch GETs target from n: status, body, Cache-Status.
func fetch(t testing.TB, client *http.Client, n *node.Node, target string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+target, nil)
	req.Host = "site.test"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp.StatusCode, b, resp.Header.Get("Cache-Status")
}

// gauge is the value of the node's metric called name.
func gauge(t testing.TB, n *node.Node, name string) (float64, bool) {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// A node restarted on its disk serves at once what it stored before the
// restart, without asking the origin.
func TestWarmRestartServesFromDisk(t *testing.T) {
	o := &diskOrigin{}
	osrv := httptest.NewServer(o)
	defer osrv.Close()
	dir := t.TempDir()
	cfg := diskNodeConfig("edge-warm", osrv.URL, dir)
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(t)
	const objects = 30
	for i := range objects {
		if code, _, _ := fetch(t, client, n, fmt.Sprintf("/warm/%d", i)); code != 200 {
			t.Fatalf("/warm/%d: %d", i, code)
		}
	}
	moved := cfg
	moved.Cache.Disk.Path = t.TempDir()
	rep, err := n.Reload(moved)
	if err != nil || !slices.Contains(rep.NeedsRestart, "cache.disk") || slices.Contains(rep.Applied, "cache") {
		t.Fatalf("reload moving the disk tier: %v, %+v", err, rep)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := o.requests.Load()

	n, err = node.Start(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	if loaded, _ := gauge(t, n, "meridian_edge_disk_index_loaded_entries"); loaded != objects {
		t.Fatalf("the index loaded %v entries, want %d", loaded, objects)
	}
	if _, ok := gauge(t, n, "meridian_edge_disk_index_load_seconds"); !ok {
		t.Fatal("no index load time metric")
	}
	for i := range objects {
		path := fmt.Sprintf("/warm/%d", i)
		code, body, cs := fetch(t, client, n, path)
		if code != 200 || !strings.Contains(cs, "hit") || string(body) != string(diskBody(path)) {
			t.Fatalf("%s after the restart: %d, %q, %d bytes", path, code, cs, len(body))
		}
	}
	if got := o.requests.Load(); got != before {
		t.Fatalf("the origin was asked %d times after the restart", got-before)
	}
}

// crashChildEnv tells the test binary to run as the crash test's child.
const crashChildEnv = "MERIDIAN_DISK_CRASH_CHILD"

// A node killed with SIGKILL at random moments while it writes to disk
// never leaves an object served cut short or mixed up: after each kill,
// a node started on the same disk (its origin down, so that every answer
// comes from disk) serves every object it has byte for byte, or not at
// all.
func TestDiskSurvivesKill9MidWrite(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	dir := t.TempDir()
	down := &diskOrigin{}
	down.failing.Store(true)
	osrv := httptest.NewServer(down)
	defer osrv.Close()
	client := newClient(t)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	served, servedLarge, cut, midSpool := 0, 0, 0, 0
	const rounds, keys = 10, 300
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestDiskSurvivesKill9MidWrite$", "-test.v")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child is killed a random while after its tenth fill, so
		// that the disk is written to when it dies (the race detector
		// slows a child down a lot). Every other round waits for a large
		// object to have been filled whole too: a large fill takes
		// seconds under the race detector, and a round killed before any
		// ends tests no spool that was committed.
		ready := make(chan bool, 1)
		wantLarge := round%2 == 1
		go func() {
			sc := bufio.NewScanner(out)
			fills, large, said := 0, 0, false
			for sc.Scan() {
				switch sc.Text() {
				case "filled":
					fills++
				case "filled-large":
					fills++
					large++
				default:
					continue
				}
				if !said && fills >= 10 && (!wantLarge || large > 0) {
					said = true
					ready <- true
				}
			}
			if !said {
				ready <- false
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: the child stopped before its tenth fill (or its first large one)", round)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child did not start", round)
		}
		time.Sleep(time.Duration(r.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		if left, _ := filepath.Glob(filepath.Join(dir, "spool-*")); len(left) > 0 {
			midSpool++ // killed while a large object was being written
		}
		n, err := node.Start(crashNodeConfig("edge-after-kill", osrv.URL, dir), node.Options{})
		if err != nil {
			t.Fatalf("round %d: start after the kill: %v", round, err)
		}
		if st, _ := n.Handler().DiskStats(); st.Cut > 0 {
			cut++
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "spool-*")); len(left) > 0 {
			t.Fatalf("round %d: spools of the killed child left after a start: %v", round, left)
		}
		for k := range largeKeys {
			path := fmt.Sprintf("/crash-large/%d", k)
			code, body, _ := fetch(t, client, n, path)
			switch {
			case code == 200 && string(body) == string(diskBody(path)):
				servedLarge++
			case code == 200:
				n.Shutdown(context.Background())
				t.Fatalf("round %d: %s served %d bytes that differ from the %d stored", round, path, len(body), len(diskBody(path)))
			case code != http.StatusServiceUnavailable && code != http.StatusBadGateway:
				t.Fatalf("round %d: %s: status %d", round, path, code)
			}
		}
		for k := range keys {
			path := fmt.Sprintf("/crash/%d", k)
			code, body, _ := fetch(t, client, n, path)
			switch {
			case code == 200 && string(body) == string(diskBody(path)):
				served++
			case code == 200:
				n.Shutdown(context.Background())
				t.Fatalf("round %d: %s served %d bytes that differ from the %d stored", round, path, len(body), len(diskBody(path)))
			case code != http.StatusServiceUnavailable && code != http.StatusBadGateway:
				t.Fatalf("round %d: %s: status %d", round, path, code)
			}
		}
		if err := n.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds: %d answers from disk (%d of them large objects spooled), all whole; a torn segment was found and cut after %d of the kills, a spool being written at %d", rounds, served+servedLarge, servedLarge, cut, midSpool)
	if served == 0 || servedLarge == 0 {
		t.Fatal("nothing (or no large object) was ever served from disk: the test tested nothing")
	}
}

// largeKeys is how many large objects the crash test's child fills.
const largeKeys = 12

// crashNodeConfig is diskNodeConfig for objects up to 2 MiB: most are
// larger than memory's share and go to disk at once; larger ones (the
// large objects) are filled to disk as they arrive.
func crashNodeConfig(name, originURL, dir string) node.Config {
	cfg := diskNodeConfig(name, originURL, dir)
	cfg.Cache.MaxBytes = 2 << 20
	cfg.Cache.MaxObjectBytes = 2 << 20
	cfg.Cache.MaxInflightBytes = 8 << 20
	return cfg
}

// crashChild fills a node with a disk tier in dir from four clients at
// once, so that its disk writer is busy, until it is killed (or two
// minutes have passed). It prints a line for each fill.
func crashChild(t *testing.T, dir string) {
	o := &diskOrigin{}
	osrv := httptest.NewServer(o)
	defer osrv.Close()
	n, err := node.Start(crashNodeConfig("edge-crash-child", osrv.URL, dir), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	client := newClient(t)
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				before := o.requests.Load()
				path, filled := "/crash/"+strconv.Itoa(rand.IntN(300)), "filled"
				if i == 4 { // one client asks for the large objects
					path, filled = "/crash-large/"+strconv.Itoa(rand.IntN(largeKeys)), "filled-large"
				}
				code, _, _ := fetch(t, client, n, path)
				if code == 200 && o.requests.Load() > before {
					fmt.Println(filled)
				}
			}
		}()
	}
	wg.Wait()
}

// A full disk stops the disk tier admitting, never serving: what is on
// disk is served as before, and new objects from the origin. The disk is
// a small tmpfs (root can mount one; elsewhere the test is skipped).
func TestDiskFullKeepsServingHits(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=3m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs CAP_SYS_ADMIN): %v", err)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	o := &diskOrigin{}
	osrv := httptest.NewServer(o)
	defer osrv.Close()
	n, err := node.Start(diskNodeConfig("edge-full", osrv.URL, mnt), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	client := newClient(t)
	// About 6 MiB of objects through 512 KiB of memory into 3 MiB of disk.
	var stored []string
	for i := 0; i < 100; i++ {
		path := fmt.Sprintf("/full/%d", i)
		if code, _, _ := fetch(t, client, n, path); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		stored = append(stored, path)
	}
	poll.Until(t, 10*time.Second, "the disk fills (meridian_edge_disk_full 1)", func() bool {
		full, _ := gauge(t, n, "meridian_edge_disk_full")
		return full == 1
	})
	st, _ := n.Handler().DiskStats()
	if st.Objects == 0 || st.WriteErrors == 0 {
		t.Fatalf("disk stats %+v", st)
	}
	before := o.requests.Load()
	hits := 0
	for _, path := range stored {
		code, body, cs := fetch(t, client, n, path)
		if code != 200 || string(body) != string(diskBody(path)) {
			t.Fatalf("%s with the disk full: %d, %d bytes", path, code, len(body))
		}
		if strings.Contains(cs, "hit") {
			hits++
		}
	}
	asked := o.requests.Load() - before
	if hits < st.Objects || int64(hits)+asked != int64(len(stored)) {
		t.Fatalf("with the disk full: %d hits (%d on disk), the origin asked %d times for %d objects", hits, st.Objects, asked, len(stored))
	}
	t.Logf("disk full after %d objects (%d write errors): %d hits, %d from the origin", st.Objects, st.WriteErrors, hits, asked)
}
