package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority held in memory: the cluster CA that
// `meridian up` (and tests) make for the mutual TLS between edges when no
// operator's CA is given. Its key never leaves the process; what it
// issues is PEM, ready for the files that cluster.tls names. A real
// deployment keeps its CA offline and issues with its own tools (see
// deploy/README.md).
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	now     func() time.Time
	valid   time.Duration
}

// NewCA makes a CA (ECDSA P-256, self-signed) named name, valid from an
// hour before now (clock skew between the machines) for validity, which
// also bounds every certificate it issues. now nil means time.Now.
func NewCA(name string, validity time.Duration, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if validity <= 0 {
		return nil, errors.New("certs: CA validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key: %w", err)
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t.Add(-time.Hour),
		NotAfter:              t.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it issues leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, now: now, valid: validity,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM returns the CA's certificate, PEM-encoded: the cluster.tls
// ca_file of every member.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Issue returns a new key (ECDSA P-256) and a certificate for it, both
// PEM-encoded, for the cluster member name: the DNS name name, good for
// both ends of a TLS connection (server and client authentication), as
// every member both serves and asks. It expires with the CA.
func (ca *CA) Issue(name string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key for %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    ca.now().Add(-time.Hour),
		NotAfter:     ca.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: certificate for %s: %w", name, err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: key for %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// IssueFiles issues a certificate for name (see Issue) and writes it and
// its key into dir as name.crt and name.key, the key readable by its
// owner only. It returns the two paths.
func (ca *CA) IssueFiles(dir, name string) (certFile, keyFile string, err error) {
	if name == "" || name != filepath.Base(name) || name == ".." || name == "." {
		return "", "", fmt.Errorf("certs: %q is no file name", name)
	}
	certPEM, keyPEM, err := ca.Issue(name)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := errors.Join(os.WriteFile(certFile, certPEM, 0o644), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		return "", "", fmt.Errorf("certs: %w", err)
	}
	return certFile, keyFile, nil
}

// WriteCertFile writes the CA's certificate (CertPEM) to path.
func (ca *CA) WriteCertFile(path string) error {
	if err := os.WriteFile(path, ca.certPEM, 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// serial returns a random 128-bit serial number (RFC 5280 allows 20
// octets; unpredictable serials are the CA/Browser Forum's rule).
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // never fails (crypto/rand)
	return n.Add(n, big.NewInt(1))
}
