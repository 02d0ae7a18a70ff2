package origin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a private certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomicSerial

type atomicSerial struct {
	mu sync.Mutex
	n  int64
}

func (s *atomicSerial) next() *big.Int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return big.NewInt(s.n)
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.next(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate for the DNS names and its key, as PEM.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.next(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsOrigin is an HTTPS origin on 127.0.0.1 with a certificate for
// origin.test only (no IP address), recording the SNI, Host and client
// certificate of each request.
type tlsOrigin struct {
	srv *httptest.Server
	url string

	mu      sync.Mutex
	sni     []string
	hosts   []string
	clients []string // client certificate common names ("" for none)
}

func startTLSOrigin(t *testing.T, ca *testCA, configure func(*tls.Config)) *tlsOrigin {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "origin.test", x509.ExtKeyUsageServerAuth, "origin.test")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	o := &tlsOrigin{}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.sni = append(o.sni, r.TLS.ServerName)
		o.hosts = append(o.hosts, r.Host)
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		o.clients = append(o.clients, cn)
		o.mu.Unlock()
		w.Write([]byte("private origin"))
	}))
	o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if configure != nil {
		configure(o.srv.TLS)
	}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	o.url = o.srv.URL
	return o
}

func (o *tlsOrigin) seen() (sni, hosts, clients []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.sni...), append([]string(nil), o.hosts...), append([]string(nil), o.clients...)
}

// tlsGet sends one GET through a new pool of cfg; it returns the body or
// the error.
func tlsGet(t *testing.T, cfg PoolConfig) (string, error) {
	t.Helper()
	cfg.Retries = -1
	p := newPool(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, body, err := fetch(ctx, p, "GET", "/x", nil)
	return string(body), err
}

func TestPoolTLSPrivateCAAndServerName(t *testing.T) {
	ca := newTestCA(t, "private root")
	o := startTLSOrigin(t, ca, nil)
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.pem)

	t.Run("server_name over an IP URL", func(t *testing.T) {
		body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}},
			TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test"}})
		if err != nil || body != "private origin" {
			t.Fatalf("got %q, %v", body, err)
		}
		sni, hosts, _ := o.seen()
		if sni[len(sni)-1] != "origin.test" || hosts[len(hosts)-1] != "site.example" {
			t.Errorf("origin saw SNI %q, Host %q; want origin.test and the client's site.example", sni, hosts)
		}
	})
	t.Run("host override of an IP server names it", func(t *testing.T) {
		body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url, Host: "origin.test"}},
			TLS: TLSConfig{CAFile: caFile}})
		if err != nil || body != "private origin" {
			t.Fatalf("got %q, %v", body, err)
		}
		sni, hosts, _ := o.seen()
		if sni[len(sni)-1] != "origin.test" || hosts[len(hosts)-1] != "origin.test" {
			t.Errorf("origin saw SNI %q, Host %q; want origin.test for both", sni, hosts)
		}
	})
	t.Run("health checks use the same name and CA", func(t *testing.T) {
		p := newPool(t, PoolConfig{Servers: []ServerConfig{{URL: o.url, Host: "origin.test"}},
			TLS: TLSConfig{CAFile: caFile}, Health: HealthConfig{Path: "/healthz", ExpectedStatus: 200}})
		p.Check(context.Background())
		if !p.Servers()[0].Healthy {
			t.Errorf("the probe over TLS failed: %+v", p.Servers()[0])
		}
	})

	refused := []struct {
		name string
		cfg  PoolConfig
		want string
	}{
		{"system roots do not know the private CA",
			PoolConfig{Servers: []ServerConfig{{URL: o.url}}, TLS: TLSConfig{ServerName: "origin.test"}},
			"certificate"},
		{"the IP is not in the certificate",
			PoolConfig{Servers: []ServerConfig{{URL: o.url}}, TLS: TLSConfig{CAFile: caFile}},
			"certificate"},
		{"a server_name the certificate does not hold",
			PoolConfig{Servers: []ServerConfig{{URL: o.url, Host: "origin.test"}}, TLS: TLSConfig{CAFile: caFile, ServerName: "other.test"}},
			"other.test"},
		{"another CA",
			PoolConfig{Servers: []ServerConfig{{URL: o.url}}, TLS: TLSConfig{CAFile: writeFile(t, t.TempDir(), "other.pem", newTestCA(t, "other").pem), ServerName: "origin.test"}},
			"certificate"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			body, err := tlsGet(t, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, %v; want an error about %q", body, err, tc.want)
			}
		})
	}
}

func TestPoolTLSClientCertificate(t *testing.T) {
	ca := newTestCA(t, "origin root")
	clientCA := newTestCA(t, "edge clients")
	o := startTLSOrigin(t, ca, func(c *tls.Config) {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = x509.NewCertPool()
		c.ClientCAs.AddCert(clientCA.cert)
	})
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	certPEM, keyPEM := clientCA.issue(t, "edge-7", x509.ExtKeyUsageClientAuth)
	certFile, keyFile := writeFile(t, dir, "client.crt", certPEM), writeFile(t, dir, "client.key", keyPEM)

	body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}},
		TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test", CertFile: certFile, KeyFile: keyFile}})
	if err != nil || body != "private origin" {
		t.Fatalf("with the client certificate: %q, %v", body, err)
	}
	if _, _, clients := o.seen(); len(clients) != 1 || clients[0] != "edge-7" {
		t.Errorf("origin saw client certificates %q, want [edge-7]", clients)
	}

	// Without it the origin refuses the handshake: nothing reaches it.
	if body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}},
		TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test"}}); err == nil {
		t.Fatalf("without a client certificate: %q, want an error", body)
	}
	// Nor with one from another CA.
	otherCert, otherKey := newTestCA(t, "rogue").issue(t, "rogue", x509.ExtKeyUsageClientAuth)
	if body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}},
		TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test",
			CertFile: writeFile(t, dir, "rogue.crt", otherCert), KeyFile: writeFile(t, dir, "rogue.key", otherKey)}}); err == nil {
		t.Fatalf("with a rogue client certificate: %q, want an error", body)
	}
	if _, _, clients := o.seen(); len(clients) != 1 {
		t.Errorf("origin served %d requests, want only the one with the certificate", len(clients))
	}
}

