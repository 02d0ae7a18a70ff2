package edge

import (
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/meridiancdn/meridian/edge/compress"
	"github.com/meridiancdn/meridian/edge/store"
)

// On-the-fly compression (site compression, package edge/compress).
//
// On a site that compresses, the edge chooses one coding per request
// (compress.Coder.Negotiate; identity for a Range request, which is
// answered from the identity variant) and a cacheable request's
// Accept-Encoding becomes exactly that coding, for the secondary key and
// for the fill alike (normalizedAcceptEncoding). A fill adapts what the
// origin sent to that coding as it streams by (transcode): it compresses
// a compressible identity body, decodes a body the client did not ask
// for, or both; and it marks every response whose body depends on the
// coding with Vary: Accept-Encoding, so that it is stored under a vary
// index with one variant per coding — each compressed once, by the one
// fill of its key (coalesced as any fill), and served as stored
// afterwards by every front, the fast one included (lookupHit). A
// transformed variant's ETag is suffixed with its coding, so that
// If-None-Match works per variant; the suffix is taken off again for
// the origin when the variant is revalidated.

// codingOf is the coding a request normalized for a compressing site
// asks for (see normalizedAcceptEncoding).
func codingOf(r *http.Request) compress.Coding {
	if v := r.Header["Accept-Encoding"]; len(v) == 1 {
		if c, ok := compress.ParseCoding(v[0]); ok {
			return c
		}
	}
	return compress.Identity
}

// negotiated is the coding st gives r: identity for a Range request
// (ranges are served from the identity variant) and for a request with
// Cache-Control: no-transform, else what the client accepts first among
// the site's encodings.
//
// RFC 9111 §5.2.1.6: with no-transform "the client is asking for
// intermediaries to avoid transforming the content, as defined in
// Section 7.7 of [HTTP]", and a content coding the edge applies changes
// the content (RFC 9110 §7.7 exempts transfer codings only). An ask, not
// the MUST NOT of the response directive: the edge honours it by never
// compressing for such a request, which gets the identity variant, as
// the origin sends it to a client that asks for identity. (An origin
// that sends a coding even then has its body decoded for the identity
// variant, which every identity client shares.)
func (st *site) negotiated(r *http.Request) compress.Coding {
	if r.Header["Range"] != nil || noTransform(r.Header["Cache-Control"]) {
		return compress.Identity
	}
	return st.coder.Negotiate(r.Header["Accept-Encoding"])
}

// withCoding returns r with its Accept-Encoding set to the coding st
// gives it: a shallow copy unless it says exactly that already.
func withCoding(r *http.Request, st *site) *http.Request {
	c := st.negotiated(r).String()
	if v := r.Header["Accept-Encoding"]; len(v) == 1 && v[0] == c {
		return r
	}
	r2 := *r
	r2.Header = maps.Clone(r.Header)
	r2.Header["Accept-Encoding"] = []string{c}
	return &r2
}

// codingFlightKey is the key under which a cold object's fills for one
// coding coalesce, before a vary index says where its variants go: the
// br clients of a new object share one fill (one compression), the
// identity clients another.
func codingFlightKey(primary string, c compress.Coding) string {
	return primary + "\x00coding\x00" + c.String()
}

