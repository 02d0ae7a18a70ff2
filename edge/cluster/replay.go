package cluster

import (
	"errors"
	"sync"
)

// maxReplayEntries bounds the replay cache: 1 Mi signatures, about 35 MiB
// at most (a 16-byte key in a Go map costs about 34 bytes with the map's
// slack; BenchmarkReplayCacheFull measures it). Over the default window
// of 61 s (the signing second, 30 s either side) that is about 17,000
// signed peer requests a second to one member, sustained; past it the
// member refuses new ones with 503 (the askers fill from upstream) until
// the oldest second leaves the window. A longer max_clock_skew lowers that
// rate in proportion.
const maxReplayEntries = 1 << 20

// Reasons the replay cache refuses a signature; wrapped with detail.
var (
	errReplayed   = errors.New("signature already used (a replay)")
	errReplayFull = errors.New("replay cache full")
)

// replayKey is the first 128 bits of a signature's MAC: enough that two
// different signatures never share one, as the MAC is unpredictable
// without the key.
type replayKey [16]byte

// replayCache remembers the signatures accepted within the clock-skew
// window so that each is accepted once. Entries are grouped by the
// signature's own time (Unix seconds); a group is dropped once its time is
// more than skew in the past, when its signatures fail the clock-skew check
// anyway, so the cache holds at most the signatures of 2*skew+1 seconds and
// never more than max. A full cache refuses new signatures (failing closed:
// the asker fills from upstream instead) rather than forgetting some that
// could then be replayed.
type replayCache struct {
	max  int
	skew int64 // seconds

	mu     sync.Mutex
	byTime map[int64]map[replayKey]struct{}
	n      int
	pruned int64 // the last now that groups were dropped at
}

func newReplayCache(skewSeconds int64, max int) *replayCache {
	return &replayCache{max: max, skew: skewSeconds, byTime: map[int64]map[replayKey]struct{}{}}
}

// use records the signature mac signed at Unix second t, checked at now;
// it fails if the signature was used before or the cache is full. The
// caller has checked that t is within the skew of now and that mac is
// good: only the region's members can add entries.
func (c *replayCache) use(mac []byte, t, now int64) error {
	var k replayKey
	copy(k[:], mac)
	c.mu.Lock()
	defer c.mu.Unlock()
	if now != c.pruned {
		c.pruned = now
		for ts, group := range c.byTime {
			if ts < now-c.skew {
				c.n -= len(group)
				delete(c.byTime, ts)
			}
		}
	}
	group := c.byTime[t]
	if _, seen := group[k]; seen {
		return errReplayed
	}
	if c.n >= c.max {
		return errReplayFull
	}
	if group == nil {
		group = map[replayKey]struct{}{}
		c.byTime[t] = group
	}
	group[k] = struct{}{}
	c.n++
	return nil
}

// len returns the number of signatures remembered.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
