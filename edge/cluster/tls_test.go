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
	"github.com/meridiancdn/meridian/internal/poll"
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
func startTLSReceiver(t *testing.T, tlsc cluster.TLSConfig) (*cluster.Member, func() int) {
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

// replace writes a new certificate of ca for name over the files of
// tlsc, the key first (a poll between the two writes sees a pair that
// does not match, refuses it, and takes the next).
func replace(t *testing.T, ca *certs.CA, tlsc cluster.TLSConfig, name string) {
	t.Helper()
	c, k, err := ca.Issue(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tlsc.KeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tlsc.CertFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedName is the common name of the certificate that a new handshake
// with addr gets, as a member of p (pcert) asks.
func servedName(t *testing.T, p *pki, pcert tls.Certificate, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: caPool(t, p), ServerName: "unchecked", InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pcert, nil }})
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// The link certificate and CA are reloaded without a restart: a
// certificate replaced on disk is served by the next handshake once the
// poll sees it (and at once on ReloadTLS, SIGHUP's path), while requests
// on the links go on without one failing; files that do not load are
// refused and the running ones kept; and an asker's new certificate and
// CA are what its next handshake presents and trusts. The expiry of the
// running certificate follows.
func TestLinkCertificatesReloadWithoutRestart(t *testing.T) {
	good, rogue := newPKI(t, "cluster CA"), newPKI(t, "rogue CA")
	rtls := good.member("receiver")
	rtls.ReloadInterval = 20 * time.Millisecond
	recv, count := startTLSReceiver(t, rtls)
	mtls := good.member("member")
	mtls.ReloadInterval = -1 // SIGHUP only
	// The member's own CA file: it moves to another CA below.
	mtls.CAFile = filepath.Join(t.TempDir(), "member-ca.crt")
	if err := os.WriteFile(mtls.CAFile, good.ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	member := startNode(t, "member", func(c *cluster.Config) { c.TLS = mtls }, cluster.Options{})
	probe := good.member("probe")
	pcert, err := tls.LoadX509KeyPair(probe.CertFile, probe.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, good, pcert, recv.PeerAddr()); got != "receiver" {
		t.Fatalf("first handshake got %q", got)
	}

	// Link requests run through the replacement, on open and new
	// connections alike.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var sent, failed int
	var failure error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sent++
			if err := member.SendTo(ctx, "receiver", recv.PeerAddr(), "/purge?key=www.example.com/a"); err != nil {
				failed++
				failure = err
			}
		}
	}()
	replace(t, good.ca, rtls, "receiver-v2")
	poll.Until(t, 10*time.Second, "the replaced certificate is served", func() bool {
		return servedName(t, good, pcert, recv.PeerAddr()) == "receiver-v2"
	})
	if x := recv.TLSExpiries(); len(x) != 1 || x[0].Name != "receiver-v2" || x[0].Source != "cluster.tls" {
		t.Errorf("TLSExpiries after the reload: %v", x)
	}

	// A broken file is refused: the running certificate stays.
	if err := os.WriteFile(rtls.CertFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := recv.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "cluster.tls.cert_file") {
		t.Errorf("ReloadTLS of a broken file: %v", err)
	}
	if got := servedName(t, good, pcert, recv.PeerAddr()); got != "receiver-v2" {
		t.Fatalf("after a broken file the handshake got %q, want the running receiver-v2", got)
	}
	replace(t, good.ca, rtls, "receiver-v3")
	if err := recv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got := servedName(t, good, pcert, recv.PeerAddr()); got != "receiver-v3" {
		t.Fatalf("after ReloadTLS the handshake got %q, want receiver-v3", got)
	}
	close(stop)
	<-done
	if failed > 0 || sent == 0 || count() != sent {
		t.Fatalf("%d of %d link requests failed during the reloads (receiver saw %d): %v", failed, sent, count(), failure)
	}

	// The asker's side: its new CA and certificate (another CA's) are
	// what its next handshakes use: a member of the old CA is refused,
	// one of the new accepted.
	if err := os.WriteFile(mtls.CAFile, rogue.ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	replace(t, rogue.ca, mtls, "member-v2")
	if err := member.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	goodRecv, goodCount := startTLSReceiver(t, good.member("receiver"))
	if err := member.SendTo(ctx, "receiver", goodRecv.PeerAddr(), "/purge?key=www.example.com/a"); err == nil || goodCount() != 0 {
		t.Errorf("after moving to another CA, a member of the old one still answered: %v", err)
	}
	rogueRecv, rogueCount := startTLSReceiver(t, rogue.member("receiver"))
	if err := member.SendTo(ctx, "receiver", rogueRecv.PeerAddr(), "/purge?key=www.example.com/a"); err != nil || rogueCount() != 1 {
		t.Errorf("a member of the new CA: %v (saw %d)", err, rogueCount())
	}
}
