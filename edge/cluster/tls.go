package cluster

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
)

// TLSConfig puts the links between members (peer fills, replica copies,
// consults, shield and failover fills, purges) on mutual TLS: each end
// presents a certificate signed by the cluster CA and checks the other's
// against it. It is the `cluster.tls` section of the node's YAML. The zero
// value leaves the links on plain HTTP; set all three files or none.
//
// The CA is the whole CDN's (every region's members and the shield talk
// to each other), kept for the links between edges only: any certificate
// it signed for both server and client authentication is a member's, and
// the member's name is not checked against the certificate (the signed
// request names the member, see [HeaderPeerSignature]). TLS gives the
// links confidentiality and the answers integrity: a proxy on the link
// that alters a byte fails the handshake or the record's MAC, and the
// fill goes to the next source, never into the cache. The HMAC signature
// stays the authorisation: who may ask what, once.
//
// The files are read when the node starts, and again without a restart
// (as the sites' certificates, by edge/certs) when one of them changes
// (checked every ReloadInterval) or on SIGHUP (Member.ReloadTLS): the next
// handshake of a link, either end, uses the new certificate and CA, and
// the connections open keep theirs, so no link request is dropped. Files
// that do not load or check (a key that does not match, a certificate
// the new CA did not sign) are refused and the running ones kept. A
// reload ends TLS session resumption with the old certificate: its
// tickets and cached sessions are dropped.
type TLSConfig struct {
	// CAFile is the cluster CA's certificate(s), PEM. Default none (plain
	// HTTP between members).
	CAFile string `yaml:"ca_file"`
	// CertFile is this member's certificate, PEM, signed by the CA (any
	// intermediates after it), with the extended key usages serverAuth and
	// clientAuth. Default none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the certificate's private key, PEM. Default none.
	KeyFile string `yaml:"key_file"`
	// ReloadInterval is how often the three files are checked for a
	// change (modification time or size). Default 30s; negative: only
	// SIGHUP re-reads them.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// reloadInterval is ReloadInterval with its default.
func (c TLSConfig) reloadInterval() time.Duration {
	if c.ReloadInterval == 0 {
		return certs.DefaultReloadInterval
	}
	return c.ReloadInterval
}

// Enabled reports whether the links are on mutual TLS.
func (c TLSConfig) Enabled() bool { return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" }

// validate checks that the three files are set together (it reads none).
func (c TLSConfig) validate() error {
	if !c.Enabled() {
		return nil
	}
	switch {
	case c.CAFile == "":
		return errors.New("cluster.tls.ca_file: required with cluster.tls.cert_file and key_file")
	case c.CertFile == "":
		return errors.New("cluster.tls.cert_file: required with cluster.tls.ca_file")
	case c.KeyFile == "":
		return errors.New("cluster.tls.key_file: required with cluster.tls.ca_file")
	}
	return nil
}

// Check reads the files and checks them as [New] does: they exist and
// parse, the key matches the certificate, and the certificate is signed
// by the CA, valid at now and good for both ends of a connection. The
// error names the field at fault. A zero TLSConfig is fine.
func (c TLSConfig) Check(now time.Time) error {
	if !c.Enabled() {
		return nil
	}
	_, err := c.load(now)
	return err
}

// peerTLS is a member's TLS for its links: the server's config (the peer
// endpoint) and the client's (asking the others), which read the running
// credentials at each handshake.
type peerTLS struct {
	server, client *tls.Config
	creds          *certs.Watched[*linkCreds]
	// refused counts the handshakes refused for the other end's
	// certificate (none, expired, another CA's), either end.
	refused atomic.Uint64
}

// linkCreds are what the files give: the CA pool, the member's
// certificate, and what lives as long as they do: the server's config,
// whose own session ticket key ends resumption of the sessions made with
// the previous certificate, and the client's session cache.
type linkCreds struct {
	pool     *x509.CertPool
	cert     *tls.Certificate
	server   *tls.Config
	sessions tls.ClientSessionCache
}

// watch loads the files (see Check) and builds the configs, which follow
// the files as they change (once started); nil when TLS is off.
func (c TLSConfig) watch(now func() time.Time, log *slog.Logger) (*peerTLS, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	p := &peerTLS{}
	w, err := certs.Watch("cluster.tls", []string{c.CAFile, c.CertFile, c.KeyFile}, func() (*linkCreds, error) {
		lc, err := c.load(now())
		if err != nil {
			return nil, err
		}
		lc.server = p.serverFor(lc)
		return lc, nil
	}, certs.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	p.creds = w
	p.build()
	return p, nil
}

// load reads and checks the files (see Check).
func (c TLSConfig) load(now time.Time) (*linkCreds, error) {
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool, err := caPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %s: %w", c.CAFile, err)
	}
	cert, err := certs.Load("cluster.tls", certs.KeyPair{CertFile: c.CertFile, KeyFile: c.KeyFile})
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cluster.tls.cert_file: %s: intermediate: %w", c.CertFile, err)
		}
		inter.AddCert(ic)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}})
		if err != nil {
			return nil, fmt.Errorf("cluster.tls.cert_file: %s is not a member certificate of the CA in %s: %w", c.CertFile, c.CAFile, err)
		}
	}
	return &linkCreds{pool: pool, cert: cert, sessions: tls.NewLRUClientSessionCache(256)}, nil
}

