package edge_test

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/certs"
)

// TestOriginOverTLSWithPrivateCAAndSNIOverride: a site whose pool
// reaches its origin by IP over https, the origin holding a certificate
// of a private CA for origin.test only, configured from YAML as an
// operator writes it (sites[].pool.tls). Through the edge over real
// sockets (both fronts: TestMain runs each): with the CA file and a
// name (the server's host override, or tls.server_name) the fill
// verifies the origin under that name, sends it in SNI, and the object
// is then a hit; the origin saw exactly one request, with the SNI and
// Host expected. Without the CA (system roots), or with the CA but no
// name (the IP is not in the certificate), the edge answers 502, the
// origin's handler is never reached, and nothing is stored.
func TestOriginOverTLSWithPrivateCAAndSNIOverride(t *testing.T) {
	ca, err := certs.NewCA("private origin CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("origin.test")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "origin-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	// The origin records what each request that reached it carried.
	var mu sync.Mutex
	var seen []string // "SNI Host path"
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.TLS.ServerName+" "+r.Host+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("from the private origin"))
	}))
	o.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	o.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	o.StartTLS()
	defer o.Close()
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}

	for _, tc := range []struct {
		name, path string
		pool       string // sites[0].pool in YAML
		want       string // what the origin saw; "" for a refused handshake
	}{
		{"host override of an IP server", "/host",
			"{servers: [{url: '" + o.URL + "', host: origin.test}], tls: {ca_file: '" + caFile + "'}}",
			"origin.test origin.test /host"},
		{"server_name over an IP server", "/server_name",
			"{servers: [{url: '" + o.URL + "'}], tls: {ca_file: '" + caFile + "', server_name: origin.test}}",
			"origin.test " + testHost + " /server_name"},
		{"system roots do not know the private CA", "/roots",
			"{servers: [{url: '" + o.URL + "', host: origin.test}]}", ""},
		{"the IP is not in the certificate", "/ip",
			"{servers: [{url: '" + o.URL + "'}], tls: {ca_file: '" + caFile + "'}}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parsed, err := edge.ParseConfig([]byte("listen: 127.0.0.1:0\nsites:\n  - hosts: [" + testHost + "]\n    pool: " + tc.pool + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, nil, func(c *edge.Config) {
				c.Sites[0].Origin = ""
				c.Sites[0].Pool = parsed.Sites[0].Pool
			})
			target := tc.path
			took()
			resp, body := e.get(target)
			if tc.want == "" {
				wantStatus(t, resp, http.StatusBadGateway)
				if got := took(); len(got) != 0 {
					t.Fatalf("the origin served %q over a connection the edge should have refused", got)
				}
				resp, _ = e.get(target)
				wantStatus(t, resp, http.StatusBadGateway)
				wantCS(t, resp, "!hit")
				return
			}
			wantStatus(t, resp, 200)
			if body != "from the private origin" {
				t.Fatalf("body %q", body)
			}
			resp, body = e.get(target)
			wantStatus(t, resp, 200)
			wantCS(t, resp, "hit")
			if body != "from the private origin" {
				t.Fatalf("hit's body %q", body)
			}
			if got := took(); len(got) != 1 || got[0] != tc.want {
				t.Fatalf("the origin saw %q, want exactly [%q] (SNI Host path)", got, tc.want)
			}
		})
	}
}
