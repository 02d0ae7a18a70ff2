package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/origin"
)

// runUp starts a demo CDN on loopback with embedded defaults: a demo origin
// and an edge in front of it (HTTP/1.1, HTTP/2 and HTTP/3).
func runUp(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	originAddr := fs.String("origin", "127.0.0.1:9000", "demo origin address")
	edgeAddr := fs.String("listen", "127.0.0.1:8080", "edge HTTP/1.1 address")
	tlsAddr := fs.String("tls-listen", "127.0.0.1:8443", "edge HTTPS/HTTP/2 (TCP) and HTTP/3 (UDP) address")
	verbose := fs.Bool("v", false, "log every event to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))

	demo := origin.NewDemo(nil)
	defer demo.Close()
	oln, err := net.Listen("tcp", *originAddr)
	if err != nil {
		return fmt.Errorf("demo origin: %w", err)
	}
	osrv := &http.Server{Handler: demo, ReadHeaderTimeout: 10 * time.Second}
	go osrv.Serve(oln)
	defer osrv.Close()

	dir, err := os.MkdirTemp("", "meridian-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	certPEM, keyPEM, err := edge.SelfSignedCert([]string{"127.0.0.1", "localhost", "cdn.meridian.test"}, time.Now())
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := errors.Join(os.WriteFile(certFile, certPEM, 0o600), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		return err
	}

	cfg := edge.Config{
		Name:   "edge-local",
		Listen: *edgeAddr,
		TLS:    &edge.TLSConfig{Listen: *tlsAddr, CertFile: certFile, KeyFile: keyFile},
		Sites: []edge.SiteConfig{{
			Hosts:  []string{"localhost", "127.0.0.1", "cdn.meridian.test"},
			Origin: "http://" + oln.Addr().String(),
			Grace:  edge.GraceConfig{WhileRevalidate: 10 * time.Second, IfError: 10 * time.Minute},
		}},
	}
	h, err := edge.New(cfg, edge.Options{Logger: log})
	if err != nil {
		return err
	}
	defer h.Close()
	srv := edge.NewServer(cfg, h, log)
	if err := srv.Start(); err != nil {
		return err
	}
	e := srv.Addr()
	fmt.Printf(`meridian up: a demo CDN on loopback (Ctrl-C stops it)

  demo origin   http://%[1]s        (counts at /_stats)
  edge          http://%[2]s        HTTP/1.1
                https://%[3]s       HTTP/2, and HTTP/3 on UDP %[3]s

try:
  curl -si 'http://%[2]s/hello?cc=max-age%%3D60&size=64' | grep -i cache-status   # twice: fwd=uri-miss, then hit
  curl -sik --http2 'https://%[3]s/hello?cc=max-age%%3D60&size=64' | grep -i cache-status
  curl -s http://%[1]s/_stats
`, oln.Addr(), e, srv.TLSAddr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
