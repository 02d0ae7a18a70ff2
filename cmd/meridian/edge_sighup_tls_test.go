package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Issue 18: `meridian edge` serves a certificate replaced on disk from
// the next handshake on after SIGHUP, with no restart (the file poll is
// off, so the signal alone does it), and a connection opened before the
// signal keeps working with the certificate it was made with.
func TestEdgeServesAReplacedCertificateAfterSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// write puts a new certificate in place the way an operator's tool
	// does: written beside, then renamed over the old files.
	write := func() []byte {
		t.Helper()
		certPEM, keyPEM := selfSigned(t, "hup.test")
		for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
			if err := os.WriteFile(path+".new", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}
		return certPEM
	}
	first := write()
	cfgPath := filepath.Join(dir, "edge.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`name: hup-edge
listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
access_log:
  destination: "off"
tls:
  listen: 127.0.0.1:0
  cert_file: %s
  key_file: %s
  reload_interval: -1s
  disable_http3: true
sites:
  - hosts: [hup.test]
    origin: http://127.0.0.1:1
`, certFile, keyFile)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, waitLog := startEdgeProcess(t, cfgPath)
	addr, _ := waitLog("edge node started")["https"].(string)

	// served returns the certificate (PEM) a new handshake gets.
	served := func() []byte {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: "hup.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return pemOf(c.ConnectionState().PeerCertificates[0].Raw)
	}
	// An HTTP/1.1 keep-alive connection, open over the signal.
	kept := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "hup.test", InsecureSkipVerify: true}, MaxConnsPerHost: 1}
	defer kept.CloseIdleConnections()
	keptGet := func() []byte {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/healthz", nil)
		req.Host = "hup.test"
		resp, err := kept.RoundTrip(req)
		if err != nil {
			t.Fatalf("the kept connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return pemOf(resp.TLS.PeerCertificates[0].Raw)
	}

	if got := served(); !bytes.Equal(got, first) {
		t.Fatal("at start, the edge does not serve the certificate on disk")
	}
	if got := keptGet(); !bytes.Equal(got, first) {
		t.Fatal("the kept connection does not have the certificate on disk")
	}
	second := write()
	if got := served(); !bytes.Equal(got, first) {
		t.Fatal("the replaced certificate is served before SIGHUP, with the poll off")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The log line is the reload's report, not a bare "reloaded".
	if m := waitLog("reloaded"); m["generation"] != 2.0 || fmt.Sprint(m["applied"]) != "[tls: certificate files re-read]" || m["needs_restart"] != nil {
		t.Fatalf("the reload's log line: %v", m)
	}
	if got := served(); !bytes.Equal(got, second) {
		t.Fatal("after SIGHUP, a new handshake does not get the replaced certificate")
	}
	if got := keptGet(); !bytes.Equal(got, first) {
		t.Fatal("the connection opened before SIGHUP was not kept (it was made again, with the new certificate)")
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the edge process is gone: %v", err)
	}
}

// pemOf is a DER certificate as PEM, as written to disk.
func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
