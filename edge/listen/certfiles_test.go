package listen

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// WriteCertFiles writes a self-signed certificate for host and its key to
// files in a temporary folder of tb, for a test's TLS listener (tests of
// package listen_test see it too: test files only).
func WriteCertFiles(tb testing.TB, host string) (certFile, keyFile string) {
	tb.Helper()
	certPEM, keyPEM, err := SelfSignedCert([]string{host}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}
