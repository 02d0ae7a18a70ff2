package rules

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignedURLConfig makes a site's URLs (or those under some prefixes)
// valid only with a token and an expiry in the query, as nginx's
// secure_link, Traffic Server's url_sig and CloudFront's signed URLs: the
// token is an HMAC-SHA256, under one of the site's keys, of the URL's
// path and query (as sent, less the two parameters) and the expiry.
// `meridian sign-url` makes such URLs (see [Sign]). A request without a
// valid, unexpired token is answered 403. The two parameters are then
// removed: the cache key and the origin never see them, so every signed
// URL of one object shares its entry.
type SignedURLConfig struct {
	// Keys are the HMAC secrets, at least 16 bytes each: the first signs,
	// any verifies. To rotate, list the new key first and the old one
	// second until the URLs signed with it have expired. Default none:
	// no URL needs a signature.
	Keys []string `yaml:"keys"`
	// Prefixes are the paths that need a signature ("/downloads/").
	// Default: every path of the site.
	Prefixes []string `yaml:"prefixes"`
	// ExpiresParam is the query parameter of the expiry, in Unix
	// seconds. Default "expires".
	ExpiresParam string `yaml:"expires_param"`
	// TokenParam is the query parameter of the token (unpadded base64url).
	// Default "token".
	TokenParam string `yaml:"token_param"`
}

// minKeyBytes is the shortest key accepted: 128 bits.
const minKeyBytes = 16

// Enabled reports whether the site's URLs need signatures.
func (c SignedURLConfig) Enabled() bool { return len(c.Keys) > 0 }

// WithDefaults fills in the parameter names.
func (c SignedURLConfig) WithDefaults() SignedURLConfig {
	if c.ExpiresParam == "" {
		c.ExpiresParam = "expires"
	}
	if c.TokenParam == "" {
		c.TokenParam = "token"
	}
	if len(c.Prefixes) == 0 && c.Enabled() {
		c.Prefixes = []string{"/"}
	}
	return c
}

// validate names the first bad field under f ("signed_urls").
func (c SignedURLConfig) validate(f string) error {
	if !c.Enabled() {
		if len(c.Prefixes) > 0 {
			return fmt.Errorf("%s.keys: required with %s.prefixes", f, f)
		}
		return nil
	}
	for i, k := range c.Keys {
		if len(k) < minKeyBytes {
			return fmt.Errorf("%s.keys[%d]: %d bytes; a key has at least %d (e.g. `openssl rand -hex 32`)", f, i, len(k), minKeyBytes)
		}
	}
	for i, p := range c.Prefixes {
		if err := checkPattern(p); err != nil || strings.ContainsAny(p, "*?") {
			return fmt.Errorf("%s.prefixes[%d]: %q is not a path prefix", f, i, p)
		}
	}
	for _, p := range []struct{ name, v string }{{"expires_param", c.ExpiresParam}, {"token_param", c.TokenParam}} {
		if p.v == "" || strings.ContainsAny(p.v, "&=;#?%+ ") || !isToken(p.v) {
			return fmt.Errorf("%s.%s: %q is not a plain parameter name", f, p.name, p.v)
		}
	}
	if c.ExpiresParam == c.TokenParam {
		return fmt.Errorf("%s.token_param: %q is also expires_param", f, c.TokenParam)
	}
	return nil
}

// The reasons a signed URL is refused.
var (
	// ErrNoSignature: the token or the expiry is missing, or given twice.
	ErrNoSignature = errors.New("signed url: token or expiry missing")
	// ErrBadSignature: the token does not verify under any key.
	ErrBadSignature = errors.New("signed url: token does not verify")
	// ErrExpired: the token verifies but the expiry has passed.
	ErrExpired = errors.New("signed url: expired")
)

// mac is the token of a URL's path and query (less the signature's
// parameters) and its expiry, under key.
func mac(key []byte, pathQuery, expires string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(pathQuery))
	m.Write([]byte{'\n'})
	m.Write([]byte(expires))
	return m.Sum(nil)
}