// transcode adapts a fill's response to the coding its request asks for
// (out's Accept-Encoding, set by withCoding) on a compressing site: it
// compresses a compressible identity 200, decodes a body in a coding the
// client did not ask for (and compresses it again if it may), and marks
// every response whose body depends on the coding with Vary:
// Accept-Encoding. hdr, the fields the entry is made of, and resp.Header
// (what a pass streams) are changed alike; resp.Body becomes the adapted
// body, read as upstream's arrives. A response that says no-transform,
// a status other than 200, or a coding the edge cannot read go as
// upstream sent them.
func (st *site) transcode(out *http.Request, resp *http.Response, hdr http.Header) {
	if st.coder == nil || resp.StatusCode != http.StatusOK {
		return
	}
	if noTransform(hdr["Cache-Control"]) {
		return
	}
	ce := strings.TrimSpace(hdr.Get("Content-Encoding"))
	have, known := compress.ParseCoding(ce)
	if !known || len(hdr["Content-Encoding"]) > 1 {
		return // deflate, a list of codings, ...: as sent
	}
	want := codingOf(out)
	// A compressed body's length says little of its decoded size: only
	// max_bytes bounds it.
	length := resp.ContentLength
	if have != compress.Identity && length <= st.coder.Config().MaxBytes {
		length = -1
	}
	eligible := st.coder.Compressible(hdr.Get("Content-Type"), length)
	if have == compress.Identity && !eligible {
		return // the same body for everyone: no variants
	}
	for _, h := range []http.Header{hdr, resp.Header} {
		addVary(h, "Accept-Encoding")
	}
	// A body the origin compressed goes to a client that asked for
	// another coding decoded, and compressed again when its type and
	// size are worth it.
	target := compress.Identity
	if eligible {
		target = want
	}
	if want == have || target == have {
		return // it is the variant asked for already
	}
	// Decoding is bounded (compression.max_decoded_bytes,
	// max_decode_ratio): a bomb fails the fill's body read, so the
	// response is cut off and never stored.
	body, err := st.coder.Decode(have, resp.Body)
	if err == nil {
		var enc io.ReadCloser
		if enc, err = st.coder.Encode(target, body); err == nil {
			body = enc
		}
	}
	if err != nil {
		return // cannot happen for the codings ParseCoding knows
	}
	resp.Body = body
	resp.ContentLength = -1
	for _, h := range []http.Header{hdr, resp.Header} {
		if target == compress.Identity {
			delete(h, "Content-Encoding")
		} else {
			h["Content-Encoding"] = []string{target.String()}
		}
		delete(h, "Content-Length")
		// Digests of the content change with its coding.
		delete(h, "Content-Md5")
		delete(h, "Content-Digest")
		if tag := h.Get("Etag"); tag != "" {
			if t, ok := suffixETag(tag, target); ok {
				h["Etag"] = []string{t}
			} else {
				delete(h, "Etag")
			}
		}
	}
}

// noTransform reports whether Cache-Control has no-transform (RFC 9111
// §5.2.2.6): an intermediary must not change the content.
func noTransform(cc []string) bool {
	for _, line := range cc {
		for item := range strings.SplitSeq(line, ",") {
			name, _, _ := strings.Cut(item, "=")
			if strings.EqualFold(strings.TrimSpace(name), "no-transform") {
				return true
			}
		}
	}
	return false
}

// addVary adds name to h's Vary unless it is named there (or Vary is *).
func addVary(h http.Header, name string) {
	for _, line := range h["Vary"] {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "*" || strings.EqualFold(item, name) {
				return
			}
		}
	}
	h["Vary"] = append(h["Vary"], name)
}

// suffixETag returns an entity tag for the variant of tag's
// representation in coding c: the opaque part suffixed with "-" and the
// coding, its weakness kept ("abc" → "abc-br"). ok is false for a tag
// that is not an entity-tag.
func suffixETag(tag string, c compress.Coding) (string, bool) {
	weak := strings.HasPrefix(tag, "W/")
	opaque := strings.TrimPrefix(tag, "W/")
	if len(opaque) < 2 || opaque[0] != '"' || opaque[len(opaque)-1] != '"' || strings.ContainsRune(opaque[1:len(opaque)-1], '"') {
		return "", false
	}
	t := opaque[:len(opaque)-1] + "-" + c.String() + `"`
	if weak {
		t = "W/" + t
	}
	return t, true
}

// unsuffixETag undoes suffixETag for an entry whose coding is c: the
// origin's own tag, to revalidate with. A tag without the suffix is the
// origin's already.
func unsuffixETag(tag string, c compress.Coding) string {
	suffix := "-" + c.String() + `"`
	if strings.HasSuffix(tag, suffix) {
		return tag[:len(tag)-len(suffix)] + `"`
	}
	return tag
}

