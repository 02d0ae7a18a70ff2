package ring

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

const (
	// partitionBits is log2 of the number of partitions (Dynamo's Q).
	// 2^20 keeps the rendezvous noise that rebalancing must correct small
	// enough that few keys move between unchanged peers (see the package
	// doc), while the owner table stays 1 MiB for up to 256 peers.
	partitionBits = 20

	// slackPPM is the band, in parts per million of a peer's quota, within
	// which its partition count may float without being rebalanced: ±1%.
	// Exact quotas would move ~0.07% of keys between unchanged peers on
	// every membership change at 50 peers; the band cuts that to ~0.015%
	// for a share error below the per-key sampling noise of 1M keys.
	slackPPM = 10000
)

// layout is the partition assignment of a member set: which peer owns
// each partition, and how many partitions each peer owns.
type layout struct {
	owner  []uint16 // partition -> peer index
	counts []int    // peer index -> partitions owned
	// bound is a lower bound on the cost of moving each partition away
	// from its owner, in units of 2^kShift of rendezvous key: the gap
	// between the owner's key and the runner-up's. Zero once a partition
	// has moved, since its owner is then no longer the best.
	bound []uint32
}

// scorer computes rendezvous preferences of peers for partitions. Peers
// are identified by their index in name order, which makes every tie-break
// independent of the order the caller listed them in.
type scorer struct {
	seeds   []uint64
	weights []uint64
	// classes groups peer indices by equal weight (ascending index within
	// a class). Inside a class the largest draw wins, so only one
	// logarithm per class is needed to compare peers.
	classes [][]int
	uniform bool // all weights equal: compare draws, skip logarithms
}

