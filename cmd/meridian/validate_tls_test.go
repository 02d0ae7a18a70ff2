package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
)

// selfSigned returns a PEM certificate for name and its PEM key.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// validate checks the edge's certificate and key: they exist, parse and
// match, and the error names the field.
func TestValidateChecksTheEdgeCertificate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM := selfSigned(t, "a.example")
	_, otherKey := selfSigned(t, "b.example")
	cert, key, other := write("tls.crt", certPEM), write("tls.key", keyPEM), write("other.key", otherKey)
	garbage := write("garbage.pem", []byte("not PEM\n"))
	missing := filepath.Join(dir, "missing.pem")

	config := func(certFile, keyFile string) string {
		return write("edge.yaml", []byte("sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n"+
			"tls: {listen: '127.0.0.1:0', cert_file: '"+certFile+"', key_file: '"+keyFile+"'}\n"))
	}
	var out bytes.Buffer
	if err := validate(&out, []string{config(cert, key)}); err != nil || !strings.Contains(out.String(), "valid edge config") {
		t.Fatalf("good certificate: %v %q", err, out.String())
	}
	for _, tc := range []struct{ name, cert, key, want string }{
		{"missing certificate", missing, key, "tls.cert_file: open " + missing},
		{"missing key", cert, missing, "tls.key_file: open " + missing},
		{"certificate is garbage", garbage, key, "tls.cert_file: " + garbage + ": no PEM certificate"},
		{"certificate is a key", key, key, "tls.cert_file: " + key + ": no PEM certificate"},
		{"key is garbage", cert, garbage, "tls.key_file: " + garbage + ": no PEM private key"},
		{"key of another certificate", cert, other, "tls.key_file: " + other + " does not match the certificate in " + cert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(&bytes.Buffer{}, []string{config(tc.cert, tc.key)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want %q", err, tc.want)
			}
		})
	}
}

// validate checks every certificate the edge serves, the list's and each
// site's too, and names the site of one at fault.
func TestValidateChecksEverySiteCertificate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aCert, aKey := selfSigned(t, "a.example")
	bCert, bKey := selfSigned(t, "b.example")
	wCert, wKey := selfSigned(t, "w.example")
	a, ak := write("a.crt", aCert), write("a.key", aKey)
	b, bk := write("b.crt", bCert), write("b.key", bKey)
	w, wk := write("w.crt", wCert), write("w.key", wKey)
	missing := filepath.Join(dir, "missing.pem")
	garbage := write("garbage.pem", []byte("not PEM at all\n"))
	config := func(list, siteB string) string {
		return write("edge.yaml", []byte("tls: {listen: '127.0.0.1:0', certificates: ["+list+"]}\n"+
			"sites:\n"+
			"  - {hosts: [a.example], origin: 'http://127.0.0.1:1', tls: {cert_file: '"+a+"', key_file: '"+ak+"'}}\n"+
			"  - {hosts: [b.example], origin: 'http://127.0.0.1:1', tls: "+siteB+"}\n"))
	}
	pairOf := func(c, k string) string { return "{cert_file: '" + c + "', key_file: '" + k + "'}" }
	var out bytes.Buffer
	if err := validate(&out, []string{config(pairOf(w, wk), pairOf(b, bk))}); err != nil {
		t.Fatalf("good certificates: %v", err)
	}
	for _, tc := range []struct{ name, list, siteB, want string }{
		{"site's key missing", pairOf(w, wk), pairOf(b, missing), "sites[1].tls.key_file: open " + missing + ": no such file or directory (site b.example)"},
		{"site's key of another certificate", pairOf(w, wk), pairOf(b, ak), "sites[1].tls.key_file: " + ak + " does not match the certificate in " + b},
		{"site's certificate not PEM", pairOf(w, wk), pairOf(garbage, bk), "sites[1].tls.cert_file: " + garbage},
		{"site's key not PEM", pairOf(w, wk), pairOf(b, garbage), "sites[1].tls.key_file: " + garbage},
		{"site's certificate is a key", pairOf(w, wk), pairOf(bk, bk), "sites[1].tls.cert_file: " + bk},
		{"site's certificate for another name", pairOf(w, wk), pairOf(a, ak), "sites[1].tls.cert_file: " + a + ": the certificate (for a.example) covers none of the site's hosts (b.example)"},
		{"list certificate missing", pairOf(missing, wk), pairOf(b, bk), "tls.certificates[0].cert_file: open " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(&bytes.Buffer{}, []string{config(tc.list, tc.siteB)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v\nwant %q", err, tc.want)
			}
			// A site's certificate that does not load names the site.
			if strings.HasPrefix(tc.want, "sites[") && !strings.Contains(err.Error(), "b.example") {
				t.Errorf("validate: %v\ndoes not name the site b.example", err)
			}
		})
	}
}

// validate checks the cluster's member certificate too: its files, and
// that the cluster CA signed it (issue 18).
func TestValidateChecksTheClusterCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("cluster CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("another CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.WriteCertFile(caFile); err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.IssueFiles(dir, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	rogueCert, rogueKey, err := other.IssueFiles(otherDir, "edge1")
	if err != nil {
		t.Fatal(err)
	}
	config := func(cert, key string) string {
		p := filepath.Join(dir, "edge.yaml")
		os.WriteFile(p, []byte("name: edge1\nsites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]\n"+
			"cluster: {secret: 'a-region-secret-0123456789', tls: {ca_file: '"+caFile+"', cert_file: '"+cert+"', key_file: '"+key+"'}}\n"), 0o600)
		return p
	}
	var out bytes.Buffer
	if err := validate(&out, []string{config(cert, key)}); err != nil || !strings.Contains(out.String(), "valid edge config") {
		t.Fatalf("good member certificate: %v %q", err, out.String())
	}
	for _, tc := range []struct{ name, cert, key, want string }{
		{"another CA's certificate", rogueCert, rogueKey, "cluster.tls.cert_file: " + rogueCert + " is not a member certificate of the CA in " + caFile},
		{"key of another certificate", cert, rogueKey, "cluster.tls.key_file: " + rogueKey + " does not match"},
		{"missing key", cert, key + ".missing", "cluster.tls.key_file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(&bytes.Buffer{}, []string{config(tc.cert, tc.key)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want %q", err, tc.want)
			}
		})
	}
}
