package certs

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"
)

// Config is what a Source serves: certificate files chosen by server name,
// and the names obtained over ACME. Its zero value serves nothing (every
// handshake fails); edge/node builds it from the edge's config.
type Config struct {
	// Default is served to a client whose server name (SNI) no other
	// certificate covers, or that sends none (a client that dials an IP
	// address). Nil: such handshakes fail, as Caddy's do.
	Default *KeyPair
	// Certificates are served for the names of their subject alternative
	// names (DNS names; "*.example.com" covers one label below
	// example.com). When two claim one name, the first listed wins.
	Certificates []KeyPair
	// Sites are per-site certificates: each serves only the site's names.
	Sites []Site
	// ACME settings for the sites that have ACME set.
	ACME ACMEConfig
	// ReloadInterval is how often the files are checked for a change (of
	// modification time or size); a changed certificate is served from
	// the next handshake on. Default 30s; negative: only Reload re-reads.
	ReloadInterval time.Duration
}

// KeyPair names a PEM certificate chain (leaf first) and its PEM private
// key.
type KeyPair struct {
	// CertFile is the certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the leaf's private key (PKCS #1, PKCS #8 or SEC 1).
	KeyFile string `yaml:"key_file"`
}

// Site is one site's certificate: from files, or over ACME.
type Site struct {
	// Field names the site in errors and logs, such as "sites[2].tls".
	Field string
	// Names are the site's host names. A site's certificate serves only
	// those of them that it covers; ACME obtains one certificate per name.
	Names []string
	// Files is the site's certificate. Nil with ACME, or for a site
	// served by Config.Certificates or Config.Default.
	Files *KeyPair
	// ACME obtains and renews a certificate for each of Names.
	ACME bool
}

// ACMEConfig is how certificates are obtained over ACME (RFC 8555), for the
// sites that ask for it. Enabling ACME agrees to the CA's subscriber
// agreement, as Caddy does.
type ACMEConfig struct {
	// Directory is the CA's ACME directory URL. Default Let's Encrypt's
	// production directory (LetsEncrypt).
	Directory string `yaml:"directory"`
	// Email is the account's contact address: the CA writes to it about
	// expiring certificates and incidents. Default none.
	Email string `yaml:"email"`
	// CAFile is a PEM file of root certificates that alone are trusted for
	// the ACME server's own HTTPS (a private or test CA such as pebble).
	// Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// Storage is the directory that holds the account, the certificates,
	// their keys and the locks. The edges of a region must share it (one
	// volume mounted by all, ReadWriteMany in Kubernetes): an edge that
	// finds a name locked or its certificate stored does not ask the CA
	// again. Default "/var/lib/meridian/acme".
	Storage string `yaml:"storage"`
	// DisableHTTP01 stops answering the http-01 challenge (on the plain
	// listener's /.well-known/acme-challenge/). Default false.
	DisableHTTP01 bool `yaml:"disable_http_01"`
	// DisableTLSALPN01 stops answering the tls-alpn-01 challenge (ALPN
	// acme-tls/1 on the HTTPS listener). Default false.
	DisableTLSALPN01 bool `yaml:"disable_tls_alpn_01"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal; a certificate is renewed when a third of its lifetime is
	// left, or earlier when the CA's renewal information (ARI) says so.
	// Default 10m (certmagic's).
	RenewCheckInterval time.Duration `yaml:"renew_check_interval"`
}

// LetsEncrypt is Let's Encrypt's production ACME directory, the default.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Defaults of Config and ACMEConfig.
const (
	DefaultReloadInterval     = 30 * time.Second
	DefaultStorage            = "/var/lib/meridian/acme"
	DefaultRenewCheckInterval = 10 * time.Minute
)

// WithDefaults returns a copy of a with every unset field given its default.
func (a ACMEConfig) WithDefaults() ACMEConfig {
	if a.Directory == "" {
		a.Directory = LetsEncrypt
	}
	if a.Storage == "" {
		a.Storage = DefaultStorage
	}
	if a.RenewCheckInterval == 0 {
		a.RenewCheckInterval = DefaultRenewCheckInterval
	}
	return a
}

// Validate reports the first problem in a, naming the field (relative to
// the acme section). Call it on the result of WithDefaults.
func (a ACMEConfig) Validate() error {
	u, err := url.Parse(a.Directory)
	switch {
	case err != nil:
		return fmt.Errorf("directory: %v", err)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("directory: %q is not an https URL", a.Directory)
	case a.Storage == "":
		return errors.New("storage: required")
	case a.DisableHTTP01 && a.DisableTLSALPN01:
		return errors.New("disable_tls_alpn_01: with disable_http_01 no challenge is left")
	case a.RenewCheckInterval < 0:
		return errors.New("renew_check_interval: negative")
	}
	return nil
}

// withDefaults fills in c's defaults.
func (c Config) withDefaults() Config {
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	c.ACME = c.ACME.WithDefaults()
	return c
}

// usesACME reports whether a site asks for ACME.
func (c Config) usesACME() bool {
	for _, s := range c.Sites {
		if s.ACME {
			return true
		}
	}
	return false
}

// readCAFile reads an ACME ca_file.
func readCAFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	return b, nil
}
