package edge

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/meridiancdn/meridian/edge/store"
)

// dateCache holds the Date field values of entries that keep their Date as
// a number (store.Entry.CompactDateUnix), formatted, one string per second
// of date: hits on entries stored in the same second share it, so that a
// hit neither formats its Date nor allocates for it, and no entry keeps a
// formatted copy of its own (an entry's hit stamp is kept small, see
// store.Stamp). A slot holds the latest second that fell on it; a miss
// formats the value again.
type dateCache struct {
	slots [64]atomic.Pointer[formattedDate]
}

// formattedDate is one second of date and its IMF-fixdate.
type formattedDate struct {
	secs  int64
	value string
}

// value returns the IMF-fixdate of secs (Unix seconds).
func (c *dateCache) value(secs int64) string {
	slot := &c.slots[uint64(secs)%uint64(len(c.slots))]
	if d := slot.Load(); d != nil && d.secs == secs {
		return d.value
	}
	d := &formattedDate{secs: secs, value: time.Unix(secs, 0).UTC().Format(http.TimeFormat)}
	slot.Store(d)
	return d.value
}

// dateOf returns e's Date value when e keeps it as a number, from h's
// cache; "" when e keeps its Date (if any) in a field block.
func (h *Handler) dateOf(e *store.Entry) string {
	secs, ok := e.CompactDateUnix()
	if !ok {
		return ""
	}
	return h.dates.value(secs)
}
