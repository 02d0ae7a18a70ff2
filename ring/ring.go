// Package ring is a consistent-hash ring that maps keys to named, weighted
// peers spread over zones, so that every edge in a region agrees, without
// talking, on which peer owns a key.
//
// # Placement
//
// A key is hashed with xxhash (64 bits), and the top 20 bits of the hash
// pick one of Q = 2^20 equal partitions of the keyspace: the ring's virtual
// nodes, as in Dynamo's "Q equal-sized partitions" strategy. A table maps
// every partition to its owner, so [Ring.Owner] is one hash and one array
// read, with no search and no allocation.
//
// The table is a pure function of the member set (names and weights; not
// zones, not the order peers are listed in), because every edge builds its
// ring on its own and all must agree. It is built in two steps:
//
//  1. Each partition goes to the peer with the best weighted rendezvous
//     (highest-random-weight) score: a draw u = mix(xxhash(name), partition)
//     ranked by -ln(u)/weight, in integer arithmetic so every platform
//     agrees. Each peer wins partitions in proportion to its weight;
//     removing a peer moves only its partitions and adding one moves only
//     the partitions it wins. Alone its balance is only statistical: a
//     peer's share is off by about 1/sqrt(Q/n), 0.7% at n = 50, and
//     nothing bounds the unlucky peer (tails of 2–3% at 50 peers, more
//     with more peers).
//  2. A deterministic rebalancing pass brings every peer to within ±1% of
//     its quota, round(Q·weight/total) by largest remainder: peers above
//     the band hand their surplus to peers below it, then peers below the
//     band take what they lack, always moving the partitions whose
//     rendezvous key for the receiver is closest to the owner's. The choice
//     depends only on the scores, never on history.
//
// The price of balance is that a membership change also moves a few
// partitions between peers that did not change, because the rendezvous
// noise that step 2 corrects differs between the old and the new member
// set. That shrinks as 1/sqrt(Q), and the band absorbs most of it: exact
// quotas would move about 0.07% of keys between unchanged peers per
// change; with the band it is under 0.02% at 50 peers, and none at 10
// peers, where no share strays out of the band. A
// larger Q would cost table memory (1 MiB now, 2 MiB beyond 256 peers) and
// lookup speed. Random points on a circle, the classic ring, need a binary
// search per lookup and still balance only to about 1/sqrt(points per
// peer); pure rendezvous hashing per key balances perfectly and never
// moves keys between unchanged peers, but a lookup costs a draw per peer.
//
// Measured over 1,000,000 random keys (go test ./ring -run
// TestQualityReport -v -args -quality): the most-loaded of 10 equal peers
// holds 1.008x the mean and of 50 peers 1.018x; removing or adding a peer
// moves 1.001x and 1.004x the ideal 1/n of keys at n = 10 and 1.007x and
// 1.014x at n = 50; weight-2 peers get 1.996x to 2.002x the keys of
// weight-1 peers.
//
// Building a ring costs Q rendezvous draws per peer, about 40 ms for 10
// peers and 110 ms for 50, so it belongs on the membership path: build a new
// [Ring] off the request path and publish it with [Holder.Store]; request
// handlers call [Holder.Load] and never take a lock.
//
// # Draining
//
// A peer marked [Peer.Draining] (before maintenance) stays in the ring but
// owns nothing: ownership is laid out over the other peers alone, exactly
// as if it had left, so draining one of n peers moves about 1/n of the
// keys, all away from it and none between the others, and undraining
// moves them back. Replicas lists it after every other peer, so a new
// owner can still fetch from it what it holds.
//
// # Lookups
//
// [Ring.Owner] returns the owner and true, or the zero [Peer] and false on
// an empty ring; a nil *Ring is an empty ring. [Ring.Replicas] returns
// Dynamo's zone-aware preference list for a key: the owner first, then the
// other peers in rendezvous order for the key's partition, taking peers
// from zones not yet used first and filling with the remaining peers once
// every zone is used. [Ring.OwnerHash] and [Ring.ReplicasHash] take a key
// already hashed with xxhash.Sum64String, so it is not hashed twice.
package ring

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

const (
	// MaxWeight is the largest peer weight New accepts. Weights are
	// relative, so this bounds only the ratio between peers.
	MaxWeight = 1 << 20
	// MaxPeers is the most peers New accepts. Building takes time linear
	// in the number of peers, about 2 ms each.
	MaxPeers = 4096
)

// Peer is a member of a ring.
type Peer struct {
	// Name identifies the peer; it must be unique and non-empty. Placement
	// depends on the name alone (with the weight), so a peer keeps its
	// keys across restarts and address changes as long as its name stays.
	Name string
	// Zone is the failure domain (rack, availability zone) the peer is in.
	// Replicas prefers peers in distinct zones; "" is a zone like any
	// other. Zones do not affect ownership.
	Zone string
	// Weight is the peer's relative capacity: a peer of weight 2 owns
	// twice the keys of a peer of weight 1. Default 1 (0 means 1); at most
	// MaxWeight. To take a peer's keys away, drain it (Draining).
	Weight int
	// Draining takes the peer's keys away while it stays a member, before
	// maintenance: it owns no key, and every key it owned goes to the
	// peer that would own it if the draining peer had left (about 1/n of
	// the keys move, none between the other peers). Replicas lists
	// draining peers after all the others, so a new owner can still ask
	// the draining peer for what it holds. When every peer is draining
	// none is: the keys have nowhere else to go.
	Draining bool
}

