package main

import (
	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/node"
)

// checkEdgeTLS checks every certificate the edge serves (tls.cert_file,
// tls.certificates, each site's tls): its files exist, parse and match,
// and a site's certificate covers one of its hosts. The error names the
// field at fault, and the site.
func checkEdgeTLS(cfg node.Config) error {
	return certs.Check(node.CertsConfig(cfg.Config))
}
