package node

import (
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
)

// CheckFiles reads every file the config names, as Start reads them, and
// binds nothing: the certificates the edge serves (tls, each site's tls,
// the ACME ca_file; see certs.Check), the edge's own files (purge token
// files, geo_access databases, the access log's folder, the disk tier;
// see edge.Config.CheckFiles), the admin token files, and the cluster's
// secret_file and tls files (checked at now: signed by the cluster CA,
// not expired). The origin pools' tls files are read by Validate. The
// error names the field at fault. `meridian validate` runs it.
func (c Config) CheckFiles(now time.Time) error {
	c = c.WithDefaults()
	if err := certs.Check(CertsConfig(c.Config)); err != nil {
		return err
	}
	if err := c.Config.CheckFiles(); err != nil {
		return err
	}
	if _, _, err := c.Admin.readTokens(); err != nil {
		return err
	}
	if c.Cluster != nil {
		if _, err := c.Cluster.ReadSecret(); err != nil {
			return err
		}
		if err := c.Cluster.TLS.Check(now); err != nil {
			return err
		}
	}
	return nil
}
