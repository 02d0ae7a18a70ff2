package origin

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// TLSConfig is how a pool talks TLS to its https servers. Its zero value
// verifies each server's certificate against the system roots under the
// server's URL host name, as any HTTPS client does.
type TLSConfig struct {
	// CAFile is a PEM file of the CA certificates that sign the servers'
	// certificates (a private CA). When set, only these are trusted: the
	// system roots are not, so that a certificate a public CA issued for
	// the same name cannot stand in for the private origin. Default: the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name sent in SNI and verified in the servers'
	// certificates, for every server of the pool. Default: the server's
	// URL host, or, when that is an IP address and the server has a host
	// override, that host (SNI cannot carry an IP address, and an
	// origin reached by IP usually holds a certificate for its site).
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a PEM client certificate and its private
	// key, presented to servers that ask for one (mutual TLS). Both or
	// neither. Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is the lowest TLS version offered: "1.2" or "1.3".
	// Default "1.2".
	MinVersion string `yaml:"min_version"`
	// InsecureSkipVerify accepts any certificate from the servers: for
	// staging only, where it is logged as a warning when the pool starts.
	// Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// isZero reports whether t asks for nothing beyond the defaults.
func (t TLSConfig) isZero() bool { return t == TLSConfig{} }

// tlsVersions are the accepted values of min_version.
var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// validate reports every mistake in t, each naming its field under prefix
// (such as "tls"). It reads the files: a file that is missing, does not
// parse or a key that does not match its certificate is a mistake.
func (t TLSConfig) validate(prefix string) []error {
	_, errs := t.load(prefix)
	return errs
}

// tlsMaterial is what the files of a TLSConfig hold.
type tlsMaterial struct {
	roots *x509.CertPool   // nil: the system roots
	cert  *tls.Certificate // nil: no client certificate
}

// load reads and checks t's files.
func (t TLSConfig) load(prefix string) (tlsMaterial, []error) {
	var m tlsMaterial
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, field, fmt.Sprintf(format, args...)))
	}
	if t.CAFile != "" {
		if pem, err := os.ReadFile(t.CAFile); err != nil {
			bad("ca_file", "%v", err)
		} else if roots := x509.NewCertPool(); !roots.AppendCertsFromPEM(pem) {
			bad("ca_file", "%s: no PEM certificate in it", t.CAFile)
		} else {
			m.roots = roots
		}
	}
	if !validHeaderValue(t.ServerName) || strings.ContainsAny(t.ServerName, " \t/:") || len(t.ServerName) > 253 {
		bad("server_name", "%q is not a host name", t.ServerName)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("key_file", "missing: cert_file needs its key")
	case t.CertFile == "" && t.KeyFile != "":
		bad("cert_file", "missing: key_file needs its certificate")
	case t.CertFile != "":
		cert, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			bad(err.field, "%v", err.err)
		} else {
			m.cert = cert
		}
	}
	if _, ok := tlsVersions[t.MinVersion]; !ok && t.MinVersion != "" {
		bad("min_version", "%q: want \"1.2\" or \"1.3\"", t.MinVersion)
	}
	return m, errs
}

// fieldError is an error about one field.
type fieldError struct {
	field string
	err   error
}

// loadKeyPair reads a certificate and its key, telling which file is wrong.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, *fieldError) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &fieldError{"cert_file", err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &fieldError{"key_file", err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		return &cert, nil
	}
	// Which file is at fault: parse each alone.
	if !hasCertificate(certPEM) {
		return nil, &fieldError{"cert_file", fmt.Errorf("%s: no PEM certificate that parses", certFile)}
	}
	if !hasKey(keyPEM) {
		return nil, &fieldError{"key_file", fmt.Errorf("%s: no PEM private key that parses", keyFile)}
	}
	return nil, &fieldError{"key_file", fmt.Errorf("%s does not match the certificate in %s: %w", keyFile, certFile, err)}
}

// hasCertificate reports whether pemData holds a certificate that parses.
func hasCertificate(pemData []byte) bool {
	return x509.NewCertPool().AppendCertsFromPEM(pemData)
}

// hasKey reports whether pemData holds a private key that parses.
func hasKey(pemData []byte) bool {
	for rest := pemData; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			return true
		}
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return true
		}
		if _, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return true
		}
	}
}

// clientConfig returns the TLS client configuration of t on top of base
// (nil: a new one). It fails on the mistakes validate reports.
func (t TLSConfig) clientConfig(base *tls.Config) (*tls.Config, error) {
	m, errs := t.load("tls")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &tls.Config{}
	if base != nil {
		c = base.Clone()
	}
	if m.roots != nil {
		c.RootCAs = m.roots
	}
	if m.cert != nil {
		cert := *m.cert
		c.Certificates = []tls.Certificate{cert}
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if v, ok := tlsVersions[t.MinVersion]; ok {
		c.MinVersion = v
	} else if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if t.InsecureSkipVerify {
		c.InsecureSkipVerify = true
	}
	return c, nil
}

// serverName is the name a server is verified under when it differs from
// its URL host: the host override of a server reached by IP address,
// unless the pool names one for all. "" means the transport's default.
func (t TLSConfig) serverName(s ServerConfig, urlHost string) string {
	if t.ServerName != "" || s.Host == "" || net.ParseIP(urlHost) == nil {
		return ""
	}
	host := s.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}
