package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/poll"
)

// Every edge of a region is a seed of every other (issue 14 item 4):
// whichever restarts, the first included, finds the others.
func TestUpSeedsListEveryEdgeOfTheRegion(t *testing.T) {
	got := upSeeds(0, 1, 3)
	want := []string{"127.0.2.1:7946", "127.0.2.2:7946", "127.0.2.3:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("upSeeds(0, 1, 3) = %v, want %v", got, want)
	}
}

// Issue 20: `up --net N` moves every edge to 127.N.R.E, so that a second
// CDN (or anything on 127.0.R.E's ports) runs beside it.
func TestUpNetMovesEveryEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CDN")
	}
	st, nodes := startUpNodes(t, "--net", "7", "--regions", "1", "--edges", "2",
		"--origin", "127.7.0.1:9000", "--geo-http", "127.7.0.1:8081", "--geo-dns", "127.7.0.1:8053")
	if len(nodes) != 2 || len(st.Regions) != 1 {
		t.Fatalf("%d edges in %d regions", len(nodes), len(st.Regions))
	}
	for _, e := range st.Regions[0].Edges {
		for _, addr := range []string{e.HTTP, e.HTTPS, e.Admin, e.Peer} {
			if !strings.HasPrefix(addr, "127.7.1.") {
				t.Errorf("%s listens on %s, want 127.7.1.E", e.Name, addr)
			}
		}
		resp, err := http.Get("http://" + e.Admin + "/healthz")
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		resp.Body.Close()
	}
	if got := upSeeds(7, 0, 2); !slices.Equal(got, []string{"127.7.1.1:7946", "127.7.1.2:7946"}) {
		t.Fatalf("seeds %v", got)
	}
}

// Issue 20: the Chromium-over-HTTP/3 command `up` prints pins the demo
// certificate the edges actually serve (only the tests knew the pin).
func TestUpPrintsTheServedCertificatesPin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CDN")
	}
	st, _ := startUpNodes(t, "--net", "8", "--regions", "1", "--edges", "1",
		"--origin", "127.8.0.1:9000", "--geo-http", "127.8.0.1:8081", "--geo-dns", "127.8.0.1:8053")
	e := st.Regions[0].Edges[0]
	conn, err := tls.Dial("tcp", e.HTTPS, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	if want := base64.StdEncoding.EncodeToString(sum[:]); st.SPKI != want {
		t.Fatalf("state pin %q, the edge serves %q", st.SPKI, want)
	}
	var out strings.Builder
	printUp(&out, st, time.Second)
	if !strings.Contains(out.String(), "--ignore-certificate-errors-spki-list="+st.SPKI) {
		t.Fatalf("up's try lines lack the pin:\n%s", out.String())
	}
}

// Issue 18: `up` runs the links between edges on mutual TLS with a
// cluster CA of its own: a peer fill works, and the peer endpoint
// refuses plain HTTP and a TLS client without a member certificate.
func TestUpLinksRunOnMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a CDN")
	}
	st, nodes := startUpNodes(t, "--net", "9", "--regions", "1", "--edges", "2",
		"--origin", "127.9.0.1:9000", "--geo-http", "127.9.0.1:8081", "--geo-dns", "127.9.0.1:8053")
	for name, n := range nodes {
		if !n.Cluster().TLS() {
			t.Errorf("%s: cluster links not on TLS", name)
		}
	}
	e1, e2 := st.Regions[0].Edges[0], st.Regions[0].Edges[1]
	poll.Until(t, 30*time.Second, "the region converges", func() bool {
		return nodes[e1.Name].Cluster().Ring().Len() == 2 && nodes[e2.Name].Cluster().Ring().Len() == 2
	})
	// A key owned by edge 1, asked at edge 2: a peer fill over the link.
	var target string
	for k := 0; ; k++ {
		target = fmt.Sprintf("/mtls/%d?cc=max-age%%3D600", k)
		if p, _ := nodes[e1.Name].Cluster().Owner(st.Host + target); p.Name == e1.Name {
			break
		}
	}
	req, _ := http.NewRequest("GET", "http://"+e2.HTTP+target, nil)
	req.Host = st.Host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if cs := resp.Header.Get("Cache-Status"); resp.StatusCode != 200 || !strings.Contains(cs, e1.Name+";") {
		t.Errorf("GET at %s of a key %s owns: %d, Cache-Status %q; want the owner's entry", e2.Name, e1.Name, resp.StatusCode, cs)
	}
	if n := nodes[e1.Name].Cluster().TLSRefused() + nodes[e2.Name].Cluster().TLSRefused(); n != 0 {
		t.Errorf("%d handshakes refused between up's own edges", n)
	}

	if resp, err := http.Get("http://" + e1.Peer + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the peer endpoint: %d, want 400 (an HTTP request to a TLS server)", resp.StatusCode)
		}
	}
	conn, err := tls.Dial("tcp", e1.Peer, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: meridian.internal\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Error("a TLS client without a member certificate was answered")
	}
}
