package edge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/certs"
)

func TestParseConfigGood(t *testing.T) {
	c, err := ParseConfig([]byte(`
sites:
  - hosts: [a.example]
    origin: http://127.0.0.1:9000
    grace: {if_error: 5m}
    limits: {rate: 20, burst: 100, max_concurrent: 16}
    pool: {max_conns: 64, max_inflight: -1, queue_timeout: 500ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "meridian" || c.Listen != "127.0.0.1:8080" || c.Cache.MaxBytes != 256<<20 {
		t.Fatalf("defaults not filled: %+v", c)
	}
	if c.Sites[0].Grace.IfError != 5*time.Minute || c.Sites[0].Timeout != 30*time.Second {
		t.Fatalf("site: %+v", c.Sites[0])
	}
	if l := c.Sites[0].Limits; l.RequestsPerSecond != 20 || l.Burst != 100 || l.MaxConcurrent != 16 || l.Name != "a.example" {
		t.Errorf("limits: %+v", l)
	}
	if p := c.Sites[0].Pool; p.MaxConns != 64 || p.MaxInflight != -1 || p.QueueTimeout != 500*time.Millisecond {
		t.Errorf("pool caps: %+v", p)
	}
	if c.Sites[0].CacheKey.Separators != "&" || c.Sites[0].DeceptionArmor || c.Server.TrustedProxies != nil {
		t.Fatalf("security defaults: %+v %+v", c.Sites[0], c.Server)
	}
	c, err = ParseConfig([]byte(`
name: edge-eu-1
server: {trusted_proxies: [10.0.0.0/8, 192.0.2.1, '2001:db8::/32']}
sites:
  - hosts: [a.example, B.Example.]
    origin: http://127.0.0.1:9000
    deception_armor: true
    cache_key: {ignore_params: [utm_*], separators: "&;"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Server.TrustedProxies) != 3 || !c.Sites[0].DeceptionArmor || c.Sites[0].CacheKey.Separators != "&;" {
		t.Fatalf("security fields: %+v %+v", c.Server, c.Sites[0])
	}
}

func TestParseConfigBad(t *testing.T) {
	site := "sites: [{hosts: [a.example], origin: 'http://o:1'}]\n"
	cases := []struct{ yaml, want string }{
		{"", "sites: empty"},
		{"sites: []", "sites: empty"},
		{"sitez: []", "line 1: unknown top-level field sitez; did you mean sites?"},
		{"sites: [{origin: 'http://o'}]", "sites[0].hosts: empty"},
		{"sites: [{hosts: [a], origin: ''}]", "sites[0].origin: required"},
		{"sites: [{hosts: [a], origin: 'ftp://o'}]", "sites[0].origin: scheme must be http or https"},
		{"sites: [{hosts: [a], origin: 'http://o/path'}]", "sites[0].origin: must not have a path"},
		{"sites: [{hosts: ['a:80'], origin: 'http://o'}]", "sites[0].hosts[0]: invalid host"},
		{"sites: [{hosts: [a], origin: 'http://o'}, {hosts: [A], origin: 'http://p'}]", "sites[1].hosts[0]: host \"A\" already belongs to sites[0]"},
		{"sites: [{hosts: [a], origin: 'http://o', timeout: -1s}]", "sites[0].timeout: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', timeout: forever}]", `line 1: sites[0].timeout: "forever" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)`},
		{"sites: [{hosts: [a], origin: 'http://o', grace: {if_error: -5s}}]", "sites[0].grace.if_error: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', read_timeout: -1s}]", "sites[0].read_timeout: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', accept_encoding: gzip}]", `sites[0].accept_encoding: "gzip" (want normalize or as_sent)`},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {rate: -1}}]", "sites[0].limits: rate: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {burst: 10}}]", "sites[0].limits: burst: set without a rate"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {max_concurrent: -1}}]", "sites[0].limits: max_concurrent: negative"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {rate: .inf}}]", "sites[0].limits: rate: +Inf is not a rate"},
		{"sites: [{hosts: [a], origin: 'http://o', limits: {name: x}}]", "sites[0].limits.name: unknown field"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {max_conns: -2}}]", "sites[0].pool: max_conns: -2"},
		{"sites: [{hosts: [a], origin: 'http://o', pool: {queue_timeout: -1s}}]", "sites[0].pool: queue_timeout: negative"},
		{site + "listen: nohostport", "listen: address nohostport: missing port"},
		{site + "cache: {max_bytes: -1}", "cache.max_bytes: negative"},
		{site + "cache: {max_bytes: 100, max_object_bytes: 200}", "cache.max_object_bytes: 200 exceeds"},
		{site + "tls: {listen: ':443'}", "tls.cert_file: required"},
		{site + "server: {max_header_bytes: -3}", "server.max_header_bytes: negative"},
		{site + "server: {trusted_proxies: [10.0.0.0/8, 'fe80::1%eth0']}", "server.trusted_proxies[1]: invalid"},
		{site + "name: 'edge one'", `name: "edge one" is not a token`},
		{"sites: [{hosts: ['a%2e'], origin: 'http://o'}]", "sites[0].hosts[0]: invalid host"},
		{"sites: [{hosts: [a], origin: 'http://o', cache_key: {separators: ';'}}]", `sites[0].cache_key.separators: ";"`},
		{"[1, 2", "config:"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("sites: [{hosts: [a.example], origin: 'http://127.0.0.1:1'}]"))
	f.Add([]byte("sites: [{hosts: [a], origin: 'http://o', grace: {if_error: 5m}}]\ncache: {max_bytes: 10}"))
	f.Add([]byte("name: x\nlisten: ':0'\ntls: {listen: ':1', cert_file: c, key_file: k}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if c.Name != "" || c.Sites != nil {
				t.Fatal("a refused config must come back empty")
			}
			return
		}
		// Whatever is accepted builds a handler.
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		h, err := New(c, Options{})
		if err != nil {
			t.Fatalf("accepted config fails New: %v", err)
		}
		h.Close()
	})
}

