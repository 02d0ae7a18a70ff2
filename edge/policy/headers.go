package policy

import (
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// RemoveHopByHop deletes hop-by-hop fields in place: Connection and the
// fields it names, Keep-Alive, Proxy-Connection, TE, Trailer,
// Transfer-Encoding, Upgrade, Proxy-Authenticate and Proxy-Authorization.
func RemoveHopByHop(h http.Header) {
	RemoveConnectionOptions(h, h["Connection"])
	// The hop-by-hop fields (RFC 9110 §7.6.1), plus the deprecated
	// Proxy-Connection and Keep-Alive, in canonical form.
	for _, f := range [...]string{
		"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
	} {
		delete(h, f)
	}
}

// RemoveConnectionOptions deletes from h the fields that the Connection
// field lines connection name (its connection options, which are the
// hop's own: RFC 9110 §7.6.1), as h.Del would delete each name.
func RemoveConnectionOptions(h http.Header, connection []string) {
	for _, line := range connection {
		for rest := line; rest != ""; {
			var item string
			item, rest = cutComma(rest)
			if item = trimOWS(item); item != "" {
				delField(h, item)
			}
		}
	}
}

// delField is h.Del(name) without the allocation Del makes to
// canonicalize a name that is not (a browser's Connection: keep-alive is
// one on every request): a name with a byte that is not a token's is
// deleted as it is, as textproto.CanonicalMIMEHeaderKey leaves it.
func delField(h http.Header, name string) {
	var buf [64]byte
	if len(name) > len(buf) {
		h.Del(name)
		return
	}
	b := buf[:len(name)]
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !IsTchar(c) {
			delete(h, name)
			return
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if _, ok := h[string(b)]; ok { // (a lookup by string(b) does not allocate)
		delete(h, string(b))
	}
}

// UpdateHeaders applies a 304's (or a HEAD response's) header fields to a
// stored response's header per RFC 9111 §3.2 and §4.3.4, returning a new
// header; neither argument is modified.
//
// Each field present in notModified replaces all lines of that field in
// stored, except: hop-by-hop fields (and those the 304's Connection names);
// fields the 304's Cache-Control qualifies with no-cache or private;
// Content-Length; Content-Range and Content-Encoding (they describe the
// stored body as it was received, so an update would make it lie); and
// Set-Cookie (a shared cache must not hand it to other clients). All other
// stored fields are kept. Field names in the result are canonical.
func UpdateHeaders(stored, notModified http.Header) http.Header {
	out := make(http.Header, len(stored)+len(notModified))
	for k, v := range stored {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		out[ck] = append(out[ck], v...) // a fresh slice: never aliases stored
	}
	upd := make(http.Header, len(notModified))
	for k, v := range notModified {
		upd[textproto.CanonicalMIMEHeaderKey(k)] = v
	}
	RemoveHopByHop(upd)
	// Fields a 304 must not change in the stored response (RFC 9111 §3.2):
	// Content-Length, fields describing the stored body as received, and
	// Set-Cookie, which a shared cache never hands to other clients.
	for _, f := range [...]string{"Content-Length", "Content-Range", "Content-Encoding", "Set-Cookie"} {
		delete(upd, f)
	}
	cc, targeted := parseTargeted(upd["Cdn-Cache-Control"])
	if !targeted {
		cc = ParseCacheControl(upd["Cache-Control"])
	}
	for _, f := range cc.NoCacheFields {
		delete(upd, f)
	}
	for _, f := range cc.PrivateFields {
		delete(upd, f)
	}
	for k, v := range upd {
		out[k] = slices.Clone(v)
	}
	return out
}

// Invalidations returns the URLs a cache must invalidate after an unsafe
// request (RFC 9111 §4.4): the effective request URI, plus Location and
// Content-Location when they resolve to the same origin (scheme and
// host[:port], default ports normalised). Only non-error responses (2xx,
// 3xx) to unsafe methods (anything but GET, HEAD, OPTIONS and TRACE) cause
// invalidation; otherwise it returns nil. The URLs are new values,
// de-duplicated, without fragment or user info, with scheme and host in
// lower case and a default port (80 for http, 443 for https) removed.
func Invalidations(method string, reqURL *url.URL, status int, respHeader http.Header) []*url.URL {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return nil
	}
	if reqURL == nil || status < 200 || status > 399 {
		return nil
	}
	base := *reqURL
	normalise(&base)
	out := []*url.URL{&base}
	for _, f := range [...]string{"Location", "Content-Location"} {
		v := trimOWS(respHeader.Get(f))
		if v == "" {
			continue
		}
		ref, err := url.Parse(v)
		if err != nil {
			continue
		}
		u := reqURL.ResolveReference(ref)
		if !sameOrigin(u, reqURL) {
			continue
		}
		normalise(u)
		dup := false
		for _, o := range out {
			if o.String() == u.String() {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, u)
		}
	}
	return out
}

// normalise drops u's fragment and user info, lower-cases scheme and host
// and removes a default port.
func normalise(u *url.URL) {
	u.Fragment, u.RawFragment = "", ""
	u.User = nil
	u.Scheme = strings.ToLower(u.Scheme)
	host, p := strings.ToLower(u.Hostname()), u.Port()
	if p != "" && p != defaultPort(u.Scheme) {
		host = net.JoinHostPort(host, p)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	u.Host = host
}

// sameOrigin compares scheme, host and port, case-insensitively, treating an
// omitted default port as given.
func sameOrigin(a, b *url.URL) bool {
	if !strings.EqualFold(a.Scheme, b.Scheme) {
		return false
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// port is u's port, or the scheme's default.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

// defaultPort is the default port of http and https, "" for others.
func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
