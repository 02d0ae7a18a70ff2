package node_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/origin"
)

// tamperProxy is a TCP proxy on a link between edges that alters what the
// far end answers: it rewrites bytes in the clear (rewrite), or flips a
// bit in each encrypted TLS record once the handshake is done (flip).
type tamperProxy struct {
	ln     net.Listener
	target string
	from   []byte // rewrite: from → to, same length
	to     []byte
	flip   atomic.Bool
	// flipAfter is how many bytes of each connection's answers pass
	// untouched before flip takes effect (0: from the first record), so
	// that a body can break mid-way.
	flipAfter int64

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	seen    bytes.Buffer // every byte either way, as it crossed
	altered atomic.Int64 // rewrites and flips made
	wg      sync.WaitGroup
}

func startTamperProxy(t *testing.T, target, from, to string) *tamperProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tamperProxy{ln: ln, target: target, from: []byte(from), to: []byte(to), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tamperProxy) Addr() string { return p.ln.Addr().String() }

func (p *tamperProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	p.mu.Unlock()
}

func (p *tamperProxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	p.track(c, up)
	// The client's first encrypted record (TLS 1.3: its Finished flight)
	// comes after the server's whole flight; from then on, each record
	// of the server is application data, or a ticket.
	var armed atomic.Bool
	up2c := &recordFlipper{armed: armed.Load}
	c2up := &recordFlipper{seen: func() { armed.Store(true) }}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c, c2up, false) }()
	go func() { defer wg.Done(); p.pipe(c, up, up2c, true) }()
	wg.Wait()
}

func (p *tamperProxy) pipe(dst, src net.Conn, rf *recordFlipper, answer bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	var passed int64 // bytes forwarded so far
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			p.seen.Write(chunk)
			p.mu.Unlock()
			switch {
			case answer && p.flip.Load():
				p.altered.Add(int64(rf.apply(chunk, passed >= p.flipAfter)))
			case answer:
				if k := bytes.Count(chunk, p.from); k > 0 {
					chunk = bytes.ReplaceAll(chunk, p.from, p.to)
					p.altered.Add(int64(k))
				}
			default:
				rf.apply(chunk, false)
			}
			if _, err := dst.Write(chunk); err != nil {
				return
			}
			passed += int64(n)
		}
		if err != nil {
			return
		}
	}
}

// sawCleartext reports whether s crossed the proxy in the clear.
func (p *tamperProxy) sawCleartext(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.seen.Bytes(), []byte(s))
}

// recordFlipper follows the TLS records of one direction (5-byte header:
// type, version, length).
type recordFlipper struct {
	hdr    []byte
	typ    byte
	remain int
	armed  func() bool // flip the records of this direction from now on
	seen   func()      // called at the first encrypted record
}

// apply walks chunk's records; with flip, it flips the last bit of each
// encrypted record (type 23) once armed, and returns how many it flipped.
func (f *recordFlipper) apply(chunk []byte, flip bool) int {
	flipped := 0
	for i := 0; i < len(chunk); {
		if f.remain == 0 {
			f.hdr = append(f.hdr, chunk[i])
			i++
			if len(f.hdr) == 5 {
				f.typ, f.remain = f.hdr[0], int(f.hdr[3])<<8|int(f.hdr[4])
				f.hdr = f.hdr[:0]
				if f.typ == 23 && f.seen != nil {
					f.seen()
				}
			}
			continue
		}
		n := min(f.remain, len(chunk)-i)
		if f.remain == n && f.typ == 23 && flip && f.armed != nil && f.armed() {
			chunk[i+n-1] ^= 1
			flipped++
		}
		f.remain -= n
		i += n
	}
	return flipped
}

// tamperCDN is two regions of one edge each: "us" fills through the
// origin shield "eu", and the link from us to eu goes through a tampering
// proxy. With tls, the links are on mutual TLS with one cluster CA.
type tamperCDN struct {
	t      *testing.T
	demo   *origin.Demo
	eu, us *node.Node
	proxy  *tamperProxy
	client *http.Client
}

func startTamperCDN(t *testing.T, withTLS bool) *tamperCDN {
	t.Helper()
	return startTamperCDNAfter(t, withTLS, 0)
}