func TestPoolTLSMinVersion(t *testing.T) {
	ca := newTestCA(t, "root")
	old := startTLSOrigin(t, ca, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	caFile := writeFile(t, t.TempDir(), "ca.pem", ca.pem)
	cfg := PoolConfig{Servers: []ServerConfig{{URL: old.url}}, TLS: TLSConfig{CAFile: caFile, ServerName: "origin.test"}}
	if _, err := tlsGet(t, cfg); err != nil {
		t.Fatalf("TLS 1.2 origin with the default minimum: %v", err)
	}
	cfg.TLS.MinVersion = "1.3"
	if body, err := tlsGet(t, cfg); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("TLS 1.2 origin with min_version 1.3: %q, %v; want a version error", body, err)
	}
}

func TestPoolTLSInsecureSkipVerifyWarns(t *testing.T) {
	o := startTLSOrigin(t, newTestCA(t, "unknown"), nil)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	body, err := tlsGet(t, PoolConfig{Servers: []ServerConfig{{URL: o.url}}, Logger: logger,
		TLS: TLSConfig{InsecureSkipVerify: true}})
	if err != nil || body != "private origin" {
		t.Fatalf("got %q, %v", body, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecure_skip_verify") {
		t.Errorf("no warning logged at start; logs:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestPoolTLSValidate(t *testing.T) {
	ca := newTestCA(t, "root")
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	certPEM, keyPEM := ca.issue(t, "edge", x509.ExtKeyUsageClientAuth)
	_, otherKey := ca.issue(t, "other", x509.ExtKeyUsageClientAuth)
	certFile, keyFile := writeFile(t, dir, "c.crt", certPEM), writeFile(t, dir, "c.key", keyPEM)
	otherKeyFile := writeFile(t, dir, "other.key", otherKey)
	garbage := writeFile(t, dir, "garbage.pem", []byte("not PEM at all\n"))
	missing := filepath.Join(dir, "missing.pem")

	srv := []ServerConfig{{URL: "https://origin.test"}}
	good := TLSConfig{CAFile: caFile, ServerName: "origin.test", CertFile: certFile, KeyFile: keyFile, MinVersion: "1.3"}
	if err := (PoolConfig{Servers: srv, TLS: good}).Validate(); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"missing CA file", TLSConfig{CAFile: missing}, "tls.ca_file: open " + missing},
		{"CA file without certificates", TLSConfig{CAFile: garbage}, "tls.ca_file: " + garbage + ": no PEM certificate"},
		{"CA file is a key", TLSConfig{CAFile: keyFile}, "tls.ca_file: "},
		{"cert without key", TLSConfig{CertFile: certFile}, "tls.key_file: missing"},
		{"key without cert", TLSConfig{KeyFile: keyFile}, "tls.cert_file: missing"},
		{"missing cert file", TLSConfig{CertFile: missing, KeyFile: keyFile}, "tls.cert_file: open " + missing},
		{"missing key file", TLSConfig{CertFile: certFile, KeyFile: missing}, "tls.key_file: open " + missing},
		{"cert file is garbage", TLSConfig{CertFile: garbage, KeyFile: keyFile}, "tls.cert_file: " + garbage + ": no PEM certificate"},
		{"key file is garbage", TLSConfig{CertFile: certFile, KeyFile: garbage}, "tls.key_file: " + garbage + ": no PEM private key"},
		{"key of another certificate", TLSConfig{CertFile: certFile, KeyFile: otherKeyFile}, "tls.key_file: " + otherKeyFile + " does not match the certificate in " + certFile},
		{"min_version 1.1", TLSConfig{MinVersion: "1.1"}, `tls.min_version: "1.1": want "1.2" or "1.3"`},
		{"server_name with a port", TLSConfig{ServerName: "origin.test:443"}, "tls.server_name: "},
		{"server_name with a line break", TLSConfig{ServerName: "a\nb"}, "tls.server_name: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := PoolConfig{Servers: srv, TLS: tc.tls}
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
			if _, err := NewPool(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPool: %v, want %q", err, tc.want)
			}
		})
	}
}

// The SNI default: only an IP server with a host override takes that host.
func TestTLSServerNameDefault(t *testing.T) {
	for _, tc := range []struct {
		tls  TLSConfig
		srv  ServerConfig
		want string
	}{
		{TLSConfig{}, ServerConfig{URL: "https://10.0.0.1", Host: "shop.example"}, "shop.example"},
		{TLSConfig{}, ServerConfig{URL: "https://[::1]:8443", Host: "shop.example:8443"}, "shop.example"},
		{TLSConfig{}, ServerConfig{URL: "https://origin.example", Host: "shop.example"}, ""},
		{TLSConfig{}, ServerConfig{URL: "https://10.0.0.1"}, ""},
		{TLSConfig{ServerName: "o.example"}, ServerConfig{URL: "https://10.0.0.1", Host: "shop.example"}, ""},
	} {
		u, err := url.Parse(tc.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.tls.serverName(tc.srv, u.Hostname()); got != tc.want {
			t.Errorf("%+v %+v: %q, want %q", tc.tls, tc.srv, got, tc.want)
		}
	}
}
