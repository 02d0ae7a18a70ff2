package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// pki is a cluster CA whose member certificates are written to a
// temporary directory.
type pki struct {
	t   testing.TB
	ca  *certs.CA
	dir string
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	ca, err := certs.NewCA(name, 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteCertFile(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, ca: ca, dir: dir}
}

// member issues name's certificate and returns its cluster.tls section.
func (p *pki) member(name string) cluster.TLSConfig {
	p.t.Helper()
	cert, key, err := p.ca.IssueFiles(p.dir, name)
	if err != nil {
		p.t.Fatal(err)
	}
	return cluster.TLSConfig{CAFile: filepath.Join(p.dir, "ca.crt"), CertFile: cert, KeyFile: key}
}

// The files are checked when the node is made, and the error names the
// field: a certificate of another CA, a key of another certificate, a CA
// file without a CA, an expired certificate.
func TestTLSConfigCheck(t *testing.T) {
	good, other := newPKI(t, "cluster CA"), newPKI(t, "another CA")
	g, o := good.member("edge1"), other.member("edge1")
	g2 := good.member("edge2")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o600)
	cases := []struct {
		name string
		tls  cluster.TLSConfig
		now  time.Time
		want string // "" for no error
	}{
		{"good", g, time.Now(), ""},
		{"off", cluster.TLSConfig{}, time.Now(), ""},
		{"another CA's certificate", cluster.TLSConfig{CAFile: g.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile}, time.Now(),
			"cluster.tls.cert_file: " + o.CertFile + " is not a member certificate of the CA in " + g.CAFile},
		{"key of another certificate", cluster.TLSConfig{CAFile: g.CAFile, CertFile: g.CertFile, KeyFile: g2.KeyFile}, time.Now(),
			"cluster.tls.key_file: " + g2.KeyFile + " does not match"},
		{"missing CA file", cluster.TLSConfig{CAFile: g.CAFile + ".missing", CertFile: g.CertFile, KeyFile: g.KeyFile}, time.Now(),
			"cluster.tls.ca_file: open"},
		{"CA file without PEM", cluster.TLSConfig{CAFile: garbage, CertFile: g.CertFile, KeyFile: g.KeyFile}, time.Now(),
			"cluster.tls.ca_file: " + garbage + ": no PEM certificate"},
		{"a leaf as the CA", cluster.TLSConfig{CAFile: g2.CertFile, CertFile: g.CertFile, KeyFile: g.KeyFile}, time.Now(),
			"cluster.tls.ca_file: " + g2.CertFile + ": \"edge2\" is not a CA certificate"},
		{"missing key", cluster.TLSConfig{CAFile: g.CAFile, CertFile: g.CertFile, KeyFile: g.KeyFile + ".missing"}, time.Now(),
			"cluster.tls.key_file: open"},
		{"expired", g, time.Now().Add(48 * time.Hour), "cluster.tls.cert_file: " + g.CertFile + " is not a member certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tls.Check(tc.now)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			if tc.want == "" {
				return
			}
			// New refuses the same config with the same error.
			_, err = cluster.New(cluster.Config{Name: "edge1", Secret: cdntest.Secret, GossipListen: "127.0.0.1:0",
				PeerListen: "127.0.0.1:0", TLS: tc.tls}, cluster.Options{Now: func() time.Time { return tc.now }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

// startTLSReceiver is a member whose edge acknowledges internal requests
// and counts them; tls is its cluster.tls.
func startTLSReceiver(t *testing.T, tlsc cluster.TLSConfig) (*cluster.Node, func() int) {
	t.Helper()
	var mu sync.Mutex
	got := 0
	n, err := cluster.New(cluster.Config{
		Name: "receiver", GossipListen: "127.0.0.1:0", PeerListen: "127.0.0.1:0",
		Secret: cdntest.Secret, Preset: cluster.PresetLocal, TLS: tlsc,
	}, cluster.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(cluster.PeerServerFunc(func(w http.ResponseWriter, r *http.Request, _ fill.Peer) {
		mu.Lock()
		got++
		mu.Unlock()
		w.Header().Set(cluster.AckHeader, "receiver")
		w.WriteHeader(http.StatusNoContent)
	})); err != nil {
		t.Fatal(err)
	}
	return n, func() int { mu.Lock(); defer mu.Unlock(); return got }
}

// A member refuses the links of anyone without a certificate of the
// cluster CA, even one holding the region's secret: a certificate of
// another CA, no certificate, plain HTTP. And an asker refuses a peer
// endpoint whose certificate is another CA's, before it sends anything.
func TestLinksRefuseCertificatesOfAnotherCA(t *testing.T) {
	good, rogue := newPKI(t, "cluster CA"), newPKI(t, "rogue CA")
	recv, count := startTLSReceiver(t, good.member("receiver"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const target = "/purge?key=www.example.com/app.js"

	member := startNode(t, "member", func(c *cluster.Config) { c.TLS = good.member("member") }, cluster.Options{})
	if !member.TLS() || !recv.TLS() {
		t.Fatal("TLS() false with cluster.tls set")
	}
	if err := member.SendTo(ctx, "receiver", recv.PeerAddr(), target); err != nil {
		t.Fatalf("a member with the cluster CA's certificate: %v", err)
	}
	if count() != 1 {
		t.Fatalf("receiver's edge saw %d requests, want 1", count())
	}

	// Same secret, same signature, wrong certificate.
	intruder := startNode(t, "intruder", func(c *cluster.Config) { c.TLS = rogue.member("intruder") }, cluster.Options{})
	err := intruder.SendTo(ctx, "receiver", recv.PeerAddr(), target)
	if err == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	t.Logf("intruder: %v", err)
	// An intruder that skips checking the receiver's certificate is
	// refused by the receiver.
	rc, err := tls.LoadX509KeyPair(rogue.member("intruder2").CertFile, rogue.member("intruder2").KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	blind := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rc, nil }}}
	defer blind.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+recv.PeerAddr()+target, nil)
	req.Host = cluster.InternalHost
	if resp, err := blind.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Errorf("an asker with another CA's certificate got %d", resp.StatusCode)
	} else {
		t.Logf("another CA's certificate: %v", err)
	}
	if n := recv.TLSRefused(); n != 1 {
		t.Errorf("receiver's TLSRefused() = %d, want 1", n)
	}

	// An asker with no certificate at all, and one on plain HTTP.
	// (Unsigned: were the handshake accepted, the answer would be a 403.)
	noCert := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, good), ServerName: "receiver"}}
	defer noCert.CloseIdleConnections()
	if resp, err := noCert.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Errorf("an asker without a certificate got %d", resp.StatusCode)
	} else {
		t.Logf("no certificate: %v", err)
	}
	if n := recv.TLSRefused(); n != 2 {
		t.Errorf("receiver's TLSRefused() = %d, want 2", n)
	}
	plain := startNode(t, "plain", nil, cluster.Options{})
	if err := plain.SendTo(ctx, "receiver", recv.PeerAddr(), target); err == nil {
		t.Error("a plain-HTTP asker was answered")
	}

	// The other way round: a member asking a peer endpoint whose
	// certificate is another CA's refuses it, and sends nothing.
	imposter, imposterCount := startTLSReceiver(t, rogue.member("receiver"))
	before := member.TLSRefused()
	if err := member.SendTo(ctx, "receiver", imposter.PeerAddr(), target); err == nil {
		t.Error("a member accepted a peer endpoint with another CA's certificate")
	}
	if member.TLSRefused() <= before {
		t.Errorf("member's TLSRefused() = %d, want more than %d", member.TLSRefused(), before)
	}
	if imposterCount() != 0 || count() != 1 {
		t.Errorf("edges saw %d (imposter) and %d (receiver) requests; want 0 and 1", imposterCount(), count())
	}
}

// caPool is the pool of p's CA.
func caPool(t *testing.T, p *pki) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}
