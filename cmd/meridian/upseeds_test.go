package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
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
