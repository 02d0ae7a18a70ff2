package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/ring"
)

// Options are the hooks a Member is built with. The zero value works.
type Options struct {
	// Logger receives membership changes and peer failures (memberlist's
	// own log at debug level). Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for signing and checking peer requests and for
	// suspect windows. Nil means time.Now.
	Now func() time.Time
	// Resolver looks up Config.SeedDNS. Nil means net.DefaultResolver.
	Resolver Resolver
}

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// dnsTimeout bounds one lookup of Config.SeedDNS.
const dnsTimeout = 5 * time.Second

// Member is one edge's membership in its region: gossip, the ring, the peer
// endpoint and the peer-fill transport. Create it with [New]; it is safe
// for concurrent use, and Close stops everything it started.
type Member struct {
	changes  atomic.Uint64 // membership events seen
	cfg      Config
	preset   preset
	log      *slog.Logger
	now      func() time.Time
	resolver Resolver
	sig      signer
	// gossipKey encrypts and authenticates gossip (AES-256-GCM), derived
	// from the secret so that one secret configures both.
	gossipKey []byte

	peerLn   net.Listener
	peerGate *limit.Gate     // caps the verified peer requests in flight
	client   *http.Transport // to the other members' peer endpoints
	tls      *peerTLS        // the links' mutual TLS; nil: plain HTTP
	scheme   string          // of the peer endpoints: "https" with tls

	view   atomic.Pointer[view] // the current ring and peer addresses
	closed atomic.Bool

	// life serializes Start, Leave and Close. It is never held by
	// memberlist callbacks, which run under memberlist's own locks.
	life    sync.Mutex
	started bool
	left    bool
	ml      *memberlist.Memberlist
	peerSrv *http.Server

	mu         sync.Mutex
	members    map[string]member // live members, by name, from the gossip
	meta       []byte            // this member's gossip metadata
	draining   bool              // this member's drain, as meta says it (SetDraining)
	peerAddr   string            // advertised peer endpoint
	gossipAddr string            // advertised gossip address, once started

	smu      sync.Mutex
	suspect  map[string]time.Time // owner name → passed over until
	nSuspect atomic.Int32         // len(suspect), read without smu

	amu      sync.Mutex
	inflight map[string]int // "host target range" → owner fills waiting on a peer (see asking)

	kmu   sync.Mutex
	known map[string]knownMember // members seen alive, by name: where to re-join

	consulted atomic.Uint64 // fills taken from a peer's copy (Consulted)
	replays   atomic.Uint64 // signed requests refused as replays (Replays)
	suspected atomic.Uint64 // members passed over as suspect (Suspicions)

	rebuild chan struct{} // a membership change wants a new ring
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// view is what the request path reads: a ring and where its peers are.
// Ring and addresses are swapped together so that an owner always has an
// address.
type view struct {
	ring  *ring.Ring
	addrs map[string]string // member name → peer endpoint host:port
	// since is when the view was built; prev is the ring before it (for
	// this member's first view, the ring without this member), set once
	// built. A new owner consults prev's holders for handoffWindow.
	since time.Time
	prev  atomic.Pointer[ring.Ring]
}

// member is a live member as its gossip metadata describes it.
type member struct {
	peer ring.Peer
	addr string // peer endpoint host:port
}

// knownMember is a member seen alive: its last gossip address, and when
// it joined or was last seen alive before it went.
type knownMember struct {
	gossip string
	seen   time.Time
}

// metadata is a member's gossip metadata (memberlist NodeMeta, at most 512
// bytes), JSON with short keys.
type metadata struct {
	Peer   string `json:"p"`
	Zone   string `json:"z,omitempty"`
	Weight int    `json:"w,omitempty"`
	Drain  bool   `json:"d,omitempty"`
}

// New checks cfg, reads the secret and binds the peer listener, so that a
// bad config or a busy port is reported here. The node does not serve or
// gossip until Start. Close releases it.
func New(cfg Config, opt Options) (*Member, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	secret, err := cfg.ReadSecret()
	if err != nil {
		return nil, err
	}
	pr, _ := presetFor(cfg.Preset)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	ptls, err := cfg.TLS.watch(opt.Now, log.With("component", "cluster", "member", cfg.Name))
	if err != nil {
		return nil, err
	}
	n := &Member{
		cfg:      cfg,
		preset:   pr,
		log:      opt.Logger,
		now:      opt.Now,
		resolver: opt.Resolver,
		members:  map[string]member{},
		suspect:  map[string]time.Time{},
		inflight: map[string]int{},
		known:    map[string]knownMember{},
		rebuild:  make(chan struct{}, 1),
		tls:      ptls,
		scheme:   "http",
		draining: cfg.Draining,
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("component", "cluster", "member", cfg.Name)
	if n.now == nil {
		n.now = time.Now
	}
	if n.resolver == nil {
		n.resolver = net.DefaultResolver
	}
	n.sig = signer{key: []byte(secret), self: cfg.Name, skew: cfg.MaxClockSkew, now: n.now,
		seen: newReplayCache(int64(cfg.MaxClockSkew/time.Second), maxReplayEntries)}
	kdf := hmac.New(sha256.New, []byte(secret))
	kdf.Write([]byte("meridian-gossip-v1"))
	n.gossipKey = kdf.Sum(nil)
	// No ResponseHeaderTimeout: a member's header waits on the origin.
	// askPeer bounds the wait for a sign of life instead (PeerTimeout,
	// renewed by each interim answer) and leaves the fill's own length to
	// the fill's context.
	n.client = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: cfg.PeerTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if ptls != nil {
		// HTTP/1.1 over TLS (no ForceAttemptHTTP2): the links keep their
		// interim answers and their connections, one handshake each.
		n.scheme = "https"
		n.client.TLSClientConfig = ptls.client
		n.client.TLSHandshakeTimeout = cfg.PeerTimeout
	}
	ln, err := net.Listen("tcp", cfg.PeerListen)
	if err != nil {
		return nil, fmt.Errorf("cluster.peer_listen: %w", err)
	}
	n.peerLn = ln
	if n.peerGate, err = limit.NewGate(cfg.PeerLimits); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster.peer_limits: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.setPeerAddr(nil); err != nil {
		ln.Close()
		n.cancel()
		return nil, err
	}
	return n, nil
}

// setPeerAddr works out the advertised peer endpoint: the bound address,
// with a wildcard host replaced by the advertised gossip IP (gossipIP,
// nil before Start) or the configured one, and the metadata naming it.
func (n *Member) setPeerAddr(gossipIP net.IP) error {
	ap, err := netip.ParseAddrPort(n.peerLn.Addr().String())
	if err != nil {
		return fmt.Errorf("cluster.peer_listen: %w", err)
	}
	host := ap.Addr().Unmap().String()
	if ap.Addr().IsUnspecified() {
		host = ""
		if a, _, err := net.SplitHostPort(n.cfg.Advertise); err == nil {
			host = a
		} else if g, _, err := net.SplitHostPort(n.cfg.GossipListen); err == nil && g != "" {
			if ip := net.ParseIP(g); ip != nil && !ip.IsUnspecified() {
				host = g
			}
		}
		if gossipIP != nil && !gossipIP.IsUnspecified() {
			host = gossipIP.String()
		}
		if host == "" {
			host = "127.0.0.1" // until Start learns the gossip IP
		}
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(ap.Port())))
	n.mu.Lock()
	drain := n.draining
	n.mu.Unlock()
	meta, err := n.encodeMetadata(addr, drain)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.peerAddr, n.meta = addr, meta
	n.mu.Unlock()
	return nil
}

// encodeMetadata is this member's gossip metadata with peer endpoint addr
// and drain.
func (n *Member) encodeMetadata(addr string, drain bool) ([]byte, error) {
	meta, err := json.Marshal(metadata{Peer: addr, Zone: n.cfg.Zone, Weight: n.cfg.Weight, Drain: drain})
	if err != nil {
		return nil, fmt.Errorf("cluster: metadata: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("cluster: metadata is %d bytes, more than memberlist's %d", len(meta), memberlist.MetaMaxSize)
	}
	return meta, nil
}

// metaUpdateTimeout bounds SetDraining's wait for its gossip to go out.
const metaUpdateTimeout = 5 * time.Second

// SetDraining drains this running member (on) or ends its drain, as
// Config.Draining does at start (a config reload applies it with this):
// its gossip metadata changes, and every member's ring, this one's too,
// is rebuilt with it owning no key (about 1/n of the region's keys move
// to the others, none between them) or owning its share again. It stays a
// member and keeps serving what it holds: for handoffWindow the new
// owners of its keys take its copies (consult) rather than the origin's.
// Before Start it sets what the member joins with. It returns once the
// change has gone out on the gossip; an error after metaUpdateTimeout
// means the change is made here and still spreading. It is refused after
// Leave or Close.
func (n *Member) SetDraining(on bool) error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.closed.Load() || n.left {
		return errors.New("cluster: SetDraining after Leave or Close")
	}
	n.mu.Lock()
	same, addr := n.draining == on, n.peerAddr
	n.mu.Unlock()
	if same {
		return nil
	}
	meta, err := n.encodeMetadata(addr, on)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.draining, n.meta = on, meta
	n.mu.Unlock()
	if n.ml == nil {
		return nil // not started: it joins with this
	}
	n.log.Info("draining changed", "draining", on)
	// Our own record is updated at once (memberUp through NotifyUpdate,
	// which rebuilds this member's ring); then the others hear it.
	if err := n.ml.UpdateNode(metaUpdateTimeout); err != nil {
		return fmt.Errorf("cluster: draining %v: gossip: %w", on, err)
	}
	return nil
}

// Draining reports whether this member is draining (Config.Draining,
// then SetDraining).
func (n *Member) Draining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// decodeMetadata parses and checks a member's gossip metadata.
func decodeMetadata(b []byte) (metadata, error) {
	var m metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return metadata{}, fmt.Errorf("metadata: %w", err)
	}
	if _, err := splitHostPort(m.Peer, false); err != nil {
		return metadata{}, fmt.Errorf("metadata: peer address %q: %w", m.Peer, err)
	}
	if len(m.Zone) > maxZoneLen {
		return metadata{}, fmt.Errorf("metadata: zone longer than %d bytes", maxZoneLen)
	}
	if m.Weight < 0 || m.Weight > ring.MaxWeight {
		return metadata{}, fmt.Errorf("metadata: weight %d out of range", m.Weight)
	}
	return m, nil
}

