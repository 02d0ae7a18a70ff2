package edge

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiancdn/meridian/edge/store"
)

// Bans invalidate by condition, as Varnish's bans do: a prefix purge, a
// purge of a whole host or site, and a ban expression are each a ban, a
// condition on the stored objects with the time it was made. A ban
// affects only the entries whose response arrived before it: each lookup
// checks the entry it finds against the newer bans (lazily, so a ban
// takes effect at once, however large the store), and a sweeper walks
// the whole store in the background, removing (or, for a soft ban,
// marking stale) what they match. Once a sweep that began after a ban
// was made has checked every entry, no entry older than the ban is left
// unchecked (a fill that was already on its way is checked as it stores:
// see putFilled), and the ban is retired. The list is bounded
// (purge.max_bans): past it a new ban is refused with ErrTooManyBans,
// and the caller retries once the sweeper has retired some.
//
// Lock order: banList.mu is a leaf; the store's locks are never taken
// under it. The hit path reads the list without a lock (an atomic
// snapshot).

// Ban expression limits: a longer expression or more conditions are
// refused. RE2 (package regexp) matches in time linear in the input, so
// no pattern backtracks catastrophically; the length bounds its
// compiled size, and so the cost of each match.
const (
	maxBanBytes = 1024
	maxBanConds = 8
)

// ErrTooManyBans is returned when purge.max_bans bans are active: the new
// ban is refused, and may be sent again once the sweeper has retired
// some.
var ErrTooManyBans = errors.New("purge: too many active bans (purge.max_bans); retry once the sweeper has retired some")

// The fields a ban condition tests.
const (
	banURL    = iota // req.url: the path and query, as keyed
	banHost          // req.http.host: the host, normalized
	banHeader        // obj.http.NAME: a field of the stored response
)

// The operators of a ban condition; opPrefix is not in the expression
// language (prefix purges make it).
const (
	opEq     = "=="
	opNe     = "!="
	opMatch  = "~"
	opNo     = "!~"
	opPrefix = "^="
)

// banCond is one condition of a ban.
type banCond struct {
	field  int
	header string // canonical field name, for banHeader
	op     string
	arg    string
	re     *regexp.Regexp // for ~ and !~
}

// ban is one ban: every condition holds (and the entry's host is in
// hosts, when set) for the entries it affects.
type ban struct {
	at    int64    // Unix nanoseconds, on this node's clock
	hosts []string // the entry's host must be one of these; nil: any
	conds []banCond
	soft  bool
	id    string // identity: two bans with the same one are duplicates
}

// parseBan parses a ban expression: conditions joined with "&&", each
// "FIELD OP ARG", where FIELD is req.url, req.http.host or obj.http.NAME,
// OP is ==, !=, ~ (matches the Go regular expression) or !~, and ARG is a
// double-quoted string (\" and \\ escaped) or a run of characters up to
// white space:
//
//	req.http.host == example.com && req.url ~ "^/img/.*\.png$"
//	obj.http.X-Magento-Tags ~ "(^|,)cat_p_1(,|$)"
func parseBan(expr string) ([]banCond, error) {
	if len(expr) > maxBanBytes {
		return nil, fmt.Errorf("ban: expression longer than %d bytes", maxBanBytes)
	}
	return parseBanConds(expr)
}

// parseBanConds is parseBan without the bound on the length.
func parseBanConds(expr string) ([]banCond, error) {
	var conds []banCond
	s := expr
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			if len(conds) == 0 {
				return nil, errors.New("ban: empty expression")
			}
			return nil, errors.New("ban: expression ends with &&")
		}
		if len(conds) == maxBanConds {
			return nil, fmt.Errorf("ban: more than %d conditions", maxBanConds)
		}
		var c banCond
		var err error
		if c, s, err = parseBanCond(s); err != nil {
			return nil, err
		}
		conds = append(conds, c)
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return conds, nil
		}
		rest, ok := strings.CutPrefix(s, "&&")
		if !ok {
			return nil, fmt.Errorf("ban: want && or the end after condition %d, got %q", len(conds), clip(s))
		}
		s = rest
	}
}

