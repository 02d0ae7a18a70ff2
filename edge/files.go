package edge

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/meridiancdn/meridian/edge/geoip"
)

// CheckFiles reads the files the config names that the edge reads at
// start, as it reads them, without starting anything: each site's
// purge_token_file (a token of at least 16 bytes) and geo_access
// database (a GeoIP2 or GeoLite2 database with countries), the access
// log file's folder, and the disk tier's path. (The TLS certificates
// are checked by edge/certs.Check.) The error names the field. It is
// what `meridian validate` adds to Validate.
func (c Config) CheckFiles() error {
	dbs := map[string]error{}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		if _, err := s.readPurgeToken(); err != nil {
			return fmt.Errorf("%s.%w", f, err)
		}
		if ga := s.Rules.GeoAccess; ga.Database != "" {
			err, seen := dbs[ga.Database]
			if !seen {
				_, err = geoip.Open(ga.Database)
				dbs[ga.Database] = err
			}
			if err != nil {
				return fmt.Errorf("%s.geo_access.database: %w", f, err)
			}
		}
	}
	if d := c.AccessLog.Destination; filepath.IsAbs(d) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return fmt.Errorf("access_log.destination: %s is a folder (want a file)", d)
		}
		if fi, err := os.Stat(filepath.Dir(d)); err != nil {
			return fmt.Errorf("access_log.destination: its folder: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("access_log.destination: %s is not a folder", filepath.Dir(d))
		}
	}
	if p := c.Cache.Disk.Path; p != "" {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return fmt.Errorf("cache.disk.path: %s is not a folder", p)
		}
	}
	return nil
}