// entryCoding is the coding of a response with these fields: identity
// when it has no Content-Encoding.
func entryCoding(ce string) compress.Coding {
	c, ok := compress.ParseCoding(ce)
	if !ok {
		return compress.Identity
	}
	return c
}

// validatorFor is the entity tag a fill sends upstream to revalidate the
// stale entry whose tag is etag and Content-Encoding ce: on a
// compressing site, the origin's tag (see unsuffixETag).
func (st *site) validatorFor(etag, ce string) string {
	if st.coder == nil || etag == "" {
		return etag
	}
	return unsuffixETag(etag, entryCoding(ce))
}

// refreshed fixes the fields of a stale variant refreshed by a 304
// (merged: its fields updated with the 304's): the origin's new tag gets
// the variant's suffix again, and Vary keeps Accept-Encoding, so that
// the refreshed variant is told apart from the others as before.
func (st *site) refreshed(staleTag string, merged http.Header) {
	if st.coder == nil {
		return
	}
	c := entryCoding(merged.Get("Content-Encoding"))
	tag := merged.Get("Etag")
	if staleTag == "" || tag == "" || unsuffixETag(staleTag, c) == staleTag || unsuffixETag(tag, c) != tag {
		return // not a variant the edge made, or tagged already
	}
	if t, ok := suffixETag(tag, c); ok {
		merged["Etag"] = []string{t}
	}
	addVary(merged, "Accept-Encoding")
}

// appendCodingVariantKey appends to dst the store key of the variant for
// coding c under a vary index of generation gen at primary that varies
// on Accept-Encoding alone: variantKey(primary, gen, SecondaryKey) of a
// request normalized to c, without allocating.
func appendCodingVariantKey(dst []byte, primary string, gen uint64, c compress.Coding) []byte {
	dst = append(dst, primary...)
	dst = append(dst, 0)
	dst = strconv.AppendUint(dst, gen, 10)
	dst = append(dst, 0)
	dst = append(dst, "Accept-Encoding:"...)
	dst = append(dst, c.String()...)
	return append(dst, '\n')
}

// isCodingVariantKey reports whether key is the store key of coding c's
// variant under a vary index on Accept-Encoding alone
// (appendCodingVariantKey).
func isCodingVariantKey(key string, c compress.Coding) bool {
	const field = "\x00Accept-Encoding:"
	cs := c.String()
	return len(key) > len(field)+len(cs)+1 && strings.HasSuffix(key, "\n") &&
		key[len(key)-1-len(cs)-len(field):len(key)-1] == field+cs
}

// varyOnCodingOnly reports whether a vary index's fields are
// Accept-Encoding alone.
func varyOnCodingOnly(fields []string) bool {
	return len(fields) == 1 && fields[0] == "Accept-Encoding"
}

// lookupCoded is lookup for a request that a compressing site gives
// coding c: a vary index on Accept-Encoding alone (every variant the
// edge makes) is resolved to c's variant directly, without a normalized
// copy of the request (req is called only for other vary indexes).
func (h *Handler) lookupCoded(primary string, c compress.Coding, req func() *http.Request) (key string, e *store.Entry, varyMiss bool) {
	return h.lookupTiers(primary, func(s tier) (string, *store.Entry, bool) { return h.lookupInCoded(s, primary, c, req) })
}

func (h *Handler) lookupInCoded(s tier, primary string, c compress.Coding, req func() *http.Request) (string, *store.Entry, bool) {
	idx := s.Get(primary)
	fields, gen, isIndex := idx.VaryIndex()
	if !isIndex || !varyOnCodingOnly(fields) {
		return h.lookupIn(s, primary, req)
	}
	var buf [256]byte
	key := string(appendCodingVariantKey(buf[:0], primary, gen, c))
	v := h.unbanned(s, key, s.Get(key))
	return key, v, v == nil
}