// Start serves the peer endpoint with next (the edge's handler, behind
// [Member.PeerHandler]), starts gossiping and joins the seeds in the
// background. If Start fails, Close still releases what it started.
func (n *Member) Start(next PeerServer) error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.closed.Load() {
		return errors.New("cluster: Start after Close")
	}
	if n.started {
		return errors.New("cluster: already started")
	}
	n.started = true

	n.peerSrv = &http.Server{
		Handler:           n.PeerHandler(next),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	ln := n.peerLn
	if n.tls != nil {
		// The handshake is bounded by ReadHeaderTimeout; one that fails
		// (no certificate, another CA, a byte altered on the link) is
		// logged at debug level by the server, and a refused certificate
		// is counted (TLSRefused).
		n.peerSrv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2
		ln = tls.NewListener(ln, n.tls.server)
		n.tls.creds.Start(n.cfg.TLS.reloadInterval())
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.peerSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("peer endpoint stopped", "err", err)
		}
	}()
	go n.rebuildLoop()

	mc := n.preset.memberlist()
	mc.Name = n.cfg.Name
	host, port, _ := net.SplitHostPort(n.cfg.GossipListen) // validated
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertiseAddr, mc.AdvertisePort = "", mc.BindPort
	if n.cfg.Advertise != "" {
		ah, ap, _ := net.SplitHostPort(n.cfg.Advertise) // validated
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	mc.Delegate = delegate{n}
	mc.Events = delegate{n}
	mc.Logger = slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	mc.SecretKey = n.gossipKey
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster.gossip_listen: %w", err)
	}
	n.ml = ml
	local := ml.LocalNode()
	old := n.PeerAddr()
	if err := n.setPeerAddr(local.Addr); err != nil {
		return err
	}
	if n.PeerAddr() != old {
		// Our own metadata now names the right peer IP; nobody has
		// joined us yet, so this only updates our own entry.
		if err := ml.UpdateNode(time.Second); err != nil {
			n.log.Warn("metadata update failed", "err", err)
		}
	}
	n.mu.Lock()
	n.gossipAddr = local.Address()
	n.mu.Unlock()
	n.wg.Add(1)
	go n.joinLoop(ml)
	n.log.Info("cluster member started", "gossip", local.Address(), "peer", n.PeerAddr(), "preset", n.cfg.Preset, "tls", n.tls != nil)
	return nil
}

