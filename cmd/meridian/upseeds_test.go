package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"
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