// parseBanCond parses one condition at the start of s.
func parseBanCond(s string) (banCond, string, error) {
	var c banCond
	end := strings.IndexAny(s, " \t=!~")
	if end <= 0 {
		return c, "", fmt.Errorf("ban: want a field (req.url, req.http.host, obj.http.NAME), got %q", clip(s))
	}
	name := s[:end]
	switch lower := strings.ToLower(name); {
	case lower == "req.url":
		c.field = banURL
	case lower == "req.http.host":
		c.field = banHost
	case strings.HasPrefix(lower, "obj.http.") && isToken(name[len("obj.http."):]):
		c.field, c.header = banHeader, http.CanonicalHeaderKey(name[len("obj.http."):])
	default:
		return c, "", fmt.Errorf("ban: unknown field %q (want req.url, req.http.host or obj.http.NAME)", clip(name))
	}
	s = strings.TrimLeft(s[end:], " \t")
	for _, op := range []string{opEq, opNe, opNo, opMatch} {
		if rest, ok := strings.CutPrefix(s, op); ok {
			c.op, s = op, rest
			break
		}
	}
	if c.op == "" {
		return c, "", fmt.Errorf("ban: want ==, !=, ~ or !~ after %s, got %q", name, clip(s))
	}
	s = strings.TrimLeft(s, " \t")
	var err error
	if c.arg, s, err = parseBanArg(s); err != nil {
		return c, "", err
	}
	switch c.op {
	case opMatch, opNo:
		if c.re, err = regexp.Compile(c.arg); err != nil {
			return c, "", fmt.Errorf("ban: %s %s: %v", name, c.op, err)
		}
	default:
		if c.field == banHost {
			c.arg = strings.TrimSuffix(strings.ToLower(c.arg), ".")
		}
	}
	return c, s, nil
}

// parseBanArg reads a quoted or bare argument at the start of s.
func parseBanArg(s string) (arg, rest string, err error) {
	if s == "" {
		return "", "", errors.New("ban: missing argument at the end")
	}
	if s[0] != '"' {
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		if strings.ContainsAny(s[:end], "\"\r\n\x00") {
			return "", "", fmt.Errorf("ban: bad bare argument %q (quote it)", clip(s[:end]))
		}
		return s[:end], s[end:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 == len(s) || s[i+1] != '"' && s[i+1] != '\\' {
				// Any other backslash is kept: it belongs to the
				// regular expression (\. \d \/).
				b.WriteByte(ch)
				continue
			}
			i++
			b.WriteByte(s[i])
		case '\r', '\n', 0:
			return "", "", errors.New("ban: control character in a quoted argument")
		default:
			b.WriteByte(ch)
		}
	}
	return "", "", errors.New("ban: unterminated quoted argument")
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// String is the condition in the expression language (quoted, so that
// it parses back to the same condition).
func (c banCond) String() string {
	var f string
	switch c.field {
	case banURL:
		f = "req.url"
	case banHost:
		f = "req.http.host"
	default:
		f = "obj.http." + c.header
	}
	q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(c.arg)
	return f + " " + c.op + " \"" + q + "\""
}

// newBan makes a ban of conds at at, affecting hosts (nil: every host).
func newBan(conds []banCond, hosts []string, soft bool, at time.Time) *ban {
	parts := make([]string, len(conds))
	for i, c := range conds {
		parts[i] = c.String()
	}
	hs := slices.Clone(hosts)
	slices.Sort(hs)
	hs = slices.Compact(hs)
	id := strings.Join(parts, " && ") + " | hosts " + strings.Join(hs, ",")
	return &ban{at: at.UnixNano(), hosts: hs, conds: conds, soft: soft, id: id}
}

// String describes the ban for /status.
func (b *ban) String() string {
	s := b.id
	if b.soft {
		s += " | soft"
	}
	return s
}

// keyParts splits a store key (see keyFor and variantKey) into the
// normalized host and the target as keyed.
func keyParts(key string) (host, target string) {
	key = strings.TrimPrefix(key, "https://")
	if i := strings.IndexByte(key, 0); i >= 0 {
		key = key[:i]
	}
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i], key[i:]
	}
	return key, ""
}

