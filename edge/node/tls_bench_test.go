package node_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/listen"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/benchcpu"
	"github.com/meridiancdn/meridian/origin"
)

// startTLSNode starts one clustered node with an HTTPS listener (HTTP/1.1
// and HTTP/2) in front of a demo origin: the client-facing path.
func startTLSNode(b *testing.B) *node.Node {
	b.Helper()
	demo := origin.NewDemo(nil)
	osrv := httptest.NewServer(demo)
	b.Cleanup(func() { demo.Close(); osrv.Close() })
	dir := b.TempDir()
	certPEM, keyPEM, err := listen.SelfSignedCert([]string{"site.test"}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	cfg := nodeConfig("bench-0", osrv.URL)
	cfg.TLS = &edge.TLSConfig{Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	n, err := node.Start(cfg, node.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown(b.Context()) })
	return n
}

// BenchmarkClientTLSHandshake measures full TLS handshakes (no
// resumption) with a node's HTTPS listener over loopback: connect,
// handshake, close. Reported as handshakes/s too.
func BenchmarkClientTLSHandshake(b *testing.B) {
	n := startTLSNode(b)
	conf := &tls.Config{ServerName: "site.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	b.ReportAllocs()
	start, cpu := time.Now(), benchcpu.Start()
	for b.Loop() {
		c, err := net.Dial("tcp", n.TLSAddr())
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, conf)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		tc.Close()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
	cpu.Report(b)
}

// BenchmarkClientH2Hit measures hits of a 16 KiB object over HTTP/2 on
// one connection, 8 streams at a time (RunParallel with 4 per CPU).
func BenchmarkClientH2Hit(b *testing.B) {
	n := startTLSNode(b)
	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{ServerName: "site.test", InsecureSkipVerify: true},
		MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	const size = 16 << 10
	url := "https://" + n.TLSAddr() + "/h2bench?cc=max-age%3D600&size=16384"
	get := func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "site.test"
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			b.Fatalf("%s %d", resp.Proto, resp.StatusCode)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := get(); err != nil { // the fill
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	cpu := benchcpu.Start()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu.Report(b)
}
