package certs_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/internal/benchcpu"
)

// BenchmarkHandshake measures full TLS 1.3 handshakes (no resumption),
// client and server over an in-memory pipe, with the certificate from a
// static tls.Config and from a Source choosing among sites, a list and a
// default by SNI. go test -bench Handshake -benchtime 3s ./edge/certs/
func BenchmarkHandshake(b *testing.B) {
	ca, dir := newTestCA(b), b.TempDir()
	site := pair(b, ca, dir, "site", "b.example")
	static, err := certs.Load("tls", site)
	if err != nil {
		b.Fatal(err)
	}
	src, err := certs.New(certs.Config{
		Default:      ptr(pair(b, ca, dir, "default", "default.example")),
		Certificates: []certs.KeyPair{pair(b, ca, dir, "w", "*.w.example"), pair(b, ca, dir, "a", "a.example")},
		Sites: []certs.Site{
			{Field: "sites[0].tls", Names: []string{"b.example"}, Files: &site},
			{Field: "sites[1].tls", Names: []string{"c.example"}, Files: ptr(pair(b, ca, dir, "c", "c.example"))},
		},
	}, certs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for _, bc := range []struct {
		name   string
		server *tls.Config
	}{
		{"static", &tls.Config{Certificates: []tls.Certificate{*static}, SessionTicketsDisabled: true}},
		{"source", &tls.Config{GetCertificate: src.GetCertificate, SessionTicketsDisabled: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := &tls.Config{ServerName: "b.example", RootCAs: ca.pool}
			b.ReportAllocs()
			cpu := benchcpu.Start()
			for b.Loop() {
				c, s := net.Pipe()
				done := make(chan error, 1)
				go func() {
					done <- tls.Server(s, bc.server).Handshake()
				}()
				tc := tls.Client(c, client)
				if err := tc.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				// Under TLS: its close_notify would wait on a pipe
				// nobody reads.
				c.Close()
				s.Close()
			}
			cpu.Report(b)
		})
	}
}

// BenchmarkGetCertificate is the lookup alone, for an exact name, a
// wildcard and the default.
func BenchmarkGetCertificate(b *testing.B) {
	ca, dir := newTestCA(b), b.TempDir()
	src, err := certs.New(certs.Config{
		Default:      ptr(pair(b, ca, dir, "default", "default.example")),
		Certificates: []certs.KeyPair{pair(b, ca, dir, "w", "*.w.example"), pair(b, ca, dir, "a", "a.example")},
	}, certs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for _, name := range []string{"a.example", "x.w.example", "other.example"} {
		b.Run(name, func(b *testing.B) {
			hello := &tls.ClientHelloInfo{ServerName: name}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