// matches reports whether the ban affects the entry e at key, whatever
// their times. A vary index is never affected: its variants are.
func (b *ban) matches(key string, e *store.Entry) bool {
	if e.IsVaryIndex() {
		return false
	}
	host, target := keyParts(key)
	if b.hosts != nil && !slices.Contains(b.hosts, host) {
		return false
	}
	for i := range b.conds {
		c := &b.conds[i]
		var v string
		switch c.field {
		case banURL:
			v = target
		case banHost:
			v = host
		default:
			v = e.Field(c.header)
		}
		var ok bool
		switch c.op {
		case opEq:
			ok = v == c.arg
		case opNe:
			ok = v != c.arg
		case opMatch:
			ok = c.re.MatchString(v)
		case opNo:
			ok = !c.re.MatchString(v)
		case opPrefix:
			ok = strings.HasPrefix(v, c.arg)
		}
		if !ok {
			return false
		}
	}
	return true
}

// banList is the active bans, oldest first.
type banList struct {
	list atomic.Pointer[[]*ban] // copy on write: read without a lock

	mu       sync.Mutex // guards writes to list, and sweeping
	sweeping bool       // a sweeper goroutine runs
}

// active returns the active bans, oldest first; the slice is not changed.
func (l *banList) active() []*ban {
	if p := l.list.Load(); p != nil {
		return *p
	}
	return nil
}

// add appends bs, all or none, each dropping the bans it supersedes (the
// same conditions and hosts, and soft unless it is too: it is newer, so
// affects all they affect). It refuses them with ErrTooManyBans when
// more than max bans would remain.
func (l *banList) add(bs []*ban, max int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := slices.Clone(l.active())
	for _, b := range bs {
		next = slices.DeleteFunc(next, func(o *ban) bool { return o.id == b.id && (o.soft || !b.soft) })
		// The list stays in time order (verdict stops at the first ban
		// older than the entry): a ban stamped before one that a
		// concurrent purge added first takes its time, which only
		// widens what it affects.
		if len(next) > 0 && next[len(next)-1].at > b.at {
			b.at = next[len(next)-1].at
		}
		next = append(next, b)
	}
	if len(next) > max {
		return ErrTooManyBans
	}
	l.list.Store(&next)
	return nil
}

// retire removes the bans in done from the list.
func (l *banList) retire(done []*ban) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.active()
	next := make([]*ban, 0, len(old))
	for _, b := range old {
		if !slices.Contains(done, b) {
			next = append(next, b)
		}
	}
	l.list.Store(&next)
}

// verdict checks the entry e at key against bans (oldest first) made
// after its response arrived: hit when one affects it, soft when every
// one that does is soft.
func verdict(bans []*ban, key string, e *store.Entry) (hit, soft bool) {
	if len(bans) == 0 || e.IsVaryIndex() {
		return false, false
	}
	t := e.ResponseTime().UnixNano()
	soft = true
	for i := len(bans) - 1; i >= 0 && bans[i].at > t; i-- {
		if bans[i].matches(key, e) {
			hit, soft = true, soft && bans[i].soft
		}
	}
	return hit, hit && soft
}

// unbanned applies the active bans to the entry e just looked up at key
// in s: it returns e, nil when a ban removed it, or the copy a soft ban
// marked stale. The hit path pays one atomic load while there are no
// bans.
func (h *Handler) unbanned(s tier, key string, e *store.Entry) *store.Entry {
	if e == nil {
		return nil
	}
	bans := h.bans.active()
	if len(bans) == 0 {
		return e
	}
	hit, soft := verdict(bans, key, e)
	if !hit {
		return e
	}
	next, applied := h.applyBan(s, key, e, soft)
	if applied {
		h.metrics.banned.WithLabelValues("lookup").Inc()
	}
	return next
}