// Sign returns rawURL (an absolute URL or a path with its query, as
// clients will send it) with the expiry and a token under key appended to
// its query, valid until expires (whole seconds). c gives the parameter
// names (defaults filled in). A fragment is dropped.
func Sign(c SignedURLConfig, key []byte, rawURL string, expires time.Time) string {
	c = c.WithDefaults()
	rawURL, _, _ = strings.Cut(rawURL, "#")
	origin, pathQuery := "", rawURL
	if i := strings.Index(rawURL, "://"); i >= 0 {
		rest := rawURL[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 {
			j = len(rest)
		}
		origin, pathQuery = rawURL[:i+3+j], rest[j:]
		if pathQuery == "" || pathQuery[0] == '?' {
			pathQuery = "/" + pathQuery
		}
	}
	exp := strconv.FormatInt(expires.Unix(), 10)
	// What the verifier rebuilds: the query less the two parameters.
	path, query, _ := strings.Cut(pathQuery, "?")
	rest, _, _ := splitSignature(query, c)
	signed := path
	if rest != "" {
		signed += "?" + rest
	}
	tok := base64.RawURLEncoding.EncodeToString(mac(key, signed, exp))
	return origin + signed + sep(rest) + c.ExpiresParam + "=" + exp + "&" + c.TokenParam + "=" + tok
}

func sep(query string) string {
	if query == "" {
		return "?"
	}
	return "&"
}

// splitSignature splits a raw query into the rest (in order, joined with
// '&', empty parameters dropped) and the values of the expiry and token
// parameters; n counts how often each of those appeared.
func splitSignature(query string, c SignedURLConfig) (rest string, vals [2]string, n [2]int) {
	var b strings.Builder
	for query != "" {
		var p string
		p, query, _ = strings.Cut(query, "&")
		if p == "" {
			continue
		}
		name, v, _ := strings.Cut(p, "=")
		switch name {
		case c.ExpiresParam:
			vals[0] = v
			n[0]++
			continue
		case c.TokenParam:
			vals[1] = v
			n[1]++
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p)
	}
	return b.String(), vals, n
}

// signedURLs is a SignedURLConfig ready to verify.
type signedURLs struct {
	cfg  SignedURLConfig
	keys [][]byte
}

func compileSigned(c SignedURLConfig) *signedURLs {
	if !c.Enabled() {
		return nil
	}
	s := &signedURLs{cfg: c}
	for _, k := range c.Keys {
		s.keys = append(s.keys, []byte(k))
	}
	return s
}

// covers reports whether the cleaned path p needs a signature.
func (s *signedURLs) covers(p string) bool {
	for _, pre := range s.cfg.Prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// Verify checks a request target (path and query as sent) signed under
// one of the keys at now, and returns the target without the signature's
// parameters. Every key's MAC is compared in constant time.
func (s *signedURLs) verify(target string, now time.Time) (string, error) {
	path, query, _ := strings.Cut(target, "?")
	rest, vals, n := splitSignature(query, s.cfg)
	if n[0] != 1 || n[1] != 1 {
		return "", ErrNoSignature
	}
	exp, tok := vals[0], vals[1]
	stripped := path
	if rest != "" {
		stripped += "?" + rest
	}
	// The expiry is digits only (no sign, no space): the string signed
	// is the one compared.
	if exp == "" || len(exp) > 19 || strings.TrimLeft(exp, "0123456789") != "" {
		return "", ErrBadSignature
	}
	got, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(got) != sha256.Size {
		return "", ErrBadSignature
	}
	ok := 0
	for _, k := range s.keys {
		if hmac.Equal(got, mac(k, stripped, exp)) {
			ok = 1
		}
	}
	if ok == 0 {
		return "", ErrBadSignature
	}
	secs, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > secs {
		return "", ErrExpired
	}
	return stripped, nil
}

// SignURL signs rawURL as Sign does, with c's first key (the one that
// signs; see Keys). It fails when c has no keys, or when rawURL's path is
// not one that c covers (the edge would not check the token there).
func SignURL(c SignedURLConfig, rawURL string, expires time.Time) (string, error) {
	c = c.WithDefaults()
	if !c.Enabled() {
		return "", errors.New("signed url: the site has no signed_urls.keys")
	}
	pathQuery := rawURL
	if i := strings.Index(rawURL, "://"); i >= 0 {
		rest := rawURL[i+3:]
		j := strings.IndexAny(rest, "/?#")
		if j < 0 {
			j = len(rest)
		}
		pathQuery = rest[j:]
	}
	rawPath, _, _ := strings.Cut(pathQuery, "?")
	rawPath, _, _ = strings.Cut(rawPath, "#")
	if rawPath == "" {
		rawPath = "/"
	}
	if !(&signedURLs{cfg: c}).covers(CleanPath(unescapePath(rawPath))) {
		return "", fmt.Errorf("signed url: %s is outside signed_urls.prefixes %v: the edge does not check it", rawPath, c.Prefixes)
	}
	return Sign(c, []byte(c.Keys[0]), rawURL, expires), nil
}
