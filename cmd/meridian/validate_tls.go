package main

import (
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
	"github.com/meridiancdn/meridian/edge/node"
)

// checkEdgeTLS checks every certificate the edge serves (tls.cert_file,
// tls.certificates, each site's tls): its files exist, parse and match,
// and a site's certificate covers one of its hosts; and the cluster's
// (cluster.tls): the member certificate is signed by the cluster CA. The
// error names the field at fault, and the site.
func checkEdgeTLS(cfg node.Config) error {
	if err := certs.Check(node.CertsConfig(cfg.Config)); err != nil {
		return err
	}
	if cfg.Cluster != nil {
		return cfg.Cluster.TLS.Check(time.Now())
	}
	return nil
}
