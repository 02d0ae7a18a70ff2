package limit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"time"

	"github.com/meridiancdn/meridian/edge/limit"
)

// A site's handler checks the client's rate, then its requests in flight,
// and answers 429 with Retry-After when either is over.
func ExampleLimiter() {
	lim, err := limit.New(limit.Config{RequestsPerSecond: 1, Burst: 2, MaxConcurrent: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "bad client address", http.StatusBadRequest)
			return
		}
		key := limit.ClientKey(ap.Addr())
		if ok, wait := lim.Allow(key); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		if !lim.Acquire(key) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests at once", http.StatusTooManyRequests)
			return
		}
		defer lim.Release(key)
		fmt.Fprintln(w, "hello")
	})

	for range 3 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "[2001:db8::1]:5555"
		handler.ServeHTTP(w, r)
		fmt.Printf("%d Retry-After=%q\n", w.Code, w.Header().Get("Retry-After"))
	}
	// Output:
	// 200 Retry-After=""
	// 200 Retry-After=""
	// 429 Retry-After="1"
}
