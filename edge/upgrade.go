package edge

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/meridiancdn/meridian/edge/policy"
)

// Protocol upgrade pass-through (site upgrade, RFC 9110 §7.8): an
// HTTP/1.1 GET that asks to upgrade to a protocol the site allows goes to
// the origin with its Upgrade field; when the origin switches (101), the
// edge hijacks the client's connection and splices it with the origin's
// until either side closes it, both are idle for the site's
// upgrade.idle_timeout, or the handler closes. Nothing of it is cached.
// server.max_upgraded caps such connections on the edge (503 past it).

// upgradeProtocol returns the protocol r asks to upgrade to when it is an
// upgrade st passes through: HTTP/1.1, GET without a body, Connection:
// upgrade, and one Upgrade protocol the site allows.
func (st *site) upgradeProtocol(r *http.Request) (string, bool) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Method != http.MethodGet || len(st.cfg.Upgrade.Protocols) == 0 {
		return "", false
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return "", false
	}
	ups := r.Header["Upgrade"]
	if len(ups) != 1 || !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return "", false
	}
	proto := strings.TrimSpace(ups[0])
	if proto == "" || strings.Contains(proto, ",") {
		return "", false // one protocol only: the one the origin may switch to
	}
	name, _, _ := strings.Cut(proto, "/")
	for _, p := range st.cfg.Upgrade.Protocols {
		if strings.EqualFold(p, name) {
			return proto, true
		}
	}
	return "", false
}

// serveUpgrade forwards an upgrade request and, when the origin switches
// protocols, splices the two connections. Any other answer of the origin
// is relayed as a pass.
func (h *Handler) serveUpgrade(w http.ResponseWriter, r *http.Request, st *site, proto string) {
	cs := cacheStatus{fwd: "request", detail: "upgrade"}
	if h.refuseLoop(w, r) {
		return
	}
	if max := int64(h.cfg.Server.MaxUpgraded); max >= 0 && h.upgraded.Add(1) > max {
		h.upgraded.Add(-1)
		h.metrics.upgradeRejected.Inc()
		w.Header().Set("Retry-After", "1")
		cs.detail = "upgrade-cap"
		h.writeError(w, r, http.StatusServiceUnavailable, "too many upgraded connections on this edge", cs)
		return
	}
	defer h.upgraded.Add(-1)
	release, ok := h.admitUpstream(w, r, st, cs)
	if !ok {
		return
	}
	defer release()

	host, _ := normalizeHost(r.Host) // routed: well-formed
	scheme := st.trusted.scheme(r)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.ctx, cancel)() // the handler closes: so does the tunnel
	out := r.Clone(ctx)
	out.URL = st.originURL(r)
	out.RequestURI = ""
	out.Body = nil
	out.Host = host
	if st.cfg.OriginHost != "" {
		out.Host = st.cfg.OriginHost
	}
	policy.RemoveHopByHop(out.Header)
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = []string{proto}
	h.setForwarded(out.Header, r, host, scheme)

	resp, err := st.upstream.RoundTrip(out)
	if err != nil {
		status, detail := upstreamFailure(err)
		cs.detail = detail
		h.log.Warn("upgrade failed", "host", r.Host, "uri", r.RequestURI, "err", err)
		h.writeError(w, r, status, "upstream failed", cs)
		return
	}
	cs.fwdStatus = resp.StatusCode
	if resp.StatusCode != http.StatusSwitchingProtocols {
		h.servePass(w, r, st, resp, cs) // the origin declined: its answer, not stored
		return
	}
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Upgrade")), proto) {
		// RFC 9110 §7.8: a server switches only to a protocol the
		// client asked for.
		resp.Body.Close()
		cs.detail = "upgrade-mismatch"
		h.log.Warn("upgrade: origin switched to another protocol", "host", r.Host, "asked", proto, "got", resp.Header.Get("Upgrade"))
		h.writeError(w, r, http.StatusBadGateway, "origin switched to a protocol the client did not ask for", cs)
		return
	}
	defer backend.Close()
	// Through wrappers that Unwrap to the server's writer (the listeners'
	// own), as http.ResponseController reaches them.
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		h.log.Warn("upgrade: hijack", "err", err)
		h.writeError(w, r, http.StatusNotImplemented, "this connection cannot be upgraded", cs)
		return
	}
	defer client.Close()
	client.SetDeadline(time.Time{}) // the server's; idleness is bounded below

	hdr := resp.Header.Clone()
	policy.RemoveHopByHop(hdr)
	hdr["Connection"] = []string{"Upgrade"}
	hdr["Upgrade"] = []string{proto}
	hdr["Via"] = append(hdr["Via"], h.via)
	io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	hdr.Write(brw)
	io.WriteString(brw, "\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	h.delivered(st.counters, nil, classPass, 1, 0, nil)
	h.metrics.upgraded.Inc()
	splice(ctx, client, brw.Reader, backend, st.cfg.Upgrade.IdleTimeout)
}

// splice copies between the client's connection (whose first bytes may
// wait in buffered) and the origin's until one side ends, ctx ends, or
// neither sends anything for idle; then it closes both and returns once
// both copies have stopped.
func splice(ctx context.Context, client net.Conn, buffered *bufio.Reader, backend io.ReadWriteCloser, idle time.Duration) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			backend.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	var last atomic.Int64 // when a byte last went either way (Unix ns)
	last.Store(time.Now().UnixNano())
	if idle > 0 {
		var mu sync.Mutex // t is set before its func reads it
		var t *time.Timer
		mu.Lock()
		t = time.AfterFunc(idle, func() {
			quiet := time.Since(time.Unix(0, last.Load()))
			if quiet >= idle {
				closeBoth()
				return
			}
			mu.Lock()
			t.Reset(idle - quiet)
			mu.Unlock()
		})
		mu.Unlock()
		defer func() {
			mu.Lock()
			t.Stop()
			mu.Unlock()
		}()
	}
	var src io.Reader = client
	if buffered != nil && buffered.Buffered() > 0 {
		src = io.MultiReader(io.LimitReader(buffered, int64(buffered.Buffered())), client)
	}
	done := make(chan struct{}, 2)
	cp := func(dst io.Writer, src io.Reader) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go cp(backend, src)
	go cp(client, backend)
	<-done
	closeBoth()
	<-done
}