// newScorer returns a scorer for peers with the given seeds and weights.
// Weights are divided by their greatest common divisor, so placement
// depends only on their ratios; equal weights all become 1.
func newScorer(seeds, weights []uint64) *scorer {
	g := uint64(0)
	for _, w := range weights {
		g = gcd(g, w)
	}
	weights = slices.Clone(weights)
	for i := range weights {
		weights[i] /= g
	}
	s := &scorer{seeds: seeds, weights: weights}
	byWeight := make(map[uint64]int)
	for i, w := range weights {
		c, ok := byWeight[w]
		if !ok {
			c = len(s.classes)
			byWeight[w] = c
			s.classes = append(s.classes, nil)
		}
		s.classes[c] = append(s.classes[c], i)
	}
	s.uniform = len(s.classes) <= 1
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// key returns peer i's weighted rendezvous key for partition mix pm and
// its draw u. Smaller keys are preferred.
func (s *scorer) key(i int, pm uint64) (k, u uint64) {
	u = score(s.seeds[i], pm)
	return weighted(u, s.weights[i]), u
}

// prefers reports whether peer a (key ka, draw ua) is preferred to peer b.
// The order is total: key, then larger draw, then lower index.
func prefers(a int, ka, ua uint64, b int, kb, ub uint64) bool {
	if ka != kb {
		return ka < kb
	}
	if ua != ub {
		return ua > ub
	}
	return a < b
}

// best returns the preferred peer for partition mix pm among the peers for
// which allowed is true (all peers if allowed is nil), with its key; ok is
// false if no peer is allowed.
func (s *scorer) best(pm uint64, allowed []bool) (peer int, k uint64, ok bool) {
	var bu uint64
	peer = -1
	for _, class := range s.classes {
		ci, cu := -1, uint64(0)
		for _, i := range class {
			if allowed != nil && !allowed[i] {
				continue
			}
			if u := score(s.seeds[i], pm); ci < 0 || u > cu {
				ci, cu = i, u
			}
		}
		if ci < 0 {
			continue
		}
		ck := weighted(cu, s.weights[ci])
		if peer < 0 || prefers(ci, ck, cu, peer, k, bu) {
			peer, k, bu = ci, ck, cu
		}
	}
	return peer, k, peer >= 0
}

// top returns the preferred peer for partition mix pm among all peers,
// and a lower bound on the cost of moving the partition to any other peer
// (see layout.bound).
func (s *scorer) top(pm uint64) (first int, bound uint32) {
	if s.uniform {
		// One weight: the largest draw wins. Tracked branch-free, since
		// which peer leads is unpredictable.
		var u1, u2 uint64
		for i, seed := range s.seeds {
			u := score(seed, pm)
			if u > u1 {
				first = i
			}
			u2 = max(u2, min(u, u1))
			u1 = max(u1, u)
		}
		return first, gapBound(u1, u2)
	}
	// Within a class the largest draw is the class's best; the overall
	// winner is the best class best, and the runner-up is another class's
	// best or the second draw of a class.
	var k1, u1 uint64
	k2 := ^uint64(0)
	first = -1
	for _, class := range s.classes {
		ci, c1, c2 := class[0], uint64(0), uint64(0)
		for _, i := range class {
			u := score(s.seeds[i], pm)
			if u > c1 {
				ci = i
			}
			c2 = max(c2, min(u, c1))
			c1 = max(c1, u)
		}
		w := s.weights[ci]
		if len(class) > 1 {
			k2 = min(k2, weighted(c2, w))
		}
		ck := weighted(c1, w)
		if first < 0 || prefers(ci, ck, c1, first, k1, u1) {
			if first >= 0 {
				k2 = min(k2, k1)
			}
			first, k1, u1 = ci, ck, c1
		} else {
			k2 = min(k2, ck)
		}
	}
	return first, uint32(min((k2-k1)>>kShift, math.MaxUint32))
}

// gapBound is a lower bound, in units of 2^kShift of key, on the key gap
// between draws u1 >= u2 of weight-1 peers: expo(u2) - expo(u1). That gap
// is ln(u1/u2) >= (u1-u2)/u1 > (u1-u2)/2^bits.Len64(u1), less expo's
// approximation error (under 2^15 units), so no logarithm is needed.
func gapBound(u1, u2 uint64) uint32 {
	const margin = 1 << 16
	lz := bits.LeadingZeros64(u1)
	if lz >= 34 {
		return 0
	}
	g := (u1 - u2) >> (34 - lz)
	if g <= margin {
		return 0
	}
	return uint32(min(g-margin, math.MaxUint32))
}

// quotas splits total partitions among peers in proportion to weight by
// largest remainder (Hamilton), ties going to the lower index.
func quotas(weights []uint64, total int) []int {
	var sum uint64
	for _, w := range weights {
		sum += w
	}
	q := make([]int, len(weights))
	rem := make([]uint64, len(weights))
	left := total
	for i, w := range weights {
		x := uint64(total) * w
		q[i] = int(x / sum)
		rem[i] = x % sum
		left -= q[i]
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(rem[b], rem[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, i := range order[:left] {
		q[i]++
	}
	return q
}

// assign computes the layout of 2^bits partitions. It is a pure function
// of the scorer (the member set): no randomness, no dependence on history.
//
//  1. Every partition goes to its rendezvous winner: minimal movement, but
//     shares carry binomial noise of about 1/sqrt(partitions per peer).
//  2. Peers above their quota's upper band shed the surplus, and peers
//     below the lower band are filled, moving the partitions whose
//     rendezvous key for the receiving peer is closest to the current
//     owner's (the partitions "almost" owned by the receiver anyway).
func assign(s *scorer, bits uint) layout {
	n := len(s.seeds)
	total := 1 << bits
	l := layout{owner: make([]uint16, total), counts: make([]int, n), bound: make([]uint32, total)}
	for p := range total {
		i, bound := s.top(partitionMix(uint64(p)))
		l.owner[p] = uint16(i)
		l.counts[i]++
		l.bound[p] = bound
	}
	q := quotas(s.weights, total)
	lo := make([]int, n)
	hi := make([]int, n)
	for i, qi := range q {
		slack := int(uint64(qi) * slackPPM / 1e6)
		lo[i], hi[i] = qi-slack, qi+slack
	}
	// Shed: peers above hi give their surplus to peers below hi.
	l.rebalance(s, func(i int) int { return l.counts[i] - hi[i] },
		func(j int) int { return hi[j] - l.counts[j] })
	// Fill: peers below lo take what they lack from peers above lo.
	l.rebalance(s, func(i int) int { return l.counts[i] - lo[i] },
		func(j int) int { return lo[j] - l.counts[j] })
	return l
}

// move is a candidate transfer of a partition to a peer, at a cost in
// rendezvous key (how much less the receiver wants it than the owner).
type move struct {
	cost int64
	part int32
	to   int32
}

func compareMoves(a, b move) int {
	if c := cmp.Compare(a.cost, b.cost); c != 0 {
		return c
	}
	return cmp.Compare(a.part, b.part)
}

// rebalance moves partitions from peers with a positive surplus to peers
// with positive room, cheapest first, until one side is exhausted. In the
// shed phase the givers' surplus is what must go and receivers have room
// up to their upper band; in the fill phase the receivers' room is what
// they lack and givers may go down to their lower band. Either way the
// binding side ends at its band.
func (l *layout) rebalance(s *scorer, surplus, room func(int) int) {
	n := len(l.counts)
	give := make([]bool, n)
	take := make([]bool, n)
	var moves []move
	for {
		gives, takes, givers := 0, 0, 0
		for i := range n {
			give[i], take[i] = false, false
			if x := surplus(i); x > 0 {
				give[i] = true
				gives += x
				givers += l.counts[i]
			}
			if x := room(i); x > 0 {
				take[i] = true
				takes += x
			}
		}
		need := min(gives, takes)
		if need == 0 {
			return
		}
		// Only the cheapest moves can be taken this round; a round takes
		// at least its cheapest move, so rounds always progress. Find the
		// want cheapest exactly, pricing only partitions whose lower
		// bound is under a limit that grows until enough are found:
		// a partition with bound >= limit costs at least limit.
		want := min(4*need+64, givers)
		// Runner-up gaps of n exponentials are about Exp(n-1), so this
		// first limit admits roughly 2·want partitions.
		limit := uint64(2*want) << 30 / uint64(givers*n)
		for {
			moves = moves[:0]
			all := limit >= math.MaxUint32
			for p, o := range l.owner {
				if !give[o] || !all && uint64(l.bound[p]) >= limit {
					continue
				}
				pm := partitionMix(uint64(p))
				j, kj, _ := s.best(pm, take)
				ko, _ := s.key(int(o), pm)
				cost := int64(kj) - int64(ko)
				if all || cost < int64(limit<<kShift) {
					moves = append(moves, move{cost: cost, part: int32(p), to: int32(j)})
				}
			}
			if all || len(moves) >= want {
				break
			}
			limit = max(limit*4, 1)
		}
		k := min(len(moves), want)
		selectSmallest(moves, k)
		slices.SortFunc(moves[:k], compareMoves)
		for _, m := range moves[:k] {
			from, to := int(l.owner[m.part]), int(m.to)
			if surplus(from) > 0 && room(to) > 0 {
				l.owner[m.part] = uint16(to)
				l.bound[m.part] = 0
				l.counts[from]--
				l.counts[to]++
			}
		}
	}
}

// selectSmallest reorders ms so that its first k elements are the k
// smallest in compareMoves order (quickselect, deterministic pivots).
func selectSmallest(ms []move, k int) {
	lo, hi := 0, len(ms)
	for hi-lo > 1 && k > lo && k < hi {
		mid := lo + (hi-lo)/2
		// median of three as pivot
		a, b, c := lo, mid, hi-1
		if compareMoves(ms[b], ms[a]) < 0 {
			a, b = b, a
		}
		if compareMoves(ms[c], ms[b]) < 0 {
			b = c
			if compareMoves(ms[b], ms[a]) < 0 {
				b = a
			}
		}
		pivot := ms[b]
		i, j := lo, hi-1
		for i <= j {
			for compareMoves(ms[i], pivot) < 0 {
				i++
			}
			for compareMoves(ms[j], pivot) > 0 {
				j--
			}
			if i <= j {
				ms[i], ms[j] = ms[j], ms[i]
				i++
				j--
			}
		}
		switch {
		case k <= j+1:
			hi = j + 1
		case k >= i:
			lo = i
		default:
			return
		}
	}
}
