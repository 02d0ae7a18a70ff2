package edge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/meridiancdn/meridian/edge/policy"
	"github.com/meridiancdn/meridian/edge/store"
)

// StoredAnswerWriter is a ResponseWriter that also takes a whole answer
// written from a stored entry in wire form (the fast HTTP/1.1 front's):
// ServeHTTP then hands it the entry's sealed blocks, as the hit contract
// does (Hit.AppendHead), instead of setting every field in the header map
// for the writer to sort and write again. A miss whose fill stored a
// small answer is written so: the header map, its snapshot and its sort
// were about 6 % of a miss's CPU.
//
// WriteStored writes a as the whole answer (AppendHead, then Body) and
// reports true; or reports false, having written nothing, when the header
// is written already or the handler set fields in the map, which the
// answer would then leave out. The writer adds its own connection fields
// (Connection: close) and the blank line that ends the header.
type StoredAnswerWriter interface {
	http.ResponseWriter
	WriteStored(a *StoredAnswer) bool
}

// StoredAnswer is an answer written from a sealed entry whose body is
// whole in memory: its status line and blocks, Content-Length, Age and
// Cache-Status (this answer's, not a hit's), then the fields net/http
// adds (appendTypeAndDate). It is what serveEntry would write for the
// same request, field for field (TestStoredAnswerMatchesServeEntry).
type StoredAnswer struct {
	e           *store.Entry
	body        []byte // the whole body (a HEAD's too: its Content-Length)
	age         int64  // whole seconds
	cacheStatus string
	date        string // the entry's Date kept as a number (Handler.dateOf)
	head        bool   // a HEAD: no body is sent
}

// Status is the answer's status code.
func (a *StoredAnswer) Status() int { return a.e.Status() }

// Body is the body to send after the header: the stored body (shared: it
// must not be changed), or nil for a HEAD.
func (a *StoredAnswer) Body() []byte {
	if a.head {
		return nil
	}
	return a.body
}

// ContentLength is the answer's Content-Length (a HEAD's too).
func (a *StoredAnswer) ContentLength() int64 { return int64(len(a.body)) }

// AppendHead appends the answer's status line and header fields, without
// the blank line that ends them, as Hit.AppendHead does for a hit.
// dateLine gives a whole "Date: ...\r\n" line of now; it is called only
// for an entry stored without a Date.
func (a *StoredAnswer) AppendHead(b []byte, dateLine func() []byte) []byte {
	b = appendStatusAndBlocks(b, a.e)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(a.body)), 10)
	b = append(b, "\r\nAge: "...)
	b = strconv.AppendInt(b, a.age, 10)
	b = append(b, "\r\nCache-Status: "...)
	b = append(b, a.cacheStatus...)
	b = append(b, "\r\n"...)
	return appendTypeAndDate(b, a.e, a.Body(), a.date, dateLine)
}

// serveStored answers r from e as a StoredAnswer when w takes one and
// the answer is the entry as stored: e sealed, its body whole in memory
// (body, the fill's, complete; or the stored one), a status with a body,
// a GET or HEAD that no precondition or Range changes, for a client (a
// peer gets the surrogate keys too), with an Age. It reports false,
// having written nothing, for everything else, which serveEntry writes
// field by field. cs and age are serveEntry's.
func (h *Handler) serveStored(w http.ResponseWriter, r *http.Request, e *store.Entry, body *growingBody, age time.Duration, cs cacheStatus) bool {
	sw, ok := w.(StoredAnswerWriter)
	if !ok || age < 0 || !e.Sealed() || e.OnDisk() || !bodyAllowed(e.Status()) ||
		r.Method != http.MethodGet && r.Method != http.MethodHead || isFromPeer(r.Context()) {
		return false
	}
	if e.Status() == http.StatusOK {
		// (serveEntry checks the preconditions for a 204 too, which has
		// no body: not here.)
		if r.Header.Get("Range") != "" || policy.HasPreconditions(r.Header) && policy.CheckPreconditions(r.Method, r.Header, e.ETag(), e.LastModified()) != 0 {
			return false
		}
	}
	whole := e.Body()
	if body != nil {
		size, b, complete := body.state()
		if !complete || size != int64(len(b)) {
			return false
		}
		whole = b
	}
	a := &StoredAnswer{e: e, body: whole, age: int64(age / time.Second), date: h.dateOf(e), head: r.Method == http.MethodHead,
		cacheStatus: appendCacheStatus(e.Field("Cache-Status"), h.cfg.Name, cs)}
	if !sw.WriteStored(a) {
		return false
	}
	h.countServed(cs)
	h.delivered(h.countersOf(r), e, classOf(cs), r.ProtoMajor, len(a.Body()), nil)
	return true
}