// Ring is an immutable consistent-hash ring. It is safe for concurrent use.
// A nil *Ring behaves as an empty ring.
type Ring struct {
	peers  []Peer  // sorted by name, weights normalized
	active int     // peers not draining (all of them when every peer drains)
	counts []int   // partitions owned by each peer
	zone   []int   // dense zone number of each peer
	zones  int     // number of distinct zones
	scorer *scorer // rendezvous scores, for Replicas

	// The owner table, indexed by the top bits of a key's hash: exactly
	// one is set, by the number of peers.
	shift   uint // 64 - log2(partitions)
	owner8  []uint8
	owner16 []uint16
}

// New builds a ring of peers. The order of peers does not matter: any two
// calls with the same set of peers build rings that place every key the
// same way. Zero peers make an empty ring. New fails if a name is empty or
// duplicated, a weight is negative or above MaxWeight, or there are more
// than MaxPeers peers.
func New(peers []Peer) (*Ring, error) {
	return build(peers, partitionBits)
}

// Check reports why New would refuse peers, or nil if it would build a
// ring of them, without building it (New takes tens of milliseconds). A
// config that lists peers calls it to refuse at validation what New would
// refuse later.
func Check(peers []Peer) error {
	if len(peers) > MaxPeers {
		return fmt.Errorf("ring: %d peers: more than MaxPeers (%d)", len(peers), MaxPeers)
	}
	seen := make(map[string]int, len(peers))
	for i, p := range peers {
		switch {
		case p.Name == "":
			return fmt.Errorf("ring: peers[%d].name: empty", i)
		case p.Weight < 0:
			return fmt.Errorf("ring: peers[%d].weight: negative (%d)", i, p.Weight)
		case p.Weight > MaxWeight:
			return fmt.Errorf("ring: peers[%d].weight: %d above MaxWeight (%d)", i, p.Weight, MaxWeight)
		}
		if j, dup := seen[p.Name]; dup {
			return fmt.Errorf("ring: peers[%d].name: duplicate %q (also peers[%d])", i, p.Name, j)
		}
		seen[p.Name] = i
	}
	return nil
}