// joinLoop joins the region and keeps it whole. While this member is
// alone it tries its seeds every preset.joinRetry (they may start later).
// After that, every preset.rejoin, it joins again through every address
// it knows whose member it does not see alive: the seeds, and the last
// gossip address of every member it saw alive within preset.forget. A
// member that restarted alone (a seed with nobody to join, or one that
// came back after the others declared it dead) is thus found again by
// the others, and a region split by any restart order heals within one
// interval. Joining a live member would only repeat a state exchange, so
// addresses of live members are skipped, and a region that is whole
// makes no join at all.
func (n *Member) joinLoop(ml *memberlist.Memberlist) {
	defer n.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		alone := ml.NumMembers() <= 1
		if alone {
			t.Reset(n.preset.joinRetry)
		} else {
			t.Reset(n.preset.rejoin)
		}
		targets := n.joinTargets()
		if len(targets) == 0 {
			continue
		}
		before := ml.NumMembers()
		joined := 0
		var errs []error
		for _, a := range targets {
			// One address at a time, so that Close waits for at most one
			// connection attempt.
			if n.ctx.Err() != nil {
				return
			}
			k, err := ml.Join([]string{a})
			joined += k
			if err != nil {
				errs = append(errs, err)
			}
		}
		if joined > 0 {
			failures = 0
			switch {
			case alone:
				n.log.Info("joined the region", "contacted", joined)
			case ml.NumMembers() > before:
				n.log.Info("re-joined members not seen alive", "contacted", joined, "tried", targets, "members", ml.NumMembers())
			default:
				// A seed spelled otherwise than its member's advertised
				// address (a service address, a name) is joined every
				// interval: a state exchange, cheap, and quiet.
				n.log.Debug("re-join found no new member", "contacted", joined, "tried", targets)
			}
			continue
		}
		if !alone {
			n.log.Debug("re-join found nobody", "tried", targets, "err", errors.Join(errs...))
			continue
		}
		failures++
		if failures == 1 {
			n.log.Warn("join failed; retrying in the background", "seeds", targets, "err", errors.Join(errs...))
		} else {
			n.log.Debug("join failed", "seeds", targets, "attempt", failures, "err", errors.Join(errs...))
		}
	}
}

