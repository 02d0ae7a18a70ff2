package node_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Issue 18: Chromium over HTTP/3 gets each site's own certificate, chosen
// by SNI among three. Chromium trusts none of the test certificates: it
// is told to accept only the public key of the host's own certificate
// (--ignore-certificate-errors-spki-list), so that a page loads only if
// the edge presented that very certificate, and it is forced onto QUIC
// for the edge's address; the edge's own metrics then say the requests
// came over HTTP/3.
func TestSNIOverHTTP3InChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium not installed")
	}
	e := startSNIEdge(t, -1)
	pins := map[string]string{}
	for _, s := range e.sites {
		data, err := os.ReadFile(s.certFile)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		pins[s.host] = base64.StdEncoding.EncodeToString(sum[:])
	}
	load := func(host, pin string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		origin := host + ":" + e.port
		out, err := exec.CommandContext(ctx, chromium,
			"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(),
			"--host-resolver-rules=MAP "+host+" 127.0.0.1",
			"--enable-quic", "--origin-to-force-quic-on="+origin,
			"--ignore-certificate-errors-spki-list="+pin,
			"--dump-dom", "https://"+origin+"/").Output()
		return string(out), err
	}
	for _, s := range e.sites {
		before := h3Requests(t, e, s.host)
		dom, err := load(s.host, pins[s.host])
		if err != nil || !strings.Contains(dom, "origin for "+s.host) {
			t.Fatalf("%s with its own certificate pinned: %v\n%s", s.host, err, dom)
		}
		if after := h3Requests(t, e, s.host); after <= before {
			t.Fatalf("%s: no request came over HTTP/3 (%v before, %v after)", s.host, before, after)
		}
	}
	// The check can fail: pinned to another site's key, the page does not
	// load (the edge presents the host's certificate, not that one).
	if dom, _ := load("a.test", pins["b.test"]); strings.Contains(dom, "origin for a.test") {
		t.Fatalf("a.test loaded with only b.test's key trusted:\n%s", dom)
	}
}

// h3Requests is how many requests for host the edge answered over HTTP/3.
func h3Requests(t *testing.T, e *sniEdge, host string) float64 {
	t.Helper()
	mfs, err := e.n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "meridian_edge_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var proto, site string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "protocol":
					proto = l.GetValue()
				case "site":
					site = l.GetValue()
				}
			}
			if proto == "h3" && site == host {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
