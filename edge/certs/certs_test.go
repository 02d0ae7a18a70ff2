package certs_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiancdn/meridian/edge/certs"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pebble's VA (the ACME tests' CA) keeps one worker for the
		// process's life.
		goleak.IgnoreTopFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		// certmagic keeps a rate limiter per CA and account in a
		// package-level map, for the process's life; and a lock file's
		// refresher notices that its lock was released at its next
		// wake-up, up to 5s later.
		goleak.IgnoreTopFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).permit"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}

// pair writes a certificate for names and its key into dir.
func pair(t testing.TB, ca *testCA, dir, base string, names ...string) certs.KeyPair {
	c, k := ca.leaf(t, names...)
	return certs.KeyPair{CertFile: write(t, dir, base+".crt", c), KeyFile: write(t, dir, base+".key", k)}
}

// The certificate of a handshake is the site's own for the site's names,
// then the list's by exact name, then by wildcard one label deep, then the
// default; a name matches case-insensitively and without its trailing
// dot; a site's certificate serves none of the other names it covers.
func TestGetCertificateChoosesBySNI(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	cfg := certs.Config{
		Default: ptr(pair(t, ca, dir, "default", "default.test")),
		Certificates: []certs.KeyPair{
			pair(t, ca, dir, "a", "a.example", "www.a.example"),
			pair(t, ca, dir, "w", "*.w.example", "list-w.marker"),
			pair(t, ca, dir, "a2", "a.example", "second-a.marker"), // a.example is the first's
		},
		Sites: []certs.Site{
			{Field: "sites[0].tls", Names: []string{"s1.example", "other.example"},
				Files: ptr(pair(t, ca, dir, "s1", "s1.example", "b.example"))},
			{Field: "sites[1].tls", Names: []string{"x.w.example"},
				Files: ptr(pair(t, ca, dir, "s2", "*.w.example", "site-w.marker"))},
		},
	}
	var logs logBuffer
	src, err := certs.New(cfg, certs.Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, tc := range []struct{ sni, want string }{
		{"a.example", "a.example"},
		{"A.Example.", "a.example"},
		{"www.a.example", "a.example"},
		{"x.w.example", "site-w.marker"},
		{"y.w.example", "list-w.marker"},
		{"w.example", "default.test"},
		{"z.y.w.example", "default.test"},
		{"s1.example", "s1.example"},
		{"b.example", "default.test"},
		{"other.example", "default.test"},
		{"unknown.test", "default.test"},
		{"", "default.test"},
	} {
		c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
		if err != nil {
			t.Fatalf("%q: %v", tc.sni, err)
		}
		if got := names(t, c); !slices.Contains(got, tc.want) {
			t.Errorf("%q got the certificate of %v, want the one of %s", tc.sni, got, tc.want)
		}
	}
	if !strings.Contains(logs.String(), "certificate does not cover some of the site's hosts") || !strings.Contains(logs.String(), "other.example") {
		t.Errorf("no warning about other.example, which sites[0]'s certificate does not cover:\n%s", logs.String())
	}

	// Without a default, a name nothing covers fails the handshake.
	cfg.Default = nil
	src2, err := certs.New(cfg, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	for _, sni := range []string{"unknown.test", "", "b.example"} {
		if c, err := src2.GetCertificate(&tls.ClientHelloInfo{ServerName: sni}); err == nil {
			t.Errorf("%q without a default got %v", sni, names(t, c))
		}
	}
}

func ptr[T any](v T) *T { return &v }

// New and Reload name the field (and the site) of a certificate that does
// not load; a refused Reload changes nothing.
func TestLoadErrorsNameTheField(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	good := pair(t, ca, dir, "good", "good.test")
	other := pair(t, ca, dir, "other", "other.test")
	garbage := write(t, dir, "garbage.pem", []byte("not PEM\n"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		cfg  certs.Config
		want string
	}{
		{"missing default", certs.Config{Default: &certs.KeyPair{CertFile: missing, KeyFile: good.KeyFile}}, "tls.cert_file: open " + missing},
		{"garbage key", certs.Config{Default: &certs.KeyPair{CertFile: good.CertFile, KeyFile: garbage}}, "tls.key_file: " + garbage + ": no PEM private key"},
		{"certificate is a key", certs.Config{Certificates: []certs.KeyPair{good, {CertFile: good.KeyFile, KeyFile: good.KeyFile}}}, "tls.certificates[1].cert_file: " + good.KeyFile + ": no PEM certificate"},
		{"mismatched key", certs.Config{Sites: []certs.Site{{Field: "sites[2].tls", Names: []string{"good.test"},
			Files: &certs.KeyPair{CertFile: good.CertFile, KeyFile: other.KeyFile}}}},
			"sites[2].tls.key_file: " + other.KeyFile + " does not match the certificate in " + good.CertFile},
		{"site not covered", certs.Config{Sites: []certs.Site{{Field: "sites[1].tls", Names: []string{"a.test", "b.test"}, Files: &good}}},
			"sites[1].tls.cert_file: " + good.CertFile + ": the certificate (for good.test) covers none of the site's hosts (a.test, b.test)"},
		{"site's missing key names the site", certs.Config{Sites: []certs.Site{{Field: "sites[0].tls", Names: []string{"good.test"},
			Files: &certs.KeyPair{CertFile: good.CertFile, KeyFile: missing}}}}, "sites[0].tls.key_file: open " + missing + ": no such file or directory (site good.test)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := certs.New(tc.cfg, certs.Options{})
			if err == nil {
				src.Close()
				t.Fatal("New accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v\nwant %q", err, tc.want)
			}
			if err := certs.Check(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v\nwant %q", err, tc.want)
			}
		})
	}

	src, err := certs.New(certs.Config{Default: &good}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.Reload(certs.Config{Default: &other, Certificates: []certs.KeyPair{{CertFile: garbage, KeyFile: good.KeyFile}}})
	if err == nil || !strings.Contains(err.Error(), "tls.certificates[0].cert_file: "+garbage) {
		t.Fatalf("Reload with a garbage certificate: %v", err)
	}
	if c, _ := src.GetCertificate(&tls.ClientHelloInfo{}); !slices.Equal(names(t, c), []string{"good.test"}) {
		t.Fatalf("after a refused reload the default is %v, want the running good.test", names(t, c))
	}
	if err := src.Reload(certs.Config{Default: &other}); err != nil {
		t.Fatal(err)
	}
	if c, _ := src.GetCertificate(&tls.ClientHelloInfo{}); !slices.Equal(names(t, c), []string{"other.test"}) {
		t.Fatalf("after a reload the default is %v, want other.test", names(t, c))
	}
}

// tlsServer serves src's certificates on a loopback listener whose
// connections echo lines back.
func tlsServer(t *testing.T, src *certs.Source) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: src.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// dial completes a handshake for sni and returns the connection and the
// server certificate's names.
func dial(t *testing.T, ca *testCA, addr, sni string) (*tls.Conn, []string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: ca.pool})
	if err != nil {
		t.Fatalf("handshake for %q: %v", sni, err)
	}
	return c, c.ConnectionState().PeerCertificates[0].DNSNames
}

// echo checks that c still carries bytes both ways.
func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		t.Fatalf("write on the open connection: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("open connection echoed %q, %v", line, err)
	}
}

