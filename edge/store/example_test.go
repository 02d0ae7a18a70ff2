package store_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
)

// A response is built as it arrives, sealed under its key, stored, and
// found again; its fields are kept in wire form, ready for a hit.
func Example() {
	s := store.New(1 << 20)
	hdr := http.Header{"Content-Type": {"text/plain"}, "Etag": {`"v1"`}, "Surrogate-Key": {"news front"}}
	e := store.NewFilling(http.StatusOK, hdr, policy.Policy{Store: true, Lifetime: time.Minute}, time.Unix(0, 0))
	e.SetBody([]byte("hello"))
	e.Seal("example.test/hello", e.BaseHeader(), "1.1 edge-a")
	s.Put(e)

	hit := s.Get("example.test/hello")
	shared, own := hit.Blocks()
	fmt.Printf("%d %q\n%q\n%q\n", hit.Status(), hit.Body(), shared, own)
	fmt.Println(hit.Judge(hit.CurrentAge(time.Unix(30, 0)), nil).Fresh, s.KeysByTag("news"))
	// Output:
	// 200 "hello"
	// "Accept-Ranges: bytes\r\nContent-Type: text/plain\r\nVia: 1.1 edge-a\r\n"
	// "Etag: \"v1\"\r\n"
	// true [example.test/hello]
}
