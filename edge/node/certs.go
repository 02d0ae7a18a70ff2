package node

import (
	"fmt"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/certs"
)

// CertsConfig is the certificate source's config (see edge/certs) from an
// edge's: tls.cert_file as the default certificate, tls.certificates,
// and each site's tls. Nil TLS gives the zero Config. `meridian validate`
// checks the same files through it.
func CertsConfig(c edge.Config) certs.Config {
	t := c.TLS
	if t == nil {
		return certs.Config{}
	}
	cc := certs.Config{Certificates: t.Certificates, ACME: t.ACME, ReloadInterval: t.ReloadInterval}
	if t.CertFile != "" {
		cc.Default = &certs.KeyPair{CertFile: t.CertFile, KeyFile: t.KeyFile}
	}
	for i, s := range c.Sites {
		if s.TLS == (edge.SiteTLSConfig{}) {
			continue
		}
		st := certs.Site{Field: fmt.Sprintf("sites[%d].tls", i), Names: s.Hosts, ACME: s.TLS.ACME}
		if s.TLS.CertFile != "" {
			st.Files = &certs.KeyPair{CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile}
		}
		cc.Sites = append(cc.Sites, st)
	}
	return cc
}

// tlsChanges keeps what of the tls section only a restart applies (the
// listener, HTTP/3, the ACME settings, the poll interval) and reports the
// rest: every reload re-reads the certificate files.
func tlsChanges(old, next *edge.TLSConfig, keep func(string, bool, func()), eff *Config, r *ReloadReport) {
	if old == nil || next == nil {
		keep("tls", old != next, func() { eff.TLS = old })
		return
	}
	t := *next
	eff.TLS = &t
	keep("tls.listen", old.Listen != next.Listen, func() { t.Listen = old.Listen })
	keep("tls.disable_http3", old.DisableHTTP3 != next.DisableHTTP3, func() { t.DisableHTTP3 = old.DisableHTTP3 })
	keep("tls.acme", old.ACME != next.ACME, func() { t.ACME = old.ACME })
	keep("tls.reload_interval", old.ReloadInterval != next.ReloadInterval, func() { t.ReloadInterval = old.ReloadInterval })
	r.Applied = append(r.Applied, "tls: certificate files re-read")
}
