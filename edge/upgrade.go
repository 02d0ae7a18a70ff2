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
//
// They take part in a graceful shutdown: DrainUpgraded, called as the
// edge drains, refuses new upgrades (503) and closes each open one after
// its site's upgrade.drain_grace (at once if it ends sooner on its own),
// or all of them when the drain's deadline comes; they are counted
// (meridian_edge_upgrade_drained_total). Handler.Close closes any left.

// upgradeDrain is the drain state of a Handler's upgraded connections.
type upgradeDrain struct {
	once  sync.Once
	start chan struct{} // closed when the drain starts
	now   chan struct{} // closed at the drain's deadline: close them all
	init  sync.Once
}

func (d *upgradeDrain) chans() (start, now chan struct{}) {
	d.init.Do(func() { d.start, d.now = make(chan struct{}), make(chan struct{}) })
	return d.start, d.now
}

// draining reports whether the drain has started.
func (d *upgradeDrain) draining() bool {
	start, _ := d.chans()
	select {
	case <-start:
		return true
	default:
		return false
	}
}

// DrainUpgraded drains the upgraded connections (see above) and returns
// once none is open, or when ctx ends, after closing those left (then
// with ctx's error). A node calls it as it starts to drain, alongside
// its listeners' Shutdown. Safe to call more than once.
func (h *Handler) DrainUpgraded(ctx context.Context) error {
	start, now := h.drain.chans()
	h.drain.once.Do(func() { close(start) })
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.upgraded.Load() > 0 {
		select {
		case <-ctx.Done():
			select {
			case <-now:
			default:
				close(now)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

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
	if h.drain.draining() {
		// A new tunnel would be closed within its grace: the client
		// had better reconnect to an edge that stays.
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		cs.detail = "upgrade-draining"
		h.writeError(w, r, http.StatusServiceUnavailable, "this edge is shutting down", cs)
		return
	}
	// Counted whatever the cap (-1: none), as the deferred decrement
	// below assumes: DrainUpgraded and the gauge read it.
	if n, max := h.upgraded.Add(1), int64(h.cfg.Server.MaxUpgraded); max >= 0 && n > max {
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
	out.Close = false // the client's Connection: close is its own hop's
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
	start, now := h.drain.chans()
	if splice(ctx, client, brw.Reader, backend, st.cfg.Upgrade.IdleTimeout, drainAfter{start, now, st.cfg.Upgrade.DrainGrace}) {
		h.metrics.upgradeDrained.Inc()
	}
}

// drainAfter is when splice closes a tunnel for a drain: grace after
// start is closed, or at once when now is.
type drainAfter struct {
	start, now <-chan struct{}
	grace      time.Duration
}

// splice copies between the client's connection (whose first bytes may
// wait in buffered) and the origin's until one side ends, ctx ends,
// neither sends anything for idle, or the drain closes it (drained is
// then true); then it closes both and returns once both copies have
// stopped.
func splice(ctx context.Context, client net.Conn, buffered *bufio.Reader, backend io.ReadWriteCloser, idle time.Duration, drain drainAfter) (drained bool) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			backend.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	ended := make(chan struct{})
	defer close(ended)
	var byDrain atomic.Bool
	go func() {
		select {
		case <-drain.start:
		case <-drain.now:
		case <-ended:
			return
		}
		t := time.NewTimer(drain.grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-drain.now:
		case <-ended:
			return
		}
		once.Do(func() {
			byDrain.Store(true)
			client.Close()
			backend.Close()
		})
	}()
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
	return byDrain.Load()
}
