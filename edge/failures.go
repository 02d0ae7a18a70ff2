package edge

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// failedFills remembers the keys whose last fill failed (an upstream 5xx
// that may not be stored, a timeout, a refused connection), so that an
// origin in trouble sees at most one request per key per backoff period
// from this edge, and, since every edge of a region asks the key's owner,
// from the whole CDN: requests in between get the same failure (or their
// stale copy) at once. The backoff doubles with each failure in a row,
// from cache.error_backoff up to cache.max_error_backoff, and a success
// forgets the key.
//
// Failures the edge caused itself (a fill every client left, a full
// in-flight budget, an overloaded origin queue) are not remembered: an
// attacker must not be able to make the edge refuse a key.
//
// Its mutex guards its table only and is taken after the handler's.
type failedFills struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, *failure]
}

// failure is one key's remembered failure.
type failure struct {
	res   fillResult // with body nil: the bytes are in bodyBytes
	body  []byte
	until time.Time
	count int // failures in a row
}

// maxFailedKeys bounds the table: a flood of failing keys evicts the
// oldest, which then cost one more upstream request each.
const maxFailedKeys = 1 << 16

func newFailedFills() *failedFills {
	lru, _ := simplelru.NewLRU[string, *failure](maxFailedKeys, nil)
	return &failedFills{lru: lru}
}

// recall returns the failure remembered for key while its backoff lasts.
// Each caller gets its own copy of the body. The clock is read only when
// a failure is remembered: every new flight asks, under the handler's
// lock, and almost none has one.
func (ff *failedFills) recall(key string, clock func() time.Time) (fillResult, bool) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	fl, ok := ff.lru.Peek(key)
	if !ok {
		return fillResult{}, false
	}
	now := clock()
	if !now.Before(fl.until) {
		return fillResult{}, false
	}
	res := fl.res
	if res.e != nil {
		res.body = completeBody(fl.body)
	}
	res.remembered = true
	res.retryAfter = fl.until.Sub(now)
	return res, true
}

// record remembers a failed fill of key and returns how long it stands.
func (ff *failedFills) record(key string, res fillResult, body []byte, now time.Time, base, ceiling time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	count := 1
	if fl, ok := ff.lru.Peek(key); ok {
		count = fl.count + 1
	}
	backoff := base
	for i := 1; i < count && backoff < ceiling; i++ {
		backoff *= 2
	}
	backoff = min(backoff, max(ceiling, base))
	res.body = nil
	res.pass = nil
	ff.lru.Add(key, &failure{res: res, body: body, until: now.Add(backoff), count: count})
	return backoff
}

// forget drops key's failures: its fill succeeded.
func (ff *failedFills) forget(key string) {
	ff.mu.Lock()
	if ff.lru.Len() > 0 {
		ff.lru.Remove(key)
	}
	ff.mu.Unlock()
}
