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
