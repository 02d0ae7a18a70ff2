package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/meridiancdn/meridian/edge"
)

// TestHitHeaderFollowsTheEntry: a hit's header is made once per stamp and
// reused (store.HitHeader), so a new object under the same key, with the
// same size, lifetime and age as the one it replaced, must not be served
// with the old one's fields. The origin's answers differ only in ETag and
// a field; the clock stands still, so both hits have the same stamp.
func TestHitHeaderFollowsTheEntry(t *testing.T) {
	version := 0
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, version))
		w.Header().Set("X-Version", strconv.Itoa(version))
		io.WriteString(w, "same size")
	})
	for version = 0; version < 3; version++ {
		e.get("/same") // the fill
		for i := 0; i < 2; i++ {
			r, b := e.get("/same")
			wantCS(t, r, "hit")
			want := fmt.Sprintf(`"v%d"`, version)
			if got := r.Header.Get("ETag"); got != want || r.Header.Get("X-Version") != strconv.Itoa(version) || b != "same size" {
				t.Fatalf("version %d, hit %d: ETag %q X-Version %q body %q, want ETag %s", version, i, got, r.Header.Get("X-Version"), b, want)
			}
		}
		if n, err := e.edge.Purge(edge.Purge{URLs: []string{"http://" + testHost + "/same"}}); err != nil || n != 1 {
			t.Fatalf("purge: %d, %v", n, err)
		}
	}
	if n := e.origin.count("/same"); n != 3 {
		t.Fatalf("origin asked %d times, want 3", n)
	}
}

// TestEncodedBodyWithoutTypeIsNotSniffed: an answer with a
// Content-Encoding and no Content-Type gets none from the edge, on a miss
// or a hit, on either front, as net/http writes it (it does not sniff an
// encoded body: golang.org/issue/31753). The fast front's hit path once
// added "application/x-gzip", sniffed from the gzip bytes, which the miss
// and the standard front did not. A body without either is still sniffed
// by both paths.
func TestEncodedBodyWithoutTypeIsNotSniffed(t *testing.T) {
	gz := "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x4b\x4c\x4a\x06\x00\xc2\x41\x24\x35\x03\x00\x00\x00"
	for _, front := range []string{edge.FrontNetHTTP, edge.FrontFast} {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=600")
			if r.URL.Path == "/gz" {
				w.Header().Set("Content-Encoding", "gzip")
				io.WriteString(w, gz)
				return
			}
			w.Header()["Content-Type"] = nil // (net/http would sniff it here)
			io.WriteString(w, "<html>plain</html>")
		}, withFront(front))
		for i, want := range []string{"fwd=uri-miss", "hit"} {
			r, b := e.get("/gz")
			wantCS(t, r, want)
			if ct, ok := r.Header["Content-Type"]; ok || b != gz {
				t.Errorf("%s front, %s: Content-Type %q (want none), body intact %v", front, want, ct, b == gz)
			}
			r, _ = e.get("/plain")
			if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("%s front, answer %d of /plain: Content-Type %q, want the sniffed text/html", front, i, ct)
			}
		}
	}
}
