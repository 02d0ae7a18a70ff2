package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
)

// alpnProto is the ALPN protocol of the tls-alpn-01 challenge (RFC 8737).
const alpnProto = "acme-tls/1"

// challengePath is where the http-01 challenge asks (RFC 8555 §8.3).
const challengePath = "/.well-known/acme-challenge/"

// manager runs certmagic for the ACME names: it obtains, stores, renews
// and staples (OCSP, when the CA offers it) their certificates, and
// answers the challenges.
type manager struct {
	conf  ACMEConfig
	log   *slog.Logger
	roots *x509.CertPool // nil: the system roots

	live atomic.Pointer[running] // set by start

	mu      sync.Mutex      // guards names, pending, closed; taken after Source.mu
	names   map[string]bool // managed by certmagic
	pending map[string]bool // before start: the names to manage
	closed  bool
	ctx     context.Context // of management; canceled by close
	cancel  context.CancelFunc
}

// running is certmagic once started.
type running struct {
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// newManager checks conf's files; nothing runs before start.
func newManager(conf ACMEConfig, log *slog.Logger) (*manager, error) {
	m := &manager{conf: conf, log: log.With("component", "acme")}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if conf.CAFile != "" {
		pem, err := readCAFile(conf.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.%w", err)
		}
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_file: %s: no PEM certificate that parses", conf.CAFile)
		}
	}
	if err := os.MkdirAll(conf.Storage, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme.storage: %w", err)
	}
	return m, nil
}

// start runs certmagic: the challenges are answered on the listeners at
// httpAddr and tlsAddr (certmagic finds their ports taken and leaves them
// to HTTPChallenge and GetCertificate), and the names set so far are
// managed.
func (m *manager) start(httpAddr, tlsAddr string) error {
	host, httpPort, err := splitPort(httpAddr)
	if err != nil {
		return fmt.Errorf("acme: plain listener %q: %w", httpAddr, err)
	}
	_, tlsPort, err := splitPort(tlsAddr)
	if err != nil {
		return fmt.Errorf("acme: tls listener %q: %w", tlsAddr, err)
	}
	zl := zapLogger(m.log)
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: m.conf.RenewCheckInterval,
		Logger:             zl,
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: m.conf.Storage},
		Logger:  zl,
	})
	issuer := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      m.conf.Directory,
		Email:                   m.conf.Email,
		Agreed:                  true,
		TrustedRoots:            m.roots,
		ListenHost:              host,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		DisableHTTPChallenge:    m.conf.DisableHTTP01,
		DisableTLSALPNChallenge: m.conf.DisableTLSALPN01,
		Logger:                  zl,
	})
	cfg.Issuers = []certmagic.Issuer{issuer}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		cache.Stop()
		return nil
	}
	m.live.Store(&running{cache: cache, cfg: cfg, issuer: issuer})
	names := make([]string, 0, len(m.pending))
	for n := range m.pending {
		names = append(names, n)
	}
	m.pending = nil
	m.manageLocked(names)
	return nil
}

// splitPort splits a bound address into its host and port number.
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// setNames makes names the managed ones: the new ones are obtained (or
// loaded from storage), the others are no longer renewed.
func (m *manager) setNames(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.manageLocked(names)
}

// manageLocked is setNames with m.mu held. Before start it only records
// the names; start hands them all to certmagic.
func (m *manager) manageLocked(names []string) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	r := m.live.Load()
	if r == nil || m.closed {
		m.pending = want
		return
	}
	var add []string
	var drop []certmagic.SubjectIssuer
	for n := range want {
		if !m.names[n] {
			add = append(add, n)
		}
	}
	for n := range m.names {
		if !want[n] {
			drop = append(drop, certmagic.SubjectIssuer{Subject: n})
		}
	}
	m.names = want
	if len(drop) > 0 {
		r.cache.RemoveManaged(drop)
	}
	if len(add) > 0 {
		// Async: each name is obtained in the background and retried
		// with backoff until ctx ends; the storage's lock makes one
		// edge of those sharing it ask the CA, and the others load the
		// result.
		if err := r.cfg.ManageAsync(m.ctx, add); err != nil {
			m.log.Error("acme: managing names", "names", add, "err", err)
		}
	}
}

// certificate is the managed certificate for hello's name.
func (m *manager) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	r := m.live.Load()
	if r == nil {
		return nil, errors.New("acme: not started")
	}
	return r.cfg.GetCertificate(hello)
}

// challengeCert answers a tls-alpn-01 validation.
func (m *manager) challengeCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.certificate(hello)
}

// isALPNChallenge reports whether hello is an ACME server's tls-alpn-01
// validation: a server name and acme-tls/1 as its only protocol.
func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnProto
}

// close stops management and certmagic's maintenance.
func (m *manager) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	if r := m.live.Load(); r != nil {
		r.cache.Stop()
	}
}

// HTTPChallenge wraps the plain HTTP listener's handler: it answers the
// ACME http-01 challenge (GET /.well-known/acme-challenge/TOKEN) for the
// names obtained over ACME, from this edge's challenges or, through the
// shared storage, from those of the edge that placed the order. Such a
// request for an ACME name never reaches next (and so is never forwarded
// to an origin, nor cached): a token this edge does not know gets 404.
// Without ACME (or with http-01 disabled) it returns next itself.
func (s *Source) HTTPChallenge(next http.Handler) http.Handler {
	if s.acme == nil || s.acme.conf.DisableHTTP01 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, challengePath) || !s.table.Load().acme[normalize(hostOnly(r.Host))] {
			next.ServeHTTP(w, r)
			return
		}
		if rn := s.acme.live.Load(); rn != nil && rn.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "meridian: 404 Not Found: no such ACME challenge", http.StatusNotFound)
	})
}

// hostOnly is a Host header without its port.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}