// joinTargets returns the gossip addresses to join: the seeds and the
// last addresses of members seen alive within preset.forget, without
// this member's own address and without the addresses of members alive
// now.
func (n *Member) joinTargets() []string {
	// memberlist's Members hands out nodes its goroutines write to: the
	// live set comes from this member's own record of the gossip.
	n.mu.Lock()
	alive := make(map[string]bool, len(n.members))
	for name := range n.members {
		alive[name] = true
	}
	n.mu.Unlock()
	live := map[string]bool{normAddr(n.GossipAddr()): true, normAddr(n.cfg.GossipListen): true}
	var gone []string
	now := n.now()
	n.kmu.Lock()
	for name, k := range n.known {
		switch {
		case alive[name]:
			live[normAddr(k.gossip)] = true
		case now.Sub(k.seen) > n.preset.forget:
			delete(n.known, name)
		default:
			gone = append(gone, k.gossip)
		}
	}
	n.kmu.Unlock()
	var out []string
	for _, a := range append(n.seeds(), gone...) {
		if !live[normAddr(a)] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// remember records where a live member gossips, for joinLoop.
func (n *Member) remember(name, gossip string) {
	if name == n.cfg.Name || gossip == "" {
		return
	}
	n.kmu.Lock()
	n.known[name] = knownMember{gossip: gossip, seen: n.now()}
	n.kmu.Unlock()
}

// seeds returns the gossip addresses to join: the static seeds and the
// records of SeedDNS, without this member's own address.
func (n *Member) seeds() []string {
	self := map[string]bool{normAddr(n.GossipAddr()): true, normAddr(n.cfg.GossipListen): true}
	var out []string
	for _, s := range n.cfg.Seeds {
		if !self[normAddr(s)] {
			out = append(out, s)
		}
	}
	if n.cfg.SeedDNS != "" {
		host, port, _ := net.SplitHostPort(n.cfg.SeedDNS) // validated
		ctx, cancel := context.WithTimeout(n.ctx, dnsTimeout)
		ips, err := n.resolver.LookupHost(ctx, host)
		cancel()
		if err != nil {
			n.log.Debug("seed lookup failed", "name", host, "err", err)
		}
		for _, ip := range ips {
			if a := net.JoinHostPort(ip, port); !self[normAddr(a)] && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// normAddr writes an IP:port in one form, so "[::ffff:127.0.0.1]:1" and
// "127.0.0.1:1" compare equal; other strings are returned as they are.
func normAddr(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	return s
}

// rebuildLoop builds a new ring after membership changes, off the
// request path, and swaps it in. A change waits preset.settle for more to
// arrive; changes that arrive during the wait or a build are folded into
// one build, and none is made if the members end up as they were.
func (n *Member) rebuildLoop() {
	defer n.wg.Done()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.rebuild:
		}
		settle.Reset(n.preset.settle)
		select {
		case <-n.ctx.Done():
			return
		case <-settle.C:
		}
		select {
		case <-n.rebuild: // folded into this build
		default:
		}
		n.mu.Lock()
		peers := make([]ring.Peer, 0, len(n.members))
		addrs := make(map[string]string, len(n.members))
		for name, m := range n.members {
			peers = append(peers, m.peer)
			addrs[name] = m.addr
		}
		n.mu.Unlock()
		if v := n.view.Load(); v != nil && sameMembers(v, peers, addrs) {
			continue
		}
		r, err := ring.New(peers)
		if err != nil {
			n.log.Error("ring rebuild failed", "err", err)
			continue
		}
		old := n.view.Load()
		nv := &view{ring: r, addrs: addrs, since: n.now()}
		// Until this member has been in the region with others, the
		// holders of its keys before it came (or came back) are on the
		// ring without it.
		arrived := old == nil || old.ring.Len() <= 1
		if !arrived {
			nv.prev.Store(old.ring)
		}
		n.view.Store(nv)
		n.log.Info("ring rebuilt", "members", r.Len(), "share", r.Share(n.cfg.Name))
		if arrived {
			// Built after the view is in use, off the request path.
			others := slices.DeleteFunc(slices.Clone(peers), func(p ring.Peer) bool { return p.Name == n.cfg.Name })
			if len(others) > 0 {
				if pr, err := ring.New(others); err == nil {
					nv.prev.Store(pr)
				}
			}
		}
	}
}

// sameMembers reports whether a view already holds exactly these members
// at these addresses.
func sameMembers(v *view, peers []ring.Peer, addrs map[string]string) bool {
	if v.ring.Len() != len(peers) || !maps.Equal(v.addrs, addrs) {
		return false
	}
	cur := v.ring.Peers() // sorted by name, weights normalized
	for _, p := range peers {
		i, ok := slices.BinarySearchFunc(cur, p.Name, func(q ring.Peer, name string) int { return strings.Compare(q.Name, name) })
		if !ok || cur[i].Zone != p.Zone || cur[i].Weight != max(p.Weight, 1) || cur[i].Draining != p.Draining {
			return false
		}
	}
	return true
}

func (n *Member) signalRebuild() {
	select {
	case n.rebuild <- struct{}{}:
	default: // a rebuild is already due; it will see this change
	}
}

// memberUp records a joined or updated member.
func (n *Member) memberUp(nd *memberlist.Node, event string) {
	md, err := decodeMetadata(nd.Meta)
	if err == nil {
		err = checkName(nd.Name)
	}
	if err != nil {
		// A member we cannot reach is no owner: leave it off the ring.
		n.log.Warn("member ignored", "peer", nd.Name, "err", err)
		n.memberDown(nd)
		return
	}
	m := member{peer: ring.Peer{Name: nd.Name, Zone: md.Zone, Weight: md.Weight, Draining: md.Drain}, addr: md.Peer}
	n.remember(nd.Name, nd.Address())
	n.mu.Lock()
	old, had := n.members[nd.Name]
	n.members[nd.Name] = m
	n.mu.Unlock()
	if had && old == m {
		return
	}
	n.clearSuspect(nd.Name) // a restarted member starts with a clean slate
	n.changes.Add(1)
	n.log.Info("member "+event, "peer", nd.Name, "addr", md.Peer, "zone", md.Zone, "weight", md.Weight, "draining", md.Drain)
	n.signalRebuild()
}

// memberDown records a member that left or failed.
func (n *Member) memberDown(nd *memberlist.Node) {
	n.mu.Lock()
	_, had := n.members[nd.Name]
	delete(n.members, nd.Name)
	n.mu.Unlock()
	n.kmu.Lock()
	if k, ok := n.known[nd.Name]; ok {
		k.seen = n.now() // alive until now: forgotten preset.forget from here
		n.known[nd.Name] = k
	}
	n.kmu.Unlock()
	if had {
		n.changes.Add(1)
		n.log.Info("member gone", "peer", nd.Name)
		n.signalRebuild()
	}
}

// delegate receives memberlist's callbacks. They run under memberlist's
// locks: they only record the change and signal the rebuild loop.
type delegate struct{ n *Member }

var (
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = delegate{}
)

func (d delegate) NodeMeta(limit int) []byte {
	d.n.mu.Lock()
	defer d.n.mu.Unlock()
	if len(d.n.meta) > limit {
		return nil // checked in setPeerAddr; never happens
	}
	return slices.Clone(d.n.meta)
}

func (delegate) NotifyMsg([]byte)                   {}
func (delegate) GetBroadcasts(int, int) [][]byte    { return nil }
func (delegate) LocalState(bool) []byte             { return nil }
func (delegate) MergeRemoteState([]byte, bool)      {}
func (d delegate) NotifyJoin(nd *memberlist.Node)   { d.n.memberUp(nd, "joined") }
func (d delegate) NotifyUpdate(nd *memberlist.Node) { d.n.memberUp(nd, "updated") }
func (d delegate) NotifyLeave(nd *memberlist.Node)  { d.n.memberDown(nd) }

// PeerGate is the cap on the peer endpoint's requests in flight
// (Config.PeerLimits), a prometheus.Collector of its own metrics.
func (n *Member) PeerGate() *limit.Gate { return n.peerGate }

// Name returns this member's name.
func (n *Member) Name() string { return n.cfg.Name }

// PeerAddr returns the advertised host:port of this member's peer
// endpoint.
func (n *Member) PeerAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peerAddr
}

// GossipAddr returns the advertised IP:port of this member's gossip, the
// address other members use as a seed; "" before Start.
func (n *Member) GossipAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gossipAddr
}

// MembershipChanges counts the joins, leaves, failures and updates this
// member has seen, for metrics (a flapping peer makes it climb).
func (n *Member) MembershipChanges() uint64 { return n.changes.Load() }

// Replays counts the signed peer requests this member refused because
// their signature had been used before (a replayed request), for metrics.
func (n *Member) Replays() uint64 { return n.replays.Load() }

// Suspicions counts the times this member passed over a peer as suspect
// (refused, silent for PeerTimeout, reset, or an answer not its own), for
// metrics: on a healthy region it stays still.
func (n *Member) Suspicions() uint64 { return n.suspected.Load() }

// Suspects returns the members this one passes over as suspect now,
// sorted by name.
func (n *Member) Suspects() []string {
	n.smu.Lock()
	defer n.smu.Unlock()
	now := n.now()
	var out []string
	for name, until := range n.suspect {
		if now.Before(until) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Members returns the live members as the gossip knows them, this one
// included, sorted by name.
func (n *Member) Members() []ring.Peer {
	n.mu.Lock()
	out := make([]ring.Peer, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m.peer)
	}
	n.mu.Unlock()
	slices.SortFunc(out, func(a, b ring.Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Ring returns the current ring: nil (an empty ring) before the first
// build. Rings are immutable; a membership change swaps in a new one.
func (n *Member) Ring() *ring.Ring {
	if v := n.view.Load(); v != nil {
		return v.ring
	}
	return nil
}

// Owner returns the member that owns key on the current ring, whether or
// not it is currently passed over as suspect; false on an empty ring.
func (n *Member) Owner(key string) (ring.Peer, bool) {
	return n.Ring().Owner(key)
}

// Leave tells the region this member is going (the others drop it from
// their rings at once instead of waiting for failure detection), then
// stops accepting peer requests and waits for those in flight, all within
// timeout. Fills of this member's own clients keep working (to the owners
// or the origin) until Close. Leave is for graceful shutdowns; it is safe
// to call more than once, and does nothing before Start or after Close.
// A timeout of 0 or less means 5s.
func (n *Member) Leave(timeout time.Duration) error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.closed.Load() || n.ml == nil {
		return nil
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	if !n.left {
		n.left = true
		if err := n.ml.Leave(timeout); err != nil {
			errs = append(errs, fmt.Errorf("cluster: leave: %w", err))
		}
	}
	if err := n.peerSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cluster: peer endpoint: %w", err))
	}
	return errors.Join(errs...)
}

// Close stops the node at once: gossip stops without a goodbye (the
// region detects the failure, as if the machine died), the peer endpoint
// and its connections close, and every goroutine ends before Close
// returns (a join attempt in progress may hold it for memberlist's stream
// timeout: 1s local, 10s lan). Call Leave first for a graceful exit.
// After Close the Transport sends every fill to the origin. Close is safe
// to call more than once.
func (n *Member) Close() error {
	n.life.Lock()
	defer n.life.Unlock()
	if n.closed.Swap(true) {
		return nil
	}
	n.cancel()
	var errs []error
	if n.ml != nil {
		if err := n.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: gossip: %w", err))
		}
	}
	if n.peerSrv != nil {
		n.peerSrv.Close() // closes the listener too
	} else {
		n.peerLn.Close()
	}
	n.wg.Wait()
	if n.tls != nil {
		n.tls.creds.Close()
	}
	n.client.CloseIdleConnections()
	return errors.Join(errs...)
}