// A key pair replaced on disk is served from the next handshake on, at the
// next poll, without a restart, while a connection opened before keeps
// working; a replacement that does not load keeps the running certificate
// and is logged once.
func TestPollServesAReplacedCertificate(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	p := pair(t, ca, dir, "site", "v1.site.test", "site.test")
	ticks := make(chan time.Time)
	var logs logBuffer
	src, err := certs.New(certs.Config{Certificates: []certs.KeyPair{p}, ReloadInterval: time.Hour},
		certs.Options{Logger: logs.logger(), Ticks: func(d time.Duration) (<-chan time.Time, func()) {
			if d != time.Hour {
				t.Errorf("poll interval %v, want the configured 1h", d)
			}
			return ticks, func() {}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Start("127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	// poll waits until the poll that one tick starts has ended: the
	// second send is received only once the loop is back.
	poll := func() {
		for range 2 {
			select {
			case ticks <- time.Now():
			case <-time.After(10 * time.Second):
				t.Fatal("the poll loop does not take ticks")
			}
		}
	}
	addr := tlsServer(t, src)
	open, got := dial(t, ca, addr, "site.test")
	defer open.Close()
	if !slices.Contains(got, "v1.site.test") {
		t.Fatalf("first handshake got %v", got)
	}

	replace := func(names ...string) {
		c, k := ca.leaf(t, names...)
		write(t, dir, "site.crt", c)
		write(t, dir, "site.key", k)
	}
	replace("v2.site.test", "site.test")
	// Not yet polled: the running certificate.
	if c, got := dial(t, ca, addr, "site.test"); !slices.Contains(got, "v1.site.test") {
		t.Fatalf("before the poll: %v", got)
	} else {
		c.Close()
	}
	poll()
	c, got := dial(t, ca, addr, "site.test")
	c.Close()
	if !slices.Contains(got, "v2.site.test") {
		t.Fatalf("after the poll the handshake got %v, want v2", got)
	}
	echo(t, open, "still here")

	write(t, dir, "site.crt", []byte("-----BEGIN CERTIFICATE-----\ntruncated"))
	poll()
	poll()
	if c, got := dial(t, ca, addr, "site.test"); !slices.Contains(got, "v2.site.test") {
		t.Fatalf("after a bad file the handshake got %v, want the running v2", got)
	} else {
		c.Close()
	}
	if n := strings.Count(logs.String(), "changed certificate refused"); n != 1 || !strings.Contains(logs.String(), "tls.certificates[0].cert_file") {
		t.Fatalf("the refused file was logged %d times (want once, naming tls.certificates[0].cert_file):\n%s", n, logs.String())
	}

	// The new name of a list certificate is served too.
	replace("v3.site.test", "site.test", "new.test")
	poll()
	if c, got := dial(t, ca, addr, "new.test"); !slices.Contains(got, "v3.site.test") {
		t.Fatalf("after fixing the file: %v", got)
	} else {
		c.Close()
	}
	echo(t, open, "and still here")
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}
}

// A file removed keeps its running certificate; the error says so.
func TestPollKeepsTheCertificateOfARemovedFile(t *testing.T) {
	ca, dir := newTestCA(t), t.TempDir()
	p := pair(t, ca, dir, "d", "d.test")
	ticks := make(chan time.Time)
	var logs logBuffer
	src, err := certs.New(certs.Config{Default: &p}, certs.Options{Logger: logs.logger(),
		Ticks: func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Start("127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.KeyFile); err != nil {
		t.Fatal(err)
	}
	ticks <- time.Now()
	ticks <- time.Now()
	c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: "d.test"})
	if err != nil || !slices.Equal(names(t, c), []string{"d.test"}) {
		t.Fatalf("after removing the key file: %v, %v", names(t, c), err)
	}
	if !strings.Contains(logs.String(), "tls.key_file: open "+p.KeyFile) {
		t.Fatalf("log does not name the missing key file:\n%s", logs.String())
	}
}

// Whatever a client sends as its server name, GetCertificate answers
// without panicking, and a name it serves is one the certificate covers
// (or the default's).
func FuzzGetCertificate(f *testing.F) {
	ca, dir := newTestCA(f), f.TempDir()
	src, err := certs.New(certs.Config{
		Certificates: []certs.KeyPair{pair(f, ca, dir, "a", "a.example", "*.w.example")},
		Sites:        []certs.Site{{Field: "sites[0].tls", Names: []string{"s.example"}, Files: ptr(pair(f, ca, dir, "s", "s.example", "t.example"))}},
	}, certs.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { src.Close() })
	for _, s := range []string{"a.example", "A.EXAMPLE.", "x.w.example", ".w.example", "w.example", "s.example", "t.example", "", ".", "..", "*.w.example", "a.example..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sni string) {
		c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if err != nil {
			if c != nil {
				t.Fatalf("%q: a certificate and an error", sni)
			}
			return
		}
		name := strings.TrimSuffix(strings.ToLower(sni), ".")
		_, parent, _ := strings.Cut(name, ".")
		if !slices.Contains(c.Leaf.DNSNames, name) && !slices.Contains(c.Leaf.DNSNames, "*."+parent) {
			t.Fatalf("%q got a certificate for %v", sni, c.Leaf.DNSNames)
		}
		if name == "t.example" {
			t.Fatalf("%q got sites[0]'s certificate, which serves only the site's names", sni)
		}
	})
}
