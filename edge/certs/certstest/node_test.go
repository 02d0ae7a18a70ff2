package certstest_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/certs/certstest"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/poll"
)

// These tests are here, not in edge/node, for their leak check: certmagic
// keeps a rate limiter goroutine per CA and account for the process's
// life, which edge/node's check (internal/leakcheck) would report.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreTopFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).permit"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	)
}

// freePort is a loopback TCP port free a moment ago: pebble must know the
// node's ports before the node starts.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A node with an ACME site obtains its certificate through its own
// listeners, as `meridian edge` wires them: the http-01 challenge through
// the plain listener (its fast front hands the request on to the
// challenge handler), tls-alpn-01 through the HTTPS listener's ALPN; and
// then serves the site over HTTPS with it.
func TestNodeObtainsACertificateOverEachChallenge(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME issuance against an in-process CA")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin for "+r.Host)
	}))
	defer origin.Close()
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			httpPort, tlsPort := freePort(t), freePort(t)
			p := certstest.Start(t, httpPort, tlsPort, 90*24*time.Hour)
			cfg := node.Config{
				Config: edge.Config{
					AccessLog: edge.AccessLogConfig{Destination: "off"},
					Name:      "acme-node",
					Listen:    "127.0.0.1:" + strconv.Itoa(httpPort),
					TLS: &edge.TLSConfig{
						Listen:       "127.0.0.1:" + strconv.Itoa(tlsPort),
						DisableHTTP3: true,
						ACME: certs.ACMEConfig{Directory: p.Directory, CAFile: p.CAFile, Storage: t.TempDir(),
							DisableHTTP01: challenge != "http-01", DisableTLSALPN01: challenge != "tls-alpn-01"},
					},
					Sites:  []edge.SiteConfig{{Hosts: []string{"www.node.test"}, Origin: origin.URL, TLS: edge.SiteTLSConfig{ACME: true}}},
					Server: edge.ServerConfig{ShutdownTimeout: 5 * time.Second},
				},
				Admin: node.AdminConfig{Listen: "127.0.0.1:0"},
			}
			n, err := node.Start(cfg, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(context.Background())
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}, ForceAttemptHTTP2: true,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", n.TLSAddr())
				}}
			defer tr.CloseIdleConnections()
			poll.Until(t, 90*time.Second, "a verified HTTPS answer for www.node.test", func() bool {
				req, _ := http.NewRequest("GET", "https://www.node.test/x", nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					tr.CloseIdleConnections()
					return false
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "origin for www.node.test" || resp.ProtoMajor != 2 {
					t.Fatalf("over HTTPS with the ACME certificate: %s %d %q", resp.Proto, resp.StatusCode, body)
				}
				return true
			})
			if got := p.Ordered("www.node.test"); got != 1 {
				t.Fatalf("%d orders, want 1", got)
			}
		})
	}
}
