// Package limit admits or refuses requests by client: a token-bucket rate
// and a cap on concurrent requests per client key, each over a bounded
// table of clients, and a global cap on requests in flight with a bounded
// queue, as HTTP middleware.
//
// A client's key is its address as a prefix (see [ClientKey]: an IPv4
// address, or the /64 of an IPv6 one, since one IPv6 host commonly holds a
// whole /64). The caller decides which address that is (the connection's,
// or the one a trusted proxy reports).
//
// A [Limiter] checks one site's clients: Allow for the rate, then Acquire
// (and Release when the request ends) for the concurrent requests. Neither
// allocates for a client it knows, nor sleeps: a refused request is told
// how long to wait, for its 429's Retry-After. A [Gate] caps the requests
// in flight on a whole listener, such as the peer listener, where the
// callers are the cluster's own nodes.
//
// # Memory
//
// Each table holds at most max_clients keys, in shards with a lock each
// (no lock is held while another is taken, nor across a wait). When the
// rate table is full the least recently seen client is forgotten: it
// comes back with a full bucket, so eviction only ever makes the limiter
// more lenient, never refuses anyone. The concurrency table holds only
// clients with requests in flight and drops a key when its count returns
// to zero; when it is full, new clients are refused until some finish.
// An attacker rotating addresses therefore cannot grow memory, only get a
// fresh bucket per address: per-client limits are for clients, the global
// caps are for floods.
package limit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Config limits each client of one site. Its zero value limits nothing;
// every field documents its default, filled in by [Config.WithDefaults],
// and [Config.Validate] names the field of any mistake.
type Config struct {
	// RequestsPerSecond is each client's sustained rate: a token bucket
	// refilled at this rate. Default 0: no rate limit.
	RequestsPerSecond float64 `yaml:"rate"`
	// Burst is the bucket's size: how many requests a client may send at
	// once after a quiet spell. Default: one second's worth (the rate,
	// rounded up), at least 1. Only with a rate.
	Burst int `yaml:"burst"`
	// MaxConcurrent caps each client's requests in flight. Default 0: no
	// cap.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxClients bounds each table of clients (the rate's and the
	// concurrency's). Default 65536: a client costs about 270 bytes in
	// the rate table and 100 in the concurrency table, so full tables
	// hold under 25 MiB. The rate table need only remember a client until
	// its bucket is full again (burst/rate seconds; forgetting it then
	// changes nothing), and few edges see 65536 clients in that time.
	MaxClients int `yaml:"max_clients"`

	// Name labels the limiter's metrics; the edge sets it to the site's
	// first host. Default "default". Not read from YAML.
	Name string `yaml:"-"`
	// Now is the rate limiter's clock. Nil means time.Now. Not read from
	// YAML.
	Now func() time.Time `yaml:"-"`
}

// WithDefaults returns a copy of c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.RequestsPerSecond > 0 && c.Burst == 0 {
		c.Burst = max(1, int(min(math.Ceil(c.RequestsPerSecond), math.MaxInt32)))
	}
	if c.MaxClients == 0 {
		c.MaxClients = 65536
	}
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Enabled reports whether c limits anything.
func (c Config) Enabled() bool { return c.RequestsPerSecond > 0 || c.MaxConcurrent > 0 }

// Validate reports every mistake in c, each naming its field, such as
// "burst: negative (-1)". Zero values are fine: they mean the default.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch r := c.RequestsPerSecond; {
	case math.IsNaN(r) || math.IsInf(r, 0):
		bad("rate", "%v is not a rate", r)
	case r < 0:
		bad("rate", "negative (%v)", r)
	}
	switch {
	case c.Burst < 0:
		bad("burst", "negative (%d)", c.Burst)
	case c.Burst > 0 && c.RequestsPerSecond == 0:
		bad("burst", "set without a rate")
	}
	if c.MaxConcurrent < 0 {
		bad("max_concurrent", "negative (%d)", c.MaxConcurrent)
	}
	if c.MaxClients < 0 {
		bad("max_clients", "negative (%d)", c.MaxClients)
	}
	return errors.Join(errs...)
}

// ClientKey returns the key that a client's address is limited under: the
// address itself for IPv4 (IPv4-mapped IPv6 included) and its /64 for
// IPv6, where one host or home commonly holds a whole /64. Zones are
// dropped. Every invalid address shares the zero Prefix.
func ClientKey(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.WithZone("").Prefix(IPv6KeyBits)
	return p
}

// IPv6KeyBits is the prefix length ClientKey keys IPv6 clients by.
const IPv6KeyBits = 64

// Limiter limits one site's clients by key: their rate of requests and
// their requests in flight. A limit left at zero keeps no table and costs
// nothing. It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	now   func() time.Time
	limit rate.Limit
	seed  [2]uint64
	mask  uint64 // shards - 1

	rates []rateShard // nil: no rate limit
	conc  []concShard // nil: no concurrency cap

	refusedRate, refusedConc, refusedFull atomic.Uint64
}

// rateShard is one shard of the rate table; mu guards lru. The limiters
// it holds have locks of their own, taken after mu is released.
type rateShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[netip.Prefix, *rate.Limiter]
	_   [48]byte // keep shards' locks on separate cache lines
}

