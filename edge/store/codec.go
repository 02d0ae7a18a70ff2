package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unique"
)

// The disk tier keeps an entry's data (everything but its body) in a
// record's meta, encoded by appendMeta and read back by decodeMeta: the
// entry's own layout, field by field, so that a warm restart needs no
// re-sealing.
//
//	version          1 byte (metaVersion)
//	status           uint16
//	flags            1 byte
//	respTime         int64, Unix nanoseconds
//	initialAge       int64, nanoseconds
//	lifetime, swr, sie, dateOffset  int32 each
//	key              uvarint length, bytes
//	own block        uvarint length, bytes
//	shared block     uvarint length, bytes
//	gen              uvarint
//	vary, tags       uvarint count, then each a uvarint length and bytes
//	cacheStatus      uvarint length, bytes
//
// Integers are little-endian.

const metaVersion = 1

// maxMetaBytes bounds a record's meta: a sealed entry's key and blocks
// are bounded by the request and response header limits well below it.
const maxMetaBytes = 1 << 20

// appendMeta appends the encoding of a sealed entry's data (or a vary
// index's) to b.
func appendMeta(b []byte, e *Entry) []byte {
	b = append(b, metaVersion)
	b = binary.LittleEndian.AppendUint16(b, e.status)
	b = append(b, byte(e.flags))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.respTime))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.initialAge))
	for _, v := range []int32{e.lifetime, e.swr, e.sie, e.dateOffset} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	b = appendString(b, e.Key())
	b = appendString(b, e.own())
	shared := ""
	if e.Sealed() {
		shared = e.shared.Value()
	}
	b = appendString(b, shared)
	var x extra
	if e.extra != nil {
		x = *e.extra
	}
	b = binary.AppendUvarint(b, x.gen)
	for _, list := range [][]string{x.vary, x.tags} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = appendString(b, s)
		}
	}
	return appendString(b, x.cacheStatus)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errMeta is a meta that does not decode.
var errMeta = errors.New("store: malformed entry meta")

// metaReader reads a meta's fields in order; the first failure sticks.
type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) fixed(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errMeta
		return make([]byte, n)
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errMeta
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) string() string { return string(r.bytes()) }

// bytes is the next length-prefixed field, a slice of the meta.
func (r *metaReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errMeta
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *metaReader) strings() []string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) { // every string takes a byte at least
		r.err = errMeta
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.string()
	}
	return out
}

// decodeMeta rebuilds the entry that appendMeta encoded, without a body.
// It refuses anything that appendMeta cannot have written.
func decodeMeta(b []byte) (*Entry, error) {
	r := &metaReader{b: b}
	if v := r.fixed(1)[0]; r.err == nil && v != metaVersion {
		return nil, fmt.Errorf("store: entry meta version %d, want %d", v, metaVersion)
	}
	e := &Entry{}
	e.status = binary.LittleEndian.Uint16(r.fixed(2))
	e.flags = flags(r.fixed(1)[0])
	e.respTime = int64(binary.LittleEndian.Uint64(r.fixed(8)))
	e.initialAge = time.Duration(binary.LittleEndian.Uint64(r.fixed(8)))
	for _, p := range []*int32{&e.lifetime, &e.swr, &e.sie, &e.dateOffset} {
		*p = int32(binary.LittleEndian.Uint32(r.fixed(4)))
	}
	key := r.bytes()
	own := r.bytes()
	shared := r.bytes()
	var x extra
	x.gen = r.uvarint()
	x.vary = r.strings()
	x.tags = r.strings()
	x.cacheStatus = r.string()
	switch {
	case r.err != nil:
		return nil, r.err
	case len(r.b) != 0:
		return nil, fmt.Errorf("%w: %d bytes left over", errMeta, len(r.b))
	case len(key) == 0 || len(key) > math.MaxUint32:
		return nil, fmt.Errorf("%w: no key", errMeta)
	case e.lifetime < 0 || e.swr < 0 || e.sie < 0:
		return nil, fmt.Errorf("%w: negative freshness", errMeta)
	case x.vary == nil && x.gen != 0:
		return nil, fmt.Errorf("%w: a generation without a vary index", errMeta)
	case x.vary == nil && e.status < 100 || e.status > 999:
		return nil, fmt.Errorf("%w: status %d", errMeta, e.status)
	}
	e.meta = string(key) + string(own) // one allocation
	e.keyLen = uint32(len(key))
	if x.vary == nil { // a vary index has no fields of its own
		e.shared = unique.Make(string(shared))
	} else if len(shared) != 0 || len(own) != 0 {
		return nil, fmt.Errorf("%w: a vary index with header fields", errMeta)
	}
	if x.vary != nil || x.tags != nil || x.cacheStatus != "" {
		e.extra = &x
	}
	return e, nil
}
