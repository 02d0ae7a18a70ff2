package policy_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
)

func ExampleEvaluate() {
	received := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	resp := http.Header{
		"Cache-Control": {"max-age=60, stale-while-revalidate=30"},
		"Date":          {received.Format(http.TimeFormat)},
		"Age":           {"10"},
	}
	p := policy.Evaluate(http.MethodGet, http.Header{}, http.StatusOK, resp, received, received, policy.Options{})
	fmt.Println("store:", p.Store, "lifetime:", p.Lifetime, "initial age:", p.InitialAge)

	// Later, on a hit: judge the stored response at the current time.
	client := policy.ParseCacheControl(nil) // ignore client Cache-Control
	for _, after := range []time.Duration{20 * time.Second, 60 * time.Second, 90 * time.Second} {
		age := p.CurrentAge(received, received.Add(after))
		v := p.Judge(age, &client)
		fmt.Printf("after %v: fresh=%v swr=%v ttl=%v\n", after, v.Fresh, v.StaleWhileRevalidate, v.TTL)
	}
	// Output:
	// store: true lifetime: 1m0s initial age: 10s
	// after 20s: fresh=true swr=false ttl=30s
	// after 1m0s: fresh=false swr=true ttl=-10s
	// after 1m30s: fresh=false swr=false ttl=-40s
}

func ExampleSecondaryKey() {
	vary := []string{"Accept-Encoding"}
	a, _ := policy.SecondaryKey(vary, http.Header{"Accept-Encoding": {"gzip, br"}})
	b, _ := policy.SecondaryKey([]string{"accept-encoding"}, http.Header{"Accept-Encoding": {"gzip", "br"}})
	fmt.Println(a == b)
	// Output: true
}