// concShard is one shard of the concurrency table; mu guards n.
type concShard struct {
	mu  sync.Mutex
	n   map[netip.Prefix]int32 // requests in flight, for keys with some
	cap int                    // most keys in n
	_   [40]byte
}

// New validates cfg and returns its limiter.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	cfg = cfg.WithDefaults()
	l := &Limiter{cfg: cfg, now: cfg.Now, limit: rate.Limit(cfg.RequestsPerSecond),
		seed: [2]uint64{rand.Uint64(), rand.Uint64()}}
	// Shards of at least 256 clients, at most 64 of them: enough to
	// spread the locks of a many-core edge, few enough that a shard's
	// share of max_clients is close to an even split.
	shards := 1
	for shards < 64 && shards*2*256 <= cfg.MaxClients {
		shards *= 2
	}
	l.mask = uint64(shards - 1)
	per := max(1, cfg.MaxClients/shards)
	if cfg.RequestsPerSecond > 0 {
		l.rates = make([]rateShard, shards)
		for i := range l.rates {
			lru, err := simplelru.NewLRU[netip.Prefix, *rate.Limiter](per, nil)
			if err != nil { // only for a size < 1
				return nil, fmt.Errorf("limits: %w", err)
			}
			l.rates[i].lru = lru
		}
	}
	if cfg.MaxConcurrent > 0 {
		l.conc = make([]concShard, shards)
		for i := range l.conc {
			l.conc[i] = concShard{n: map[netip.Prefix]int32{}, cap: per}
		}
	}
	return l, nil
}

// Config returns the limiter's config, defaults filled in.
func (l *Limiter) Config() Config { return l.cfg }

// shard picks key's shard with a seeded hash, so that an attacker cannot
// aim at one shard's share of the table.
func (l *Limiter) shard(key netip.Prefix) uint64 {
	a := key.Addr().As16()
	h := (binary.BigEndian.Uint64(a[:8]) ^ l.seed[0]) * 0x9e3779b97f4a7c15
	h ^= (binary.BigEndian.Uint64(a[8:]) ^ l.seed[1] ^ uint64(key.Bits()+1)) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0x94d049bb133111eb
	return bits.RotateLeft64(h, 17) & l.mask
}

// Allow takes one token from key's bucket. When the bucket is empty it
// returns false and how long until it holds a token again, which the
// caller rounds up to whole seconds for Retry-After. With no rate limit
// it always allows.
func (l *Limiter) Allow(key netip.Prefix) (ok bool, retryAfter time.Duration) {
	if l.rates == nil {
		return true, 0
	}
	s := &l.rates[l.shard(key)]
	s.mu.Lock()
	lim, found := s.lru.Get(key)
	if !found {
		lim = rate.NewLimiter(l.limit, l.cfg.Burst)
		s.lru.Add(key, lim)
	}
	s.mu.Unlock()
	now := l.now()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	l.refusedRate.Add(1)
	wait := (1 - lim.TokensAt(now)) / float64(l.limit) * float64(time.Second)
	return false, time.Duration(min(math.Ceil(wait), math.MaxInt64/2))
}

// Acquire counts one more request in flight for key, unless key already
// has max_concurrent, or key is new and the table is full. Each true
// return must be matched by one Release when the request ends. With no
// cap it always admits.
func (l *Limiter) Acquire(key netip.Prefix) bool {
	if l.conc == nil {
		return true
	}
	s := &l.conc[l.shard(key)]
	s.mu.Lock()
	n := s.n[key]
	switch {
	case int(n) >= l.cfg.MaxConcurrent:
		s.mu.Unlock()
		l.refusedConc.Add(1)
		return false
	case n == 0 && len(s.n) >= s.cap:
		s.mu.Unlock()
		l.refusedFull.Add(1)
		return false
	}
	s.n[key] = n + 1
	s.mu.Unlock()
	return true
}

// Release ends a request that Acquire admitted; the key leaves the table
// when its last request ends. A Release without its Acquire is ignored.
func (l *Limiter) Release(key netip.Prefix) {
	if l.conc == nil {
		return
	}
	s := &l.conc[l.shard(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	switch n := s.n[key]; {
	case n > 1:
		s.n[key] = n - 1
	case n == 1:
		delete(s.n, key)
	}
}

// Stats is a snapshot of a limiter's tables and refusals.
type Stats struct {
	// RateClients and ConcurrentClients count the keys in each table.
	RateClients, ConcurrentClients int
	// RefusedRate counts requests refused for their rate,
	// RefusedConcurrent for their requests in flight and RefusedFull
	// because the concurrency table was full.
	RefusedRate, RefusedConcurrent, RefusedFull uint64
}

// Stats returns the limiter's counts now.
func (l *Limiter) Stats() Stats {
	st := Stats{RefusedRate: l.refusedRate.Load(), RefusedConcurrent: l.refusedConc.Load(), RefusedFull: l.refusedFull.Load()}
	for i := range l.rates {
		s := &l.rates[i]
		s.mu.Lock()
		st.RateClients += s.lru.Len()
		s.mu.Unlock()
	}
	for i := range l.conc {
		s := &l.conc[i]
		s.mu.Lock()
		st.ConcurrentClients += len(s.n)
		s.mu.Unlock()
	}
	return st
}