// caPool parses the CA certificates of a PEM file: at least one, each a
// CA.
func caPool(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%q is not a CA certificate", c.Subject.CommonName)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// peerALPN is the one protocol the links speak: HTTP/1.1, whose interim
// 102 answers carry the peers' liveness (see the package documentation).
const peerALPN = "http/1.1"

// verify checks a peer's chain against the running CA, counting a
// refusal.
func (p *peerTLS) verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	err := verifyPeer(p.creds.Get().pool, chain, usage)
	if err != nil {
		p.refused.Add(1)
	}
	return err
}

// serverFor is the peer endpoint's config for lc. TLS 1.3 only: every
// member runs this program, and 1.3 encrypts the certificates too.
func (p *peerTLS) serverFor(lc *linkCreds) *tls.Config {
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*lc.cert},
		// A certificate is required and verified in VerifyConnection,
		// as tls.RequireAndVerifyClientCert would (against ClientCAs,
		// for client authentication), so that every refusal, a missing
		// certificate included, is counted.
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  lc.pool, // named in the certificate request
		NextProtos: []string{peerALPN},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
		},
		// Full-size records from the first byte: an asker reads the
		// whole answer before it uses it (up to 1 MiB), so the small
		// first records that help a browser render early only cost
		// here.
		DynamicRecordSizingDisabled: true,
	}
	// A ticket key of these credentials' own: a session resumed would
	// skip the certificates, so the sessions made with the previous ones
	// end with them.
	var key [32]byte
	rand.Read(key[:])
	conf.SetSessionTicketKeys([][32]byte{key})
	return conf
}

// build makes the two configs, which read the running credentials at
// each handshake.
func (p *peerTLS) build() {
	p.server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{peerALPN},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return p.creds.Get().server, nil
		},
	}
	p.client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Sent whatever CAs the server names, so that a server with
		// another CA refuses it rather than sees no certificate.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.creds.Get().cert, nil },
		NextProtos:           []string{peerALPN},
		ClientSessionCache:   sessionsOf{p.creds},
		// The chain is verified in VerifyConnection, against the cluster
		// CA alone and without a host name: members are reached by IP
		// and port from the gossip, and any member certificate of the CA
		// is a member's (the signed request names which one).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return p.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
		},
	}
}

// sessionsOf is the client's session cache of the running credentials:
// a reload starts an empty one, so that the next handshake with each
// member is a full one, with the new certificate.
type sessionsOf struct{ w *certs.Watched[*linkCreds] }

func (s sessionsOf) Get(key string) (*tls.ClientSessionState, bool) {
	return s.w.Get().sessions.Get(key)
}

func (s sessionsOf) Put(key string, cs *tls.ClientSessionState) { s.w.Get().sessions.Put(key, cs) }

// ReloadTLS reads the cluster.tls files again now (the node calls it on
// SIGHUP), whether or not they changed: the next handshake of a link
// uses them. On error (a file that does not load or check) the running
// ones stay. Without cluster.tls it does nothing.
func (n *Member) ReloadTLS() error {
	if n.tls == nil {
		return nil
	}
	return n.tls.creds.Reload()
}

// TLSExpiries is the expiry of this member's link certificate, for the
// metric meridian_tls_certificate_expiry_timestamp_seconds (source
// cluster.tls); none without cluster.tls.
func (n *Member) TLSExpiries() []certs.Expiry {
	if n.tls == nil {
		return nil
	}
	if x, ok := certs.ExpiryOf("cluster.tls", n.tls.creds.Get().cert); ok {
		return []certs.Expiry{x}
	}
	return nil
}

// TLSRefused counts the handshakes on this member's links refused for
// the other end's certificate (none, expired, not the cluster CA's), as
// server or client, for metrics: on a healthy region it stays still.
// Always 0 without cluster.tls.
func (n *Member) TLSRefused() uint64 {
	if n.tls == nil {
		return 0
	}
	return n.tls.refused.Load()
}

// TLS reports whether this member's links are on mutual TLS.
func (n *Member) TLS() bool { return n.tls != nil }

// errNoPeerCert refuses a handshake in which the other end showed no
// certificate.
var errNoPeerCert = errors.New("cluster tls: the peer presented no certificate")

// verifyPeer checks a peer's chain (leaf first) against the cluster CA,
// for the usage its end of the connection needs.
func verifyPeer(pool *x509.CertPool, chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errNoPeerCert
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("cluster tls: peer certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}