// build is New with 2^bits partitions; tests use fewer to run faster.
func build(peers []Peer, bits uint) (*Ring, error) {
	if err := Check(peers); err != nil {
		return nil, err
	}
	r := &Ring{peers: make([]Peer, len(peers)), shift: 64 - bits}
	for i, p := range peers {
		if p.Weight == 0 {
			p.Weight = 1
		}
		r.peers[i] = p
	}
	slices.SortFunc(r.peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	if len(r.peers) == 0 {
		return r, nil
	}
	n := len(r.peers)
	seeds := make([]uint64, n)
	weights := make([]uint64, n)
	r.zone = make([]int, n)
	zoneOf := make(map[string]int)
	for i, p := range r.peers {
		seeds[i] = xxhash.Sum64String(p.Name)
		weights[i] = uint64(p.Weight)
		z, ok := zoneOf[p.Zone]
		if !ok {
			z = len(zoneOf)
			zoneOf[p.Zone] = z
		}
		r.zone[i] = z
	}
	r.zones = len(zoneOf)
	r.scorer = newScorer(seeds, weights)
	// Ownership is laid out over the peers that are not draining alone,
	// exactly as if the draining ones had left.
	var idx []int // active peer -> peer index
	for i, p := range r.peers {
		if !p.Draining {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		for i := range r.peers {
			r.peers[i].Draining = false
			idx = append(idx, i)
		}
	}
	r.active = len(idx)
	owners := r.scorer
	if len(idx) < n {
		as, aw := make([]uint64, len(idx)), make([]uint64, len(idx))
		for k, i := range idx {
			as[k], aw[k] = seeds[i], weights[i]
		}
		owners = newScorer(as, aw)
	}
	l := assign(owners, bits)
	r.counts = make([]int, n)
	for k, c := range l.counts {
		r.counts[idx[k]] = c
	}
	if n <= 1<<8 {
		r.owner8 = make([]uint8, len(l.owner))
		for p, o := range l.owner {
			r.owner8[p] = uint8(idx[o])
		}
	} else {
		r.owner16 = l.owner
		for p, o := range l.owner {
			r.owner16[p] = uint16(idx[o])
		}
	}
	return r, nil
}

// partition returns the partition of a key hash.
func (r *Ring) partition(h uint64) uint64 { return h >> r.shift }

// ownerIndex returns the index of the peer that owns hash h. The ring must
// not be empty.
func (r *Ring) ownerIndex(h uint64) int {
	if r.owner8 != nil {
		return int(r.owner8[r.partition(h)])
	}
	return int(r.owner16[r.partition(h)])
}

// Owner returns the peer that owns key. On an empty ring it returns the
// zero Peer and false.
func (r *Ring) Owner(key string) (Peer, bool) {
	if r == nil || len(r.peers) == 0 {
		return Peer{}, false
	}
	return r.peers[r.ownerIndex(xxhash.Sum64String(key))], true
}

// OwnerHash is Owner for a key already hashed with xxhash.Sum64 (or
// xxhash.Sum64String), so a caller that has the hash does not hash twice.
func (r *Ring) OwnerHash(h uint64) (Peer, bool) {
	if r == nil || len(r.peers) == 0 {
		return Peer{}, false
	}
	return r.peers[r.ownerIndex(h)], true
}

// Replicas returns up to n distinct peers for key, in preference order:
// the owner first (Replicas(key, n)[0] is Owner(key)), then peers from
// zones not yet used, then the rest; draining peers come after all the
// others, in rendezvous order. With at least n zones the n peers are
// in n distinct zones. If n exceeds Len, all peers are returned; if n <= 0
// or the ring is empty, none.
func (r *Ring) Replicas(key string, n int) []Peer {
	return r.ReplicasHash(xxhash.Sum64String(key), n)
}

// ReplicasHash is Replicas for a key already hashed with xxhash.Sum64.
func (r *Ring) ReplicasHash(h uint64, n int) []Peer {
	if r == nil || len(r.peers) == 0 || n <= 0 {
		return nil
	}
	total := len(r.peers)
	n = min(n, total)
	owner := r.ownerIndex(h)
	out := make([]Peer, 1, n)
	out[0] = r.peers[owner]
	if n == 1 {
		return out
	}

	// Rendezvous keys of every peer for the key's partition, and scratch
	// flags, on the stack for rings of up to 64 peers and zones.
	var keyBuf, drawBuf [64]uint64
	var pickedBuf, zoneBuf [64]bool
	keys, draws := keyBuf[:0], drawBuf[:0]
	picked, zoneUsed := pickedBuf[:0], zoneBuf[:0]
	if total > len(keyBuf) {
		keys, draws, picked = make([]uint64, 0, total), make([]uint64, 0, total), make([]bool, 0, total)
	}
	if r.zones > len(zoneBuf) {
		zoneUsed = make([]bool, 0, r.zones)
	}
	keys, draws = keys[:total], draws[:total]
	picked, zoneUsed = picked[:total], zoneUsed[:r.zones]

	pm := partitionMix(r.partition(h))
	for i := range total {
		if r.scorer.uniform {
			// Equal weights: the draw alone orders peers; spare the log.
			draws[i] = score(r.scorer.seeds[i], pm)
		} else {
			keys[i], draws[i] = r.scorer.key(i, pm)
		}
	}
	picked[owner] = true
	zoneUsed[r.zone[owner]] = true
	freeZones := r.zones - 1
	activeLeft := r.active - 1
	for len(out) < n {
		spread := freeZones > 0 && activeLeft > 0 // still taking peers from unused zones
		b := -1
		for i := range total {
			if picked[i] || activeLeft > 0 && r.peers[i].Draining {
				continue
			}
			if spread && zoneUsed[r.zone[i]] {
				continue
			}
			if b < 0 || prefers(i, keys[i], draws[i], b, keys[b], draws[b]) {
				b = i
			}
		}
		if b < 0 { // the active peers left are all in used zones
			freeZones = 0
			continue
		}
		picked[b] = true
		if !r.peers[b].Draining {
			activeLeft--
		}
		if !zoneUsed[r.zone[b]] {
			zoneUsed[r.zone[b]] = true
			freeZones--
		}
		out = append(out, r.peers[b])
	}
	return out
}

// Peers returns the ring's peers sorted by name, with weights normalized
// (0 becomes 1), draining ones included. The slice is a copy.
func (r *Ring) Peers() []Peer {
	if r == nil {
		return nil
	}
	return slices.Clone(r.peers)
}

// Len returns the number of peers.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.peers)
}

// Share returns the fraction of the keyspace the named peer owns, in
// [0, 1]; 0 if it is not in the ring or draining. Shares of all peers sum to 1.
func (r *Ring) Share(name string) float64 {
	if r == nil {
		return 0
	}
	i, ok := slices.BinarySearchFunc(r.peers, name, func(p Peer, name string) int {
		return strings.Compare(p.Name, name)
	})
	if !ok {
		return 0
	}
	return float64(r.counts[i]) / float64(uint64(1)<<(64-r.shift))
}

// Holder holds the current ring for lock-free readers: request handlers
// Load it on every lookup, and the membership path builds a new ring and
// Stores it. The zero Holder holds no ring; Load then returns nil, which
// behaves as an empty ring. A Holder must not be copied after first use.
type Holder struct {
	ring atomic.Pointer[Ring]
}

// Load returns the current ring, or nil if none was stored.
func (h *Holder) Load() *Ring { return h.ring.Load() }

// Store makes r the current ring for subsequent Loads.
func (h *Holder) Store(r *Ring) { h.ring.Store(r) }
