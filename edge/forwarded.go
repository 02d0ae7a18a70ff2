package edge

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"unsafe"
)

// What the edge believes of a request, and what it tells upstream about it.
//
// The Host is normalised (normalizeHost) and the scheme is the one the edge
// saw (TLS or not), or the one a trusted proxy reports in
// X-Forwarded-Proto. Both are part of the cache key, and both are exactly
// what the origin is told (Host, X-Forwarded-Host, X-Forwarded-Proto,
// Forwarded): the origin never sees a host or scheme the key did not
// account for. Client-supplied X-Forwarded-*, Forwarded and X-Real-IP are
// believed, and kept, only from a trusted proxy (server.trusted_proxies) or
// a cluster peer (a signed peer request); from anyone else they are
// replaced by what the edge saw.

// proxyList is the parsed server.trusted_proxies: networks whose
// X-Forwarded-For and X-Forwarded-Proto are believed.
type proxyList []netip.Prefix

// parseProxies parses CIDRs or single addresses.
func parseProxies(list []string) (proxyList, error) {
	var out proxyList
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("[%d]: invalid CIDR or address %q", i, s)
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// contains reports whether a is in one of the networks.
func (l proxyList) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerOf is the address of the connection's peer ("" RemoteAddr, or one
// that does not parse, gives the zero Addr).
func peerOf(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// trusts reports whether r's forwarding fields are believed: it comes from
// a trusted proxy, or from a cluster peer (the peer endpoint verified its
// signature, or it is a replica fill the node made itself).
func (l proxyList) trusts(r *http.Request) bool {
	if len(l) > 0 && l.contains(peerOf(r.RemoteAddr)) {
		return true
	}
	ctx := r.Context()
	return isFromPeer(ctx) || isReplica(ctx)
}

// scheme is the scheme of r as the edge keys and forwards it: "https" when
// the edge received it over TLS, else "http", unless the request comes
// from a trusted proxy (see trusts) whose last X-Forwarded-Proto says
// "http" or "https".
func (l proxyList) scheme(r *http.Request) string {
	if xfp := r.Header["X-Forwarded-Proto"]; len(xfp) > 0 && l.trusts(r) {
		if s := forwardedProto(xfp[len(xfp)-1]); s != "" {
			return s
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// forwardedProto reads the scheme a proxy reports in one X-Forwarded-Proto
// line: its last (right-most) element, "http" or "https" in any case;
// "" for anything else. The fast front reads the same way (the last line
// of the field, as net/http's Header keeps them).
func forwardedProto[S ~string | ~[]byte](v S) string {
	end := len(v)
	for end > 0 && (v[end-1] == ' ' || v[end-1] == '\t') {
		end--
	}
	start := end
	for start > 0 && v[start-1] != ',' {
		start--
	}
	for start < end && (v[start] == ' ' || v[start] == '\t') {
		start++
	}
	switch {
	case asciiFold(v[start:end], "https"):
		return "https"
	case asciiFold(v[start:end], "http"):
		return "http"
	}
	return ""
}

// asciiFold compares b, ASCII case-insensitively, with a lower-case s.
func asciiFold[S ~string | ~[]byte](b S, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// ClientAddr returns the address of the client that sent r, for per-client
// decisions (rate limits, logs): the connection's peer, unless the peer is
// a trusted proxy (server.trusted_proxies) or a cluster peer; then
// X-Forwarded-For is walked from the right, each hop believed while the
// one who appended it is trusted, and the first hop that is not a trusted
// proxy is the client. A hop that does not parse stops the walk at the
// last address believed. The zero Addr means RemoteAddr does not parse.
func (h *Handler) ClientAddr(r *http.Request) netip.Addr {
	client := peerOf(r.RemoteAddr)
	if !h.trusted.trusts(r) {
		return client
	}
	return h.trusted.clientOf(client, r.Header["X-Forwarded-For"])
}

// clientOf walks the X-Forwarded-For lines xff that a trusted peer sent
// (see Handler.ClientAddr) and returns the client they name; client is
// the peer's own address.
func (l proxyList) clientOf(client netip.Addr, xff []string) netip.Addr {
	for i := len(xff) - 1; i >= 0; i-- {
		hops := xff[i]
		for hops != "" {
			hop := hops
			if k := strings.LastIndexByte(hops, ','); k >= 0 {
				hop, hops = hops[k+1:], hops[:k]
			} else {
				hops = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, ok := parseHop(hop)
			if !ok {
				return client
			}
			client = a
			if !l.contains(a) {
				return a
			}
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// setForwarded writes into out, the header of the request sent upstream
// for in, what the edge tells upstream about in: X-Forwarded-For,
// X-Forwarded-Proto, X-Forwarded-Host, Forwarded (RFC 7239), Via (RFC 9110
// §7.6.3) and CDN-Loop (RFC 8586). host and scheme are the ones keyed.
//
// From a trusted proxy or a cluster peer, the chain it sent is kept and
// this hop appended (X-Forwarded-For, Forwarded); from anyone else every
// X-Forwarded-*, Forwarded and X-Real-IP field is dropped first, so that
// the origin sees only what the edge saw. X-Forwarded-Proto and
// X-Forwarded-Host are always the keyed scheme and host, one value each.
// The same rule holds for fills and pass-through requests, on every front.
func (h *Handler) setForwarded(out http.Header, in *http.Request, host, scheme string) {
	trusted := h.trusted.trusts(in)
	if !trusted {
		for name := range out {
			if strings.HasPrefix(name, "X-Forwarded-") {
				delete(out, name)
			}
		}
		delete(out, "Forwarded")
		delete(out, "X-Real-Ip")
	}
	h.addForwarded(out, in, host, scheme, trusted, new(forwardedValues))
}

// addForwarded is setForwarded once out holds none of the client's
// forwarding fields that are not believed (a fill's upstreamHeader never
// copies them): it writes this hop's fields into out, their values in
// fv. trusted is h.trusted.trusts(in).
func (h *Handler) addForwarded(out http.Header, in *http.Request, host, scheme string, trusted bool, fv *forwardedValues) {
	// This hop's Forwarded element and its peer's address (X-Forwarded-For)
	// are written in one buffer: the address is a substring of the element.
	peer := peerOf(in.RemoteAddr)
	// The fields' values and, when it fits, the element's text share one
	// allocation (a miss's upstream request is built on every fill).
	elem := fv.text[:0]
	if need := len(`for="[]";host=;proto=`) + 39 + len(host) + len(scheme); need > len(fv.text) { // 39: the longest IPv6 text
		elem = make([]byte, 0, need)
	}
	peerStr := ""
	if peer.IsValid() {
		elem = append(elem, "for="...)
		if peer.Is6() {
			elem = append(elem, `"[`...)
		}
		start := len(elem)
		elem = peer.AppendTo(elem)
		end := len(elem)
		if peer.Is6() {
			elem = append(elem, `]"`...)
		}
		elem = append(elem, ';')
		peerStr = unsafe.String(unsafe.SliceData(elem[start:end]), end-start)
	}
	elem = append(elem, "host="...)
	elem = append(elem, host...)
	elem = append(elem, ";proto="...)
	elem = append(elem, scheme...)
	// (elem is not written again; had it grown, peerStr is in the old
	// array, which it keeps.)
	fwd := unsafe.String(unsafe.SliceData(elem), len(elem))
	xff := peerStr
	if trusted {
		if prior := strings.Join(in.Header["X-Forwarded-For"], ", "); prior != "" {
			if xff == "" {
				xff = prior
			} else {
				xff = prior + ", " + xff
			}
		}
	}
	// Each field gets a full slice of the values of its own, so an append
	// to one cannot write into another.
	vals := fv.vals[:]
	one := func(name string, i int, v string) {
		vals[i] = v
		out[name] = vals[i : i+1 : i+1]
	}
	if xff != "" {
		one("X-Forwarded-For", 0, xff)
	} else {
		delete(out, "X-Forwarded-For")
	}
	one("X-Forwarded-Proto", 1, scheme)
	one("X-Forwarded-Host", 2, host)
	if trusted {
		if prior := strings.Join(in.Header["Forwarded"], ", "); prior != "" {
			fwd = prior + ", " + fwd
		}
	}
	one("Forwarded", 3, fwd)

	if via := in.Header["Via"]; len(via) == 0 {
		one("Via", 4, h.via)
	} else {
		out["Via"] = append(via[:len(via):len(via)], h.via)
	}
	if loop := in.Header["Cdn-Loop"]; len(loop) == 0 {
		one("Cdn-Loop", 5, h.cfg.Name)
	} else {
		out["Cdn-Loop"] = append(loop[:len(loop):len(loop)], h.cfg.Name)
	}
}

// forwardedValues are the values addForwarded gives a fill's request,
// and the text of its Forwarded element (and X-Forwarded-For, a part of
// it) when it fits: a host name up to 60 bytes with the longest IPv6
// address.
type forwardedValues struct {
	vals [6]string
	text [128]byte
}

// looped reports whether r's CDN-Loop field (RFC 8586) already names this
// edge: r came back to it through its own upstream, and forwarding it
// again would go round until a timeout.
func (h *Handler) looped(r *http.Request) bool {
	for _, line := range r.Header["Cdn-Loop"] {
		for line != "" {
			var info string
			info, line, _ = strings.Cut(line, ",")
			id, _, _ := strings.Cut(info, ";")
			if strings.EqualFold(strings.TrimSpace(id), h.cfg.Name) {
				return true
			}
		}
	}
	return false
}

// refuseLoop answers 508 Loop Detected to a request that came back to
// this edge (see looped), and reports whether it did.
func (h *Handler) refuseLoop(w http.ResponseWriter, r *http.Request) bool {
	if !h.looped(r) {
		return false
	}
	h.log.Warn("request loop: CDN-Loop names this edge", "host", r.Host, "uri", r.RequestURI, "cdn_loop", r.Header["Cdn-Loop"])
	h.writeError(w, r, http.StatusLoopDetected, "request loop (CDN-Loop already names "+h.cfg.Name+"): check the site's origin", cacheStatus{fwd: "request", detail: "loop"})
	return true
}

// splitHost validates a Host field value (or :authority) and returns its
// host name without port and trailing dot, as sent (not lower-cased).
// ok is false for a malformed value (RFC 9110 §7.2, RFC 3986 §3.2.2): an
// empty name, a character outside letters, digits, '-', '.' and '_', an
// IP literal that does not parse, a port that is not a number up to
// 65535. An empty port ("host:") is allowed, as RFC 3986 allows it.
func splitHost[S ~string | ~[]byte](v S) (name S, ok bool) {
	n := len(v)
	var port S
	if n > 0 && v[0] == '[' {
		end := -1
		for i := 1; i < n; i++ {
			if v[i] == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return name, false
		}
		name = v[:end+1]
		switch {
		case end+1 == n:
		case v[end+1] == ':':
			port = v[end+2:]
		default:
			return name, false
		}
		a, err := netip.ParseAddr(string(name[1:end]))
		if err != nil || !a.Is6() || a.Zone() != "" {
			return name, false
		}
	} else {
		name = v
		for i := 0; i < n; i++ {
			c := v[i]
			if c == ':' {
				name, port = v[:i], v[i+1:]
				break
			}
			if !hostChar(c) {
				return name, false
			}
		}
		if len(name) > 0 && name[len(name)-1] == '.' {
			name = name[:len(name)-1]
		}
	}
	if len(name) == 0 || !validPort(port) {
		return name, false
	}
	return name, true
}

// hostChar reports whether c may appear in a host name.
func hostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

// validPort reports whether p is empty or a decimal port number up to
// 65535 (at most five digits).
func validPort[S ~string | ~[]byte](p S) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// normalizeHost returns the host a Host field value names, as the edge
// routes, keys and forwards it: lower case, without port or trailing dot.
// The port is dropped on purpose (as nginx's $host): the edge answers the
// same site on every port it listens on, so the origin is never told a
// port, and junk after a colon cannot reach it. ok is false for a
// malformed value (see splitHost): the request is answered 400.
func normalizeHost(v string) (string, bool) {
	name, ok := splitHost(v)
	if !ok {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name), true
		}
	}
	return name, true
}