// applyBan removes the entry e at key in s, or (soft) stores a copy marked
// stale, and returns what is left there: nil or the stale copy. A soft
// ban leaves an entry that is stale already as it is. On disk a soft ban
// removes too, as a soft purge does there (an entry on disk is not
// rewritten); the removal is written in the background.
func (h *Handler) applyBan(s tier, key string, e *store.Entry, soft bool) (*store.Entry, bool) {
	if d, ok := s.(*store.Disk); ok {
		if d.Peek(key) == e {
			d.Supersede(key)
			return nil, true
		}
		return nil, false
	}
	m := s.(*store.Store)
	if !soft {
		if m.Peek(key) == e {
			return nil, m.Remove(key)
		}
		return nil, false
	}
	now := h.now()
	age := e.CurrentAge(now)
	if age >= e.Lifetime() {
		return e, false
	}
	stale := e.Clone()
	stale.SetLifetime(age)
	if !m.ReplaceIf(key, e, stale) {
		return e, false
	}
	return stale, true
}

// addBans makes bans at once (all or none) and starts the sweeper if it
// is not running.
func (h *Handler) addBans(bs []*ban) error {
	if len(bs) == 0 {
		return nil
	}
	if err := h.bans.add(bs, h.purgeCfg.Load().MaxBans); err != nil {
		h.metrics.bansRefused.Add(float64(len(bs)))
		return err
	}
	h.metrics.bansAdded.Add(float64(len(bs)))
	h.startSweeper()
	return nil
}

// startSweeper starts the ban sweeper unless it runs. It runs while there
// are bans, and ends with the handler.
func (h *Handler) startSweeper() {
	h.bans.mu.Lock()
	if h.bans.sweeping {
		h.bans.mu.Unlock()
		return
	}
	h.bans.sweeping = true
	h.bans.mu.Unlock()
	if !h.background(h.sweepLoop) {
		h.bans.mu.Lock()
		h.bans.sweeping = false
		h.bans.mu.Unlock()
	}
}

// sweepLoop sweeps every purge.ban_sweep_interval until no ban is left or
// the handler closes. Waiting before the first pass lets a burst of bans
// share one pass.
func (h *Handler) sweepLoop() {
	for {
		t := time.NewTimer(h.purgeCfg.Load().BanSweepInterval)
		select {
		case <-h.ctx.Done():
			t.Stop()
			h.bans.mu.Lock()
			h.bans.sweeping = false
			h.bans.mu.Unlock()
			return
		case <-t.C:
		}
		h.SweepBans()
		h.bans.mu.Lock()
		if len(h.bans.active()) == 0 {
			h.bans.sweeping = false
			h.bans.mu.Unlock()
			return
		}
		h.bans.mu.Unlock()
	}
}

// sweepBatch is how many entries a sweep checks between looks at whether
// the handler is closing.
const sweepBatch = 1024

// SweepBans checks every stored entry against the active bans now,
// removing (or marking stale) what they affect, and retires the bans
// that were active when it began; it returns how many entries it
// changed. The background sweeper calls it; it is exported for tests
// and tools that want a ban applied in full at once.
func (h *Handler) SweepBans() int {
	bans := h.bans.active()
	if len(bans) == 0 {
		return 0
	}
	n := 0
	tiers := []tier{h.store, h.hot}
	if h.disk != nil {
		tiers = append(tiers, h.disk)
	}
	for _, s := range tiers {
		keys := s.Keys()
		for i, key := range keys {
			if i%sweepBatch == 0 && h.ctx.Err() != nil {
				return n // closing: the bans stay, nothing is retired
			}
			e := s.Peek(key)
			if e == nil {
				continue
			}
			if hit, soft := verdict(bans, key, e); hit {
				if _, applied := h.applyBan(s, key, e, soft); applied {
					n++
				}
			}
		}
	}
	h.bans.retire(bans)
	h.metrics.banned.WithLabelValues("sweep").Add(float64(n))
	return n
}

// Bans returns how many bans are active and describes the newest n of
// them, newest first (for /status).
func (h *Handler) Bans(n int) map[string]any {
	bans := h.bans.active()
	newest := make([]string, 0, min(n, len(bans)))
	for i := len(bans) - 1; i >= 0 && len(newest) < n; i-- {
		newest = append(newest, bans[i].String())
	}
	return map[string]any{"active": len(bans), "newest": newest}
}