// startTamperCDNAfter is startTamperCDN with a proxy whose flips spare
// each connection's first flipAfter bytes of answers.
func startTamperCDNAfter(t *testing.T, withTLS bool, flipAfter int64) *tamperCDN {
	t.Helper()
	o := cdntest.StartOrigin(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := &tamperCDN{t: t, demo: o.Demo, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	var ca *certs.CA
	dir := t.TempDir()
	if withTLS {
		var err error
		if ca, err = certs.NewCA("meridian test cluster CA", time.Hour, nil); err != nil {
			t.Fatal(err)
		}
		if err := ca.WriteCertFile(filepath.Join(dir, "ca.crt")); err != nil {
			t.Fatal(err)
		}
	}
	cdn := cdntest.StartCDN(t, o, cdntest.CDNOptions{Nodes: 1, Shield: []string{"eu"}, Config: func(_ string, _ int, cfg *node.Config) {
		cfg.Cluster.PeerTimeout = 2 * time.Second
		if withTLS {
			cert, key, err := ca.IssueFiles(dir, cfg.Name)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Cluster.TLS = cluster.TLSConfig{CAFile: filepath.Join(dir, "ca.crt"), CertFile: cert, KeyFile: key}
		}
	}})
	eu, us := cdn.Region("eu").Node(0), cdn.Region("us").Node(0)
	c.eu, c.us = eu.Node, us.Node
	if c.eu.Cluster().TLS() != withTLS || c.us.Cluster().TLS() != withTLS {
		t.Fatalf("cluster TLS on: eu %v, us %v; want %v", c.eu.Cluster().TLS(), c.us.Cluster().TLS(), withTLS)
	}
	c.proxy = startTamperProxy(t, c.eu.Cluster().PeerAddr(), "genuine", "HACKED!")
	c.proxy.flipAfter = flipAfter
	// The link from us to the shield goes through the proxy.
	cfg := us.Config()
	if cfg.Regions[0].Name != "eu" {
		t.Fatalf("regions table %+v: eu is not first", cfg.Regions)
	}
	cfg.Regions[0].Edges[0].Peer = c.proxy.Addr()
	if _, err := us.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// get asks the us edge for target; it returns the status, body and
// Cache-Status.
func (c *tamperCDN) get(target string) (int, string, string) {
	c.t.Helper()
	resp, body, err := c.do(target)
	if err != nil {
		c.t.Fatalf("GET %s: body: %v", target, err)
	}
	return resp.StatusCode, body, resp.Header.Get("Cache-Status")
}

// try is get that returns a body's read error (and what was read)
// instead of failing the test.
func (c *tamperCDN) try(target string) (int, string, error) {
	c.t.Helper()
	resp, body, err := c.do(target)
	return resp.StatusCode, body, err
}

// do asks the us edge for target and reads the answer's body; only a
// failed request fails the test.
func (c *tamperCDN) do(target string) (*http.Response, string, error) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+c.us.HTTPAddr()+target, nil)
	req.Host = "site.test"
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// The issue's story: a proxy on the link to the shield rewrites the
// shield's answer. Over mutual TLS it sees no cleartext to rewrite, and a
// bit it flips fails the record's MAC: the fill falls back to the origin
// and what the edge caches and serves is the origin's body, never the
// proxy's.
func TestTamperedShieldLinkOverMutualTLS(t *testing.T) {
	c := startTamperCDN(t, true)
	const target = "/genuine?cc=max-age%3D600&size=3000"
	want := string(origin.DemoBody("/genuine", 3000))

	// Rewriting: the proxy never sees the body (nor the path) in the
	// clear, so it changes nothing, and the shield's answer comes through.
	status, body, cs := c.get(target)
	if status != 200 || body != want {
		t.Fatalf("GET via the shield: %d, body intact %v (Cache-Status %q)", status, body == want, cs)
	}
	if !strings.Contains(cs, "eu-1") {
		t.Errorf("Cache-Status %q: not filled through the shield eu-1", cs)
	}
	if c.proxy.sawCleartext("genuine") || c.proxy.altered.Load() != 0 {
		t.Errorf("the proxy read the link in the clear (altered %d)", c.proxy.altered.Load())
	}

	// Flipping a bit of each of the shield's records: the record's MAC
	// fails, the shield is passed over, and the origin fills.
	c.proxy.flip.Store(true)
	const target2 = "/genuine/2?cc=max-age%3D600&size=3000"
	want2 := string(origin.DemoBody("/genuine/2", 3000))
	status, body, cs = c.get(target2)
	if c.proxy.altered.Load() == 0 {
		t.Fatal("the proxy flipped no record: the test tested nothing")
	}
	if status != 200 || body != want2 {
		t.Fatalf("GET with the link tampered: %d, body intact %v (Cache-Status %q)", status, body == want2, cs)
	}
	if !strings.Contains(cs, "shield-unreachable") {
		t.Errorf("Cache-Status %q does not say the shield was passed over", cs)
	}
	// What the us edge cached is the origin's body.
	status, body, cs = c.get(target2)
	if status != 200 || body != want2 || !strings.Contains(cs, "us-1; hit") {
		t.Errorf("second GET: %d, body intact %v, Cache-Status %q; want a hit of the origin's body", status, body == want2, cs)
	}
	if n := c.demo.RequestsFor(target2); n < 1 || n > 2 {
		t.Errorf("origin saw %d requests for the tampered object, want 1 or 2 (us directly, and maybe eu)", n)
	}
}

// Without TLS the same proxy rewrites the shield's answer and the edge
// caches and serves the rewritten body: what mutual TLS is for.
func TestTamperedShieldLinkInTheClear(t *testing.T) {
	c := startTamperCDN(t, false)
	const target = "/genuine?cc=max-age%3D600&size=3000"
	want := string(origin.DemoBody("/genuine", 3000))
	_, body, _ := c.get(target)
	_, again, cs := c.get(target)
	if c.proxy.altered.Load() == 0 || body == want || again != body || !strings.Contains(cs, "us-1; hit") {
		t.Fatalf("plain link: altered %d, served the origin's body %v, cached the same %v (Cache-Status %q); "+
			"want the rewritten body cached", c.proxy.altered.Load(), body == want, again == body, cs)
	}
	if !strings.Contains(body, "HACKED!") {
		t.Errorf("body does not carry the rewrite: %.40q", body)
	}
}

// A body that breaks mid-way on the link to the shield: the proxy lets
// the headers and the first 64 KiB of each answer through, then flips a
// bit in every record. Over mutual TLS the first flipped record fails
// its MAC, so the rest of the body never arrives: an answer read whole
// (up to 1 MiB) is passed over for the origin unseen; a streamed one
// with a strong ETag is resumed from the origin with a Range (before,
// only a peer's answer was: a shield's reached the client cut short); a
// streamed one without a validator cannot be resumed and is cut short,
// which its client sees (a detectable truncation, not a short body that
// looks whole). In no case does the edge store what it got: once the
// link is left alone, the next GET is a new fill of the origin's bytes,
// then a hit of them.
func TestTamperedShieldLinkMidBodyOverMutualTLS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		query string
		cut   bool // the first client sees the body end early
	}{
		{"300KiB read whole", 300 << 10, "", false},
		{"3MiB streamed with a strong ETag", 3 << 20, "&etag=1", false},
		{"3MiB streamed without a validator", 3 << 20, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A CDN each: the first break has the shield passed over
			// for a while.
			c := startTamperCDNAfter(t, true, 64<<10)
			c.proxy.flip.Store(true)
			path := "/genuine/" + strconv.Itoa(tc.size)
			target := path + "?cc=max-age%3D600&size=" + strconv.Itoa(tc.size) + tc.query
			want := string(origin.DemoBody(path, int64(tc.size)))
			status, body, err := c.try(target)
			if c.proxy.altered.Load() == 0 {
				t.Fatal("the proxy flipped no record: the test tested nothing")
			}
			switch {
			case status != 200:
				t.Fatalf("GET with the link tampered mid-body: %d", status)
			case tc.cut && (err == nil || len(body) >= tc.size):
				t.Fatalf("GET with the link tampered mid-body: %d bytes of %d, error %v; want a body cut short with an error", len(body), tc.size, err)
			case tc.cut && body != want[:len(body)]:
				t.Fatalf("the cut body's %d bytes are not the origin's", len(body))
			case !tc.cut && (err != nil || body != want):
				t.Fatalf("GET with the link tampered mid-body: %d bytes of %d, intact %v, error %v", len(body), tc.size, body == want, err)
			}
			if tc.cut {
				c.proxy.flip.Store(false)
			}
			status, body, cs := c.get(target)
			if status != 200 || body != want {
				t.Fatalf("second GET: %d, %d bytes of %d, intact %v, Cache-Status %q; want the origin's body",
					status, len(body), tc.size, body == want, cs)
			}
			if hit := strings.Contains(cs, "us-1; hit"); hit == tc.cut {
				t.Errorf("second GET: Cache-Status %q, want a hit: %v", cs, !tc.cut)
			}
			status, body, cs = c.get(target)
			if status != 200 || body != want || !strings.Contains(cs, "us-1; hit") {
				t.Fatalf("third GET: %d, %d bytes of %d, intact %v, Cache-Status %q; want a hit of the origin's body",
					status, len(body), tc.size, body == want, cs)
			}
		})
	}
}
