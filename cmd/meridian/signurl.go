package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/edge/rules"
)

// runSignURL prints a signed URL for a site with signed_urls (see
// edge/rules.SignURL).
func runSignURL(_ context.Context, args []string) error {
	return signURL(os.Stdout, args, time.Now)
}

func signURL(out io.Writer, args []string, now func() time.Time) error {
	fs := flag.NewFlagSet("sign-url", flag.ContinueOnError)
	path := fs.String("config", "", "edge config file (YAML) whose site's signed_urls.keys sign")
	ttl := fs.Duration("ttl", time.Hour, "how long the URL stays valid")
	host := fs.String("host", "", "the site's host (default: the URL's)")
	pos, err := parseFlags(fs, out, args, "sign-url --config FILE [--ttl 1h] [--host HOST] URL",
		"Print URL signed with its site's signed_urls key (the site is the URL's host, or --host).")
	if err != nil {
		return err
	}
	if len(pos) != 1 || *path == "" {
		return errors.New("sign-url: usage: meridian sign-url --config FILE [--ttl 1h] [--host HOST] URL")
	}
	raw := pos[0]
	name := *host
	if name == "" {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("sign-url: %q: give an absolute URL, or --host with a path", raw)
		}
		name = u.Hostname()
	}
	cfg, err := node.Load(*path)
	if err != nil {
		return err
	}
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			if strings.EqualFold(strings.TrimSuffix(h, "."), strings.TrimSuffix(name, ".")) {
				signed, err := rules.SignURL(s.Rules.SignedURLs, raw, now().Add(*ttl))
				if err != nil {
					return fmt.Errorf("sign-url: site %s: %w", s.Hosts[0], err)
				}
				fmt.Fprintln(out, signed)
				return nil
			}
		}
	}
	return fmt.Errorf("sign-url: no site of %s serves host %q", *path, name)
}
