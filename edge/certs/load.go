package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"
)

// Load reads, parses and matches one key pair. field names the pair's
// place in the config ("tls", "tls.certificates[1]", "sites[2].tls"), and
// every error starts with the field at fault: field.cert_file or
// field.key_file. The returned certificate has its Leaf parsed.
func Load(field string, p KeyPair) (*tls.Certificate, error) {
	if p.CertFile == "" {
		return nil, fmt.Errorf("%s.cert_file: required", field)
	}
	if p.KeyFile == "" {
		return nil, fmt.Errorf("%s.key_file: required", field)
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file: %w", field, err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key_file: %w", field, err)
	}
	return parsePair(field, p, certPEM, keyPEM)
}

// parsePair is Load after the reads.
func parsePair(field string, p KeyPair, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		switch {
		case !x509.NewCertPool().AppendCertsFromPEM(certPEM):
			return nil, fmt.Errorf("%s.cert_file: %s: no PEM certificate that parses", field, p.CertFile)
		case !pemHasKey(keyPEM):
			return nil, fmt.Errorf("%s.key_file: %s: no PEM private key that parses", field, p.KeyFile)
		default:
			return nil, fmt.Errorf("%s.key_file: %s does not match the certificate in %s: %w", field, p.KeyFile, p.CertFile, err)
		}
	}
	if cert.Leaf == nil { // X509KeyPair sets it since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s.cert_file: %s: %w", field, p.CertFile, err)
		}
	}
	return &cert, nil
}

// pemHasKey reports whether data holds a private key that parses.
func pemHasKey(data []byte) bool {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
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

// Covered splits names into those the certificate's DNS names cover
// (exactly, or by a wildcard one label deep) and the others.
func Covered(leaf *x509.Certificate, names []string) (covered, others []string) {
	for _, n := range names {
		if covers(leaf.DNSNames, normalize(n)) {
			covered = append(covered, n)
		} else {
			others = append(others, n)
		}
	}
	return covered, others
}

// covers reports whether one of sans covers the normalized name.
func covers(sans []string, name string) bool {
	for _, san := range sans {
		san = normalize(san)
		if san == name {
			return true
		}
		if parent, ok := strings.CutPrefix(san, "*."); ok {
			if _, rest, ok := strings.Cut(name, "."); ok && rest == parent {
				return true
			}
		}
	}
	return false
}

// normalize is a server name as it is looked up: lower case, without a
// trailing dot.
func normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// CheckSite loads a site's certificate and checks that it covers at least
// one of the site's names: what `meridian validate` and Source report.
func CheckSite(s Site) (*tls.Certificate, error) {
	if s.Files == nil {
		return nil, nil
	}
	cert, err := Load(s.Field, *s.Files)
	if err != nil {
		return nil, fmt.Errorf("%w (site %s)", err, strings.Join(s.Names, ", "))
	}
	if covered, _ := Covered(cert.Leaf, s.Names); len(covered) == 0 {
		return nil, fmt.Errorf("%s.cert_file: %s: the certificate (for %s) covers none of the site's hosts (%s)",
			s.Field, s.Files.CertFile, strings.Join(cert.Leaf.DNSNames, ", "), strings.Join(s.Names, ", "))
	}
	return cert, nil
}

// Check loads every certificate cfg names, and the ACME ca_file when a
// site uses ACME: what `meridian validate` runs. The error names the
// field (and the site) of the first that does not load.
func Check(cfg Config) error {
	if cfg.Default != nil {
		if _, err := Load("tls", *cfg.Default); err != nil {
			return err
		}
	}
	for i, p := range cfg.Certificates {
		if _, err := Load(fmt.Sprintf("tls.certificates[%d]", i), p); err != nil {
			return err
		}
	}
	for _, s := range cfg.Sites {
		if _, err := CheckSite(s); err != nil {
			return err
		}
	}
	if cfg.usesACME() && cfg.ACME.CAFile != "" {
		b, err := readCAFile(cfg.ACME.CAFile)
		if err != nil {
			return fmt.Errorf("tls.acme.%w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("tls.acme.ca_file: %s: no PEM certificate that parses", cfg.ACME.CAFile)
		}
	}
	return nil
}

// expired reports whether cert's leaf is past its NotAfter at now.
func expired(cert *tls.Certificate, now time.Time) bool {
	return cert.Leaf != nil && now.After(cert.Leaf.NotAfter)
}
