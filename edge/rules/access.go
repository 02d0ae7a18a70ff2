package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// GeoAccessConfig allows or denies clients by the country and continent
// that a GeoIP2 or GeoLite2 (City or Country) database places them in,
// for the whole site or per path. The client is the connection's peer,
// or the address that trusted proxies (server.trusted_proxies) report in
// X-Forwarded-For: never an address an untrusted client claims.
type GeoAccessConfig struct {
	// Database is the .mmdb file (GeoLite2-Country.mmdb or a City
	// database). Required with rules; read when the edge starts and at
	// each reload (SIGHUP), so an updated file is picked up then.
	Database string `yaml:"database"`
	// Rules are tried in order; the first whose path condition holds
	// decides, and a request that no rule matches is allowed. Default
	// none.
	Rules []GeoRule `yaml:"rules"`
	// DenyBody is the body of the 403 a denied client gets. Default
	// "This content is not available in your location.\n".
	DenyBody string `yaml:"deny_body"`
	// DenyContentType is that body's Content-Type. Default
	// "text/plain; charset=utf-8".
	DenyContentType string `yaml:"deny_content_type"`
}

// GeoRule allows or denies the clients of some countries and continents
// on the paths it matches. A client in a denied country or continent is
// denied; else, when the rule has allow lists, a client is allowed only
// if its country or continent is in one (a client the database does not
// place is then denied); else it is allowed.
type GeoRule struct {
	PathMatch `yaml:",inline"`
	// AllowCountries and DenyCountries are ISO 3166-1 alpha-2 codes
	// ("DE", "US").
	AllowCountries []string `yaml:"allow_countries"`
	DenyCountries  []string `yaml:"deny_countries"`
	// AllowContinents and DenyContinents are GeoIP continent codes: AF,
	// AN, AS, EU, NA, OC, SA.
	AllowContinents []string `yaml:"allow_continents"`
	DenyContinents  []string `yaml:"deny_continents"`
}

// Locator places an address in a country and a continent (codes in upper
// case, "" when unknown).
type Locator interface {
	Locate(addr netip.Addr) (country, continent string)
}

var continents = []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"}

// Enabled reports whether the site has geo rules.
func (c GeoAccessConfig) Enabled() bool { return len(c.Rules) > 0 }

// WithDefaults fills in the deny body and type, and upper-cases codes.
func (c GeoAccessConfig) WithDefaults() GeoAccessConfig {
	if c.DenyBody == "" {
		c.DenyBody = "This content is not available in your location.\n"
	}
	if c.DenyContentType == "" {
		c.DenyContentType = "text/plain; charset=utf-8"
	}
	rs := make([]GeoRule, len(c.Rules))
	for i, r := range c.Rules {
		r.AllowCountries, r.DenyCountries = upper(r.AllowCountries), upper(r.DenyCountries)
		r.AllowContinents, r.DenyContinents = upper(r.AllowContinents), upper(r.DenyContinents)
		rs[i] = r
	}
	c.Rules = rs
	return c
}

func upper(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToUpper(s)
	}
	return out
}

// validate names the first bad field under f ("geo_access").
func (c GeoAccessConfig) validate(f string) error {
	if len(c.Rules) > 0 && c.Database == "" {
		return fmt.Errorf("%s.database: required with rules", f)
	}
	if !validFieldValue(c.DenyContentType) {
		return fmt.Errorf("%s.deny_content_type: %q has a control character", f, c.DenyContentType)
	}
	for i, r := range c.Rules {
		rf := fmt.Sprintf("%s.rules[%d]", f, i)
		if err := r.PathMatch.validate(rf + "."); err != nil {
			return err
		}
		if len(r.AllowCountries)+len(r.DenyCountries)+len(r.AllowContinents)+len(r.DenyContinents) == 0 {
			return fmt.Errorf("%s: allows and denies nothing", rf)
		}
		for _, l := range []struct {
			name  string
			codes []string
		}{{"allow_countries", r.AllowCountries}, {"deny_countries", r.DenyCountries}} {
			for j, code := range l.codes {
				if len(code) != 2 || code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z' {
					return fmt.Errorf("%s.%s[%d]: %q is not an ISO 3166-1 alpha-2 country code", rf, l.name, j, code)
				}
			}
		}
		for _, l := range []struct {
			name  string
			codes []string
		}{{"allow_continents", r.AllowContinents}, {"deny_continents", r.DenyContinents}} {
			for j, code := range l.codes {
				if !slices.Contains(continents, code) {
					return fmt.Errorf("%s.%s[%d]: %q is not a continent code (%s)", rf, l.name, j, code, strings.Join(continents, ", "))
				}
			}
		}
	}
	return nil
}

// allows reports whether the rule lets a client of country and
// continent ("" when unknown) in.
func (r *GeoRule) allows(country, continent string) bool {
	if country != "" && slices.Contains(r.DenyCountries, country) ||
		continent != "" && slices.Contains(r.DenyContinents, continent) {
		return false
	}
	if len(r.AllowCountries)+len(r.AllowContinents) == 0 {
		return true
	}
	return country != "" && slices.Contains(r.AllowCountries, country) ||
		continent != "" && slices.Contains(r.AllowContinents, continent)
}
