package origin_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/meridiancdn/meridian/origin"
)

// A pool in front of a demo origin, used as an http.Client's transport.
func ExamplePool() {
	demo := origin.NewDemo(nil)
	srv := httptest.NewServer(demo)
	defer srv.Close()

	pool, err := origin.NewPool(origin.PoolConfig{
		Name:    "example",
		Servers: []origin.ServerConfig{{URL: srv.URL}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	client := &http.Client{Transport: pool}
	resp, err := client.Get("http://www.example/hello?size=12&cc=max-age%3D60")
	if err != nil {
		fmt.Println(err, origin.IsTimeout(err))
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	fmt.Println(resp.Status, resp.Header.Get("Cache-Control"))
	fmt.Printf("%q\n", body)
	fmt.Println(demo.RequestsFor("/hello?size=12&cc=max-age%3D60"))
	// Output:
	// 200 OK max-age=60
	// "/hello 12\n/h"
	// 1
}
