package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge/listen"
)

// testTLS returns a server certificate for 127.0.0.1 and a client config
// that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"127.0.0.1", "bench.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool}
}

// hitHandler answers like a cache hit and records the Host and protocol it saw.
type hitHandler struct {
	n     atomic.Int64
	host  atomic.Value
	proto atomic.Value
}

func (h *hitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n.Add(1)
	h.host.Store(r.Host)
	h.proto.Store(r.Proto)
	w.Header().Set("Cache-Control", "max-age=3600")
	io.WriteString(w, strings.Repeat("x", 1024))
}

func TestLoadHTTP3(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hitHandler{}
	srv := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(serverTLS)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(udp) }()
	defer func() {
		srv.Close()
		udp.Close()
		<-done
	}()

	res, err := Load(context.Background(), LoadConfig{
		URL:         "https://" + udp.LocalAddr().String() + "/obj?size=1024",
		Host:        "bench.test",
		Conns:       4,
		Duration:    10 * time.Second, // the request budget ends the run first
		MaxRequests: 200,
		TLSConfig:   clientTLS,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Proto != "h3" || res.Conns != 4 {
		t.Errorf("proto %q, conns %d; want h3, 4", res.Proto, res.Conns)
	}
	if res.Requests != 200 || res.Errors != 0 || res.Bytes != 200*1024 {
		t.Errorf("requests %d, errors %d, bytes %d; want 200, 0, %d", res.Requests, res.Errors, res.Bytes, 200*1024)
	}
	if got := h.n.Load(); got != 200 {
		t.Errorf("server saw %d requests, want 200", got)
	}
	if host, proto := h.host.Load(), h.proto.Load(); host != "bench.test" || proto != "HTTP/3.0" {
		t.Errorf("server saw Host %v over %v, want bench.test over HTTP/3.0", host, proto)
	}
	if res.RPS <= 0 || res.Seconds <= 0 || res.P50Ms <= 0 || res.P99Ms < res.P50Ms {
		t.Errorf("rate and latency = %v req/s over %vs, p50 %v, p99 %v", res.RPS, res.Seconds, res.P50Ms, res.P99Ms)
	}
	s := res.Sample()
	if s.Tool != "load" || s.Requests != 200 || s.P99Ms != res.P99Ms {
		t.Errorf("Sample() = %+v", s)
	}
}

func TestLoadHTTP1AndHTTP2(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	h := &hitHandler{}
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewUnstartedServer(h)
	secure.EnableHTTP2 = true
	secure.TLS = serverTLS
	secure.StartTLS()
	defer secure.Close()

	for _, tc := range []struct{ proto, url, wantProto string }{
		{"h1", plain.URL, "HTTP/1.1"},
		{"h1", secure.URL, "HTTP/1.1"},
		{"h2", secure.URL, "HTTP/2.0"},
	} {
		t.Run(tc.proto+" "+tc.url[:5], func(t *testing.T) {
			res, err := Load(context.Background(), LoadConfig{URL: tc.url + "/x", Proto: tc.proto, Conns: 3,
				Duration: 10 * time.Second, MaxRequests: 60, TLSConfig: clientTLS})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 60 || res.Errors != 0 {
				t.Errorf("requests %d, errors %d; want 60, 0", res.Requests, res.Errors)
			}
			if got := h.proto.Load(); got != tc.wantProto {
				t.Errorf("server saw %v, want %v", got, tc.wantProto)
			}
		})
	}
}

func TestLoadCountsErrors(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	res, err := Load(context.Background(), LoadConfig{URL: srv.URL, Proto: "h1", Conns: 1, Duration: 10 * time.Second, MaxRequests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 10 || res.Errors != 5 {
		t.Errorf("requests %d, errors %d; want 10, 5", res.Requests, res.Errors)
	}
}

func TestLoadFails(t *testing.T) {
	// A port with nothing behind it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	if _, err := Load(context.Background(), LoadConfig{URL: dead, Proto: "h1", Conns: 2, Duration: 10 * time.Second, MaxRequests: 10}); err == nil {
		t.Error("Load against a closed port: no error")
	}

	// A server that speaks HTTP/1.1 when HTTP/2 was asked for.
	serverTLS, clientTLS := testTLS(t)
	h1only := httptest.NewUnstartedServer(&hitHandler{})
	h1only.TLS = serverTLS
	h1only.StartTLS() // EnableHTTP2 false: ALPN offers http/1.1 only
	defer h1only.Close()
	_, err = Load(context.Background(), LoadConfig{URL: h1only.URL, Proto: "h2", Conns: 1, Duration: 10 * time.Second, MaxRequests: 5, TLSConfig: clientTLS})
	if err == nil {
		t.Error("h2 against an HTTP/1.1-only server: no error")
	}

	// A cancelled context ends the run at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	plain := httptest.NewServer(&hitHandler{})
	defer plain.Close()
	if _, err := Load(ctx, LoadConfig{URL: plain.URL, Proto: "h1", Conns: 2, Duration: time.Minute}); err == nil {
		t.Error("Load with a cancelled context: no error")
	}
}

func TestLoadConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  LoadConfig
		want string
	}{
		{LoadConfig{}, "url: required"},
		{LoadConfig{URL: "/path"}, "url: \"/path\" has no host"},
		{LoadConfig{URL: "http://127.0.0.1:1"}, "url: h3 needs https"},
		{LoadConfig{URL: "ftp://127.0.0.1:1", Proto: "h1"}, "url: scheme \"ftp\""},
		{LoadConfig{URL: "https://127.0.0.1:1", Proto: "h4"}, "proto: \"h4\""},
		{LoadConfig{URL: "https://127.0.0.1:1", Conns: -1}, "conns: negative"},
		{LoadConfig{URL: "https://127.0.0.1:1", Duration: -time.Second}, "duration: negative"},
		{LoadConfig{URL: "https://127.0.0.1:1", MaxRequests: -1}, "max_requests: negative"},
	} {
		err := tc.cfg.withDefaults().Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q…", tc.cfg, err, tc.want)
		}
		if _, err := Load(context.Background(), tc.cfg); err == nil {
			t.Errorf("Load(%+v): no error", tc.cfg)
		}
	}
	if err := (LoadConfig{URL: "https://127.0.0.1:1"}).withDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	var pe *protoError
	if !errors.As(error(&protoError{got: "HTTP/1.1", want: "h2"}), &pe) || pe.Error() != "server answered HTTP/1.1, want h2" {
		t.Errorf("protoError = %v", pe)
	}
}
