package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options are what a Source is made with besides its Config.
type Options struct {
	// Logger receives reloads, refused files and ACME's events. Nil
	// discards them.
	Logger *slog.Logger
	// Now is the clock of expiry warnings. Nil means time.Now.
	Now func() time.Time
	// Ticks is the clock of the file poll: it returns a channel that
	// ticks every interval, and a func that stops it. Nil means a
	// time.Ticker. Tests pass their own channel.
	Ticks func(interval time.Duration) (ticks <-chan time.Time, stop func())
}

// Source chooses the certificate of each TLS handshake. Its GetCertificate
// is safe for concurrent use and takes no lock: it reads an immutable
// table that Reload, Apply and the file poll replace whole.
type Source struct {
	log   *slog.Logger
	now   func() time.Time
	ticks func(time.Duration) (<-chan time.Time, func())
	table atomic.Pointer[table]
	acme  *manager // nil when no site asked for ACME at New

	// mu serializes changes (Apply, the poll) and guards cfg and
	// entries. It is held while certificate files are read (local
	// files, no network), never by GetCertificate.
	mu      sync.Mutex
	cfg     Config
	entries []*entry

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// entry is one configured key pair and what was last loaded from it.
type entry struct {
	field string   // "tls", "tls.certificates[1]", "sites[2].tls"
	pair  KeyPair  //
	site  []string // a site's names; nil for the others
	def   bool     // the default certificate
	cert  *tls.Certificate
	stamp stamp // of the files cert was read from (or last refused)
}

// stamp is what the poll compares of a key pair: its files' modification
// times and sizes.
type stamp struct{ cert, key fileStamp }

// statPair stamps a key pair's files; ok is false if one is missing.
func statPair(p KeyPair) (s stamp, ok bool) {
	c, ok1 := statFile(p.CertFile)
	k, ok2 := statFile(p.KeyFile)
	if !ok1 || !ok2 {
		return stamp{}, false
	}
	return stamp{c, k}, true
}

// table is what GetCertificate reads: built from the entries, then never
// changed.
type table struct {
	exact map[string]*tls.Certificate // name → certificate
	wild  map[string]*tls.Certificate // "example.com" → the certificate of *.example.com
	acme  map[string]bool             // names obtained over ACME
	def   *tls.Certificate
}

// New loads every configured certificate; an error names the field of
// the first that cannot be loaded. Serving starts at once (GetCertificate);
// Start begins the file poll and ACME.
func New(cfg Config, opt Options) (*Source, error) {
	s := &Source{log: opt.Logger, now: opt.Now, ticks: tickerFunc(opt), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	cfg = cfg.withDefaults()
	if cfg.usesACME() {
		if err := cfg.ACME.Validate(); err != nil {
			return nil, fmt.Errorf("tls.acme.%w", err)
		}
		m, err := newManager(cfg.ACME, s.log)
		if err != nil {
			return nil, err
		}
		s.acme = m
	}
	u, err := s.Prepare(cfg)
	if err != nil {
		return nil, err
	}
	u.Apply()
	return s, nil
}

// Update is a loaded configuration, ready to be applied.
type Update struct {
	s       *Source
	cfg     Config
	entries []*entry
}

// Prepare loads every certificate cfg names, afresh, without changing
// what is served: the first half of a reload. The error names the field
// of the first certificate that cannot be loaded (the running ones keep
// serving). A Source made without ACME refuses a cfg whose sites ask for
// it: that takes a restart.
func (s *Source) Prepare(cfg Config) (*Update, error) {
	cfg = cfg.withDefaults()
	if s.acme == nil && cfg.usesACME() {
		for _, st := range cfg.Sites {
			if st.ACME {
				return nil, fmt.Errorf("%s.acme: ACME was off when the edge started; a restart turns it on", st.Field)
			}
		}
	}
	u := &Update{s: s, cfg: cfg}
	add := func(field string, p KeyPair, site []string, def bool) error {
		st, _ := statPair(p)
		e := &entry{field: field, pair: p, site: site, def: def, stamp: st}
		var err error
		if site != nil {
			e.cert, err = CheckSite(Site{Field: field, Names: site, Files: &p})
		} else {
			e.cert, err = Load(field, p)
		}
		if err != nil {
			return err
		}
		u.entries = append(u.entries, e)
		return nil
	}
	if cfg.Default != nil {
		if err := add("tls", *cfg.Default, nil, true); err != nil {
			return nil, err
		}
	}
	for i, p := range cfg.Certificates {
		if err := add(fmt.Sprintf("tls.certificates[%d]", i), p, nil, false); err != nil {
			return nil, err
		}
	}
	for _, st := range cfg.Sites {
		if st.Files != nil {
			if err := add(st.Field, *st.Files, st.Names, false); err != nil {
				return nil, err
			}
		}
	}
	return u, nil
}

// Apply makes u's certificates the ones served, from the next handshake
// on (handshakes in progress and open connections keep theirs), and
// starts or stops ACME management of the names that came or went.
func (u *Update) Apply() {
	s := u.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg, s.entries = u.cfg, u.entries
	for _, e := range u.entries {
		s.warnCoverage(e)
	}
	s.rebuild()
	if s.acme != nil {
		s.acme.setNames(acmeNames(u.cfg))
	}
}

// Reload re-reads every certificate file now (the node calls it on
// SIGHUP with its new config): Prepare and Apply. On error nothing
// changes.
func (s *Source) Reload(cfg Config) error {
	u, err := s.Prepare(cfg)
	if err != nil {
		return err
	}
	u.Apply()
	return nil
}

// acmeNames are the normalized names of the ACME sites.
func acmeNames(cfg Config) []string {
	var names []string
	for _, st := range cfg.Sites {
		if st.ACME {
			for _, n := range st.Names {
				names = append(names, normalize(n))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// warnCoverage logs what an entry's certificate does not do well: a
// site's names it does not cover, an expiry passed.
func (s *Source) warnCoverage(e *entry) {
	if e.site != nil {
		if _, others := Covered(e.cert.Leaf, e.site); len(others) > 0 {
			s.log.Warn("certificate does not cover some of the site's hosts; their clients get another certificate (or none)",
				"field", e.field, "cert_file", e.pair.CertFile, "hosts", others, "certificate_names", e.cert.Leaf.DNSNames)
		}
	}
	if expired(e.cert, s.now()) {
		s.log.Error("certificate expired", "field", e.field, "cert_file", e.pair.CertFile, "not_after", e.cert.Leaf.NotAfter)
	}
}

// rebuild makes the table from the entries. Precedence: a site's own
// certificate (or ACME) for its names, then the certificates list
// (exact names, then wildcards), then the default. s.mu is held.
func (s *Source) rebuild() {
	t := &table{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}, acme: map[string]bool{}}
	for _, e := range s.entries {
		switch {
		case e.def:
			t.def = e.cert
		case e.site == nil:
			for _, san := range e.cert.Leaf.DNSNames {
				san = normalize(san)
				if parent, ok := strings.CutPrefix(san, "*."); ok {
					if _, dup := t.wild[parent]; !dup {
						t.wild[parent] = e.cert
					}
				} else if _, dup := t.exact[san]; !dup {
					t.exact[san] = e.cert
				}
			}
		}
	}
	for _, e := range s.entries {
		if e.site != nil {
			covered, _ := Covered(e.cert.Leaf, e.site)
			for _, n := range covered {
				t.exact[normalize(n)] = e.cert
			}
		}
	}
	for _, n := range acmeNames(s.cfg) {
		delete(t.exact, n)
		t.acme[n] = true
	}
	s.table.Store(t)
}

// errNoCertificate fails a handshake whose name no certificate covers.
var errNoCertificate = errors.New("no certificate for this server name")

// GetCertificate is the tls.Config hook: the certificate for the client's
// server name (SNI), matched exactly, then by a wildcard one label up,
// then the default. A name obtained over ACME gets its managed
// certificate, and an ACME server's tls-alpn-01 validation (ALPN
// acme-tls/1 alone) its challenge certificate.
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := s.table.Load()
	name := normalize(hello.ServerName)
	if s.acme != nil && isALPNChallenge(hello) {
		// Only for the ACME names: certmagic looks a challenge up in
		// the storage, which no client should make it do for any name.
		if !t.acme[name] {
			return nil, fmt.Errorf("%w (%q, acme-tls/1)", errNoCertificate, hello.ServerName)
		}
		return s.acme.challengeCert(hello)
	}
	var acmeErr error
	if name != "" {
		if c := t.exact[name]; c != nil {
			return c, nil
		}
		if t.acme[name] {
			c, err := s.acme.certificate(hello)
			if err == nil {
				return c, nil
			}
			acmeErr = err // not obtained yet: the wildcard or default, if any
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := t.wild[parent]; c != nil {
				return c, nil
			}
		}
	}
	if t.def != nil {
		return t.def, nil
	}
	if acmeErr != nil {
		return nil, acmeErr
	}
	return nil, fmt.Errorf("%w (%q)", errNoCertificate, hello.ServerName)
}

// NextProtos are the ALPN protocols the HTTPS listener must offer besides
// HTTP's: acme-tls/1 when the tls-alpn-01 challenge is answered.
func (s *Source) NextProtos() []string {
	if s.acme != nil && !s.acme.conf.DisableTLSALPN01 {
		return []string{alpnProto}
	}
	return nil
}

// Start begins the file poll and ACME management. httpAddr and tlsAddr are
// the bound addresses of the plain and HTTPS listeners: ACME's challenges
// are answered there, by HTTPChallenge and GetCertificate. It is a no-op
// after the first call, or after Close.
func (s *Source) Start(httpAddr, tlsAddr string) error {
	var err error
	s.startOnce.Do(func() {
		select {
		case <-s.stop:
			return
		default:
		}
		s.mu.Lock()
		interval := s.cfg.ReloadInterval
		s.mu.Unlock()
		if s.acme != nil {
			if err = s.acme.start(httpAddr, tlsAddr); err != nil {
				return
			}
		}
		if interval > 0 {
			ticks, stop := s.ticks(interval)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer stop()
				for {
					select {
					case <-s.stop:
						return
					case <-ticks:
						s.poll()
					}
				}
			}()
		}
	})
	return err
}

// poll re-reads the key pairs whose files changed since they were last
// read. A pair that fails to load keeps its running certificate, and the
// error is logged once per change of the files.
func (s *Source) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for i, e := range s.entries {
		st, ok := statPair(e.pair)
		if !ok {
			st = stamp{} // a file gone: logged once, when it goes
		}
		if st == e.stamp {
			continue
		}
		next := *e
		next.stamp = st
		s.entries[i] = &next
		var cert *tls.Certificate
		var err error
		if e.site != nil {
			cert, err = CheckSite(Site{Field: e.field, Names: e.site, Files: &e.pair})
		} else {
			cert, err = Load(e.field, e.pair)
		}
		if err != nil {
			s.log.Error("changed certificate refused; the running one keeps serving", "field", e.field, "err", err)
			continue
		}
		next.cert = cert
		changed = true
		s.log.Info("certificate reloaded", "field", e.field, "cert_file", e.pair.CertFile,
			"names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
		s.warnCoverage(&next)
	}
	if changed {
		s.rebuild()
	}
}

// Close stops the poll and ACME management. Safe to call more than once.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if s.acme != nil {
			s.acme.close()
		}
	})
	return nil
}