// The TLS section and the sites' tls: what is refused names the field,
// and the defaults are filled in.
func TestParseConfigTLS(t *testing.T) {
	const site = "sites: [{hosts: [a.example], origin: 'http://o'}, {hosts: [b.example, c.example], origin: 'http://o', tls: %s}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{"tls: {listen: ':443'}\n" + fmt.Sprintf(site, "{}"), "tls.cert_file: required (or tls.certificates, or a site's tls)"},
		{"tls: {listen: ':443', cert_file: c}\n" + fmt.Sprintf(site, "{}"), "tls.key_file: required with tls.cert_file"},
		{"tls: {listen: ':443', key_file: k}\n" + fmt.Sprintf(site, "{}"), "tls.cert_file: required with tls.key_file"},
		{"tls: {listen: ':443', certificates: [{cert_file: c, key_file: k}, {cert_file: c}]}\n" + fmt.Sprintf(site, "{}"), "tls.certificates[1].key_file: required"},
		{"tls: {listen: ':443', certificates: [{key_file: k}]}\n" + fmt.Sprintf(site, "{}"), "tls.certificates[0].cert_file: required"},
		{fmt.Sprintf(site, "{cert_file: c, key_file: k}"), "sites[1].tls: needs the edge's tls section"},
		{"tls: {listen: ':443'}\n" + fmt.Sprintf(site, "{cert_file: c}"), "sites[1].tls.key_file: required with cert_file"},
		{"tls: {listen: ':443'}\n" + fmt.Sprintf(site, "{key_file: k}"), "sites[1].tls.cert_file: required with key_file"},
		{"tls: {listen: ':443'}\n" + fmt.Sprintf(site, "{acme: true, cert_file: c, key_file: k}"), "sites[1].tls.acme: exclusive with cert_file"},
		{"tls: {listen: ':443', acme: {directory: 'http://ca/dir'}}\n" + fmt.Sprintf(site, "{acme: true}"), "tls.acme.directory: \"http://ca/dir\" is not an https URL"},
		{"tls: {listen: ':443', acme: {disable_http_01: true, disable_tls_alpn_01: true}}\n" + fmt.Sprintf(site, "{acme: true}"), "tls.acme.disable_tls_alpn_01: with disable_http_01 no challenge is left"},
		{"tls: {listen: ':443', acme: {renew_check_interval: -1s}}\n" + fmt.Sprintf(site, "{acme: true}"), "tls.acme.renew_check_interval: negative"},
		{"tls: {listen: ':443'}\nsites: [{hosts: [localhost], origin: 'http://o', tls: {acme: true}}]", "sites[0].hosts[0]: \"localhost\": ACME certifies public DNS names only"},
		{"tls: {listen: ':443'}\nsites: [{hosts: [a.example, 192.0.2.1], origin: 'http://o', tls: {acme: true}}]", "sites[0].hosts[1]: \"192.0.2.1\": ACME certifies"},
		{"tls: {listen: ':443', acme: {directory: x}}\n" + fmt.Sprintf(site, "{cert_file: c, key_file: k}") + "bogus: 1\n", "line 3: unknown top-level field bogus"},
	} {
		if _, err := ParseConfig([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  got %v\n  want %q", tc.yaml, err, tc.want)
		}
	}

	c, err := ParseConfig([]byte("tls: {listen: ':443', certificates: [{cert_file: c, key_file: k}]}\n" + fmt.Sprintf(site, "{acme: true}")))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.ReloadInterval != 30*time.Second || c.TLS.ACME.Directory != certs.LetsEncrypt || c.TLS.ACME.Storage != "/var/lib/meridian/acme" ||
		c.TLS.ACME.RenewCheckInterval != 10*time.Minute || !c.Sites[1].TLS.ACME {
		t.Fatalf("defaults: %+v, site %+v", c.TLS, c.Sites[1].TLS)
	}
	// The defaults fill a copy: the caller's TLS section is not written.
	orig := &TLSConfig{Listen: ":443", CertFile: "c", KeyFile: "k"}
	Config{TLS: orig}.WithDefaults()
	if orig.ReloadInterval != 0 {
		t.Fatal("WithDefaults wrote the caller's TLSConfig")
	}
}
