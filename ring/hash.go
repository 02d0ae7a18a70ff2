package ring

import "math/bits"

// mix64 is the splitmix64 finalizer: a bijective 64-bit mixer with full
// avalanche, used to derive independent rendezvous scores from a peer seed
// and a partition number.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// partitionMix returns the per-partition input to the rendezvous scores.
// The offset keeps partition 0 away from mix64's fixed point at zero.
func partitionMix(p uint64) uint64 {
	return mix64(p + 0x9e3779b97f4a7c15)
}

// score is the uniform rendezvous draw of a peer (by seed) for a partition.
func score(seed, pm uint64) uint64 {
	return mix64(seed ^ pm)
}

const (
	// ln2Q30 is ln(2) in fixed point with 30 fractional bits.
	ln2Q30 = 744261117
	// kShift scales -ln(u) before dividing by the weight, so that weights
	// up to MaxWeight keep at least 34 bits of resolution.
	kShift = 24
)

// expo returns -ln(u/2^64) in fixed point with 30 fractional bits: a
// standard exponential variate when u is uniform. It is integer-only, so
// every platform computes the same value (floating point may be fused
// differently by different compilers), and it is non-increasing in u, so
// comparing expo values of equal-weight peers agrees with comparing u.
//
// ln of the mantissa m in [1, 2) uses the series
// 2·(t + t³/3 + t⁵/5 + t⁷/7) with t = (m-1)/(m+1) ≤ 1/3; the absolute
// error is below 2e-5, far below what matters for placement.
func expo(u uint64) uint64 {
	u |= 1
	lz := bits.LeadingZeros64(u)
	m := (u << uint(lz)) >> 32 // [2^31, 2^32)
	t := ((m - 1<<31) << 30) / (m + 1<<31)
	t2 := (t * t) >> 30
	t3 := (t * t2) >> 30
	t5 := (t3 * t2) >> 30
	t7 := (t5 * t2) >> 30
	l := 2 * (t + t3/3 + t5/5 + t7/7)
	return uint64(lz+1)*ln2Q30 - l
}

// weighted returns the weighted rendezvous key of a draw u for a peer of
// weight w: -ln(u)/w scaled to an integer. The peer with the smallest key
// wins, which picks each peer with probability proportional to its weight
// (Schindelhauer and Schomaker's logarithmic method for weighted
// rendezvous hashing).
func weighted(u, w uint64) uint64 {
	if w == 1 {
		return expo(u) << kShift
	}
	return (expo(u) << kShift) / w
}
