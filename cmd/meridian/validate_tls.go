package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/meridiancdn/meridian/edge/node"
)

// checkEdgeTLS checks that the edge's certificate and key files exist,
// parse and match, naming the field at fault.
func checkEdgeTLS(cfg node.Config) error {
	t := cfg.TLS
	if t == nil {
		return nil
	}
	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return fmt.Errorf("tls.key_file: %w", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		switch {
		case !x509.NewCertPool().AppendCertsFromPEM(certPEM):
			return fmt.Errorf("tls.cert_file: %s: no PEM certificate that parses", t.CertFile)
		case !pemHasKey(keyPEM):
			return fmt.Errorf("tls.key_file: %s: no PEM private key that parses", t.KeyFile)
		default:
			return fmt.Errorf("tls.key_file: %s does not match the certificate in %s: %w", t.KeyFile, t.CertFile, err)
		}
	}
	return nil
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
