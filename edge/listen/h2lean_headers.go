package listen

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A request's header block in one HEADERS frame (END_HEADERS set, the
// usual case) is decoded here rather than by the Framer's
// ReadMetaHeaders, into a MetaHeadersFrame and a field slice that the
// connection reuses: x/net's readMetaFrame allocates the frame, its
// decoder callback and the variables it shares, and grows the field
// slice anew for every block, 7 of the 10 allocations of a 1 KiB hit. The
// decoding and every check are x/net's own, in its order, with the same
// errors' codes (readMetaFrame in x/net/http2/frame.go, v0.62.0): the
// connection's hpack decoder, the header list size (a list past it is
// truncated, the relay then has x/net's server answer 431), a fragment
// far past it ending the connection, invalid names and values and
// pseudo-fields after regular ones a stream error, the pseudo-fields
// checked as checkPseudos checks them. A block with CONTINUATION frames
// is still the Framer's. FuzzH2Differential and the hostile suite hold
// the lean front to x/net's server on both.

// errLeanInvalidField and friends are the causes of the stream errors a
// header block gets; only their codes reach the client, as with x/net.
var (
	errLeanInvalidField  = errors.New("http2: invalid header field")
	errLeanPseudoAfter   = errors.New("http2: pseudo header field after regular")
	errLeanPseudoInvalid = errors.New("http2: invalid pseudo header fields")
)

// blockDecoder is a leanConn's state for decoding one header block
// (serve's only).
type blockDecoder struct {
	dec         *hpack.Decoder // the Framer's ReadMetaHeaders
	emit        func(hpack.HeaderField)
	mh          http2.MetaHeadersFrame
	fields      []hpack.HeaderField
	sawRegular  bool
	invalid     error
	remain      uint32 // of the header list size, for fields but trailer
	trailRemain uint32 // for the trailer field, as x/net counts it
	truncated   bool
}

// readFrame reads the next frame as c.fr.ReadFrame does, a one-frame
// header block decoded by decodeBlock.
func (c *leanConn) readFrame() (http2.Frame, error) {
	c.blocks.release()
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return nil, err
	}
	if fh.Type != http2.FrameHeaders || !fh.Flags.Has(http2.FlagHeadersEndHeaders) {
		return c.fr.ReadFrameForHeader(fh)
	}
	c.fr.ReadMetaHeaders = nil
	f, err := c.fr.ReadFrameForHeader(fh)
	c.fr.ReadMetaHeaders = c.blocks.dec
	if err != nil {
		return f, err
	}
	return c.decodeBlock(f.(*http2.HeadersFrame))
}

// keptFields is the most fields a connection's blockDecoder keeps room
// for between header blocks.
const keptFields = 32

// release lets go of the last block's fields before the connection
// waits for its next frame: the strings they hold (up to the header list
// limit) are not pinned for as long as the connection lives, nor a field
// slice grown for one long list.
func (b *blockDecoder) release() {
	if len(b.fields) == 0 && b.mh.HeadersFrame == nil {
		return
	}
	clear(b.fields)
	b.fields = b.fields[:0]
	if cap(b.fields) > keptFields {
		b.fields = nil
	}
	b.mh = http2.MetaHeadersFrame{}
}

// decodeBlock decodes hf's header block, whole in hf, as x/net's
// readMetaFrame does. The MetaHeadersFrame is valid until the next
// frame is read.
func (c *leanConn) decodeBlock(hf *http2.HeadersFrame) (http2.Frame, error) {
	b := &c.blocks
	if b.emit == nil {
		b.emit = c.emitField
	}
	limit := c.fr.MaxHeaderListSize
	if limit == 0 {
		limit = 16 << 20 // x/net's default
	}
	b.fields = b.fields[:0]
	b.sawRegular, b.invalid, b.truncated = false, nil, false
	b.remain, b.trailRemain = limit, limit
	b.mh = http2.MetaHeadersFrame{HeadersFrame: hf}
	dec := b.dec
	dec.SetEmitEnabled(true)
	maxString := int(limit)
	if maxString < 0 {
		maxString = 0
	}
	dec.SetMaxStringLength(maxString)
	dec.SetEmitFunc(b.emit)
	frag := hf.HeaderBlockFragment()
	if int64(len(frag)) > 2*int64(b.remain+b.trailRemain) {
		return &b.mh, http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if _, err := dec.Write(frag); err != nil {
		return &b.mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if err := dec.Close(); err != nil {
		return &b.mh, http2.ConnectionError(http2.ErrCodeCompression)
	}
	b.mh.Fields, b.mh.Truncated = b.fields, b.truncated
	if b.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: b.invalid}
	}
	if !pseudosValid(b.mh.PseudoFields()) {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: errLeanPseudoInvalid}
	}
	return &b.mh, nil
}

// emitField takes one decoded field, as readMetaFrame's callback does.
func (c *leanConn) emitField(hf hpack.HeaderField) {
	b := &c.blocks
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = errLeanInvalidField
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.invalid = errLeanPseudoAfter
		}
	} else {
		b.sawRegular = true
		if !validWireName(hf.Name) {
			b.invalid = errLeanInvalidField
		}
	}
	if b.invalid != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	remain := &b.remain
	var size uint32
	if hf.Name == "trailer" {
		remain = &b.trailRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	} else {
		size = hf.Size()
	}
	if size > *remain {
		b.dec.SetEmitEnabled(false)
		b.truncated = true
		b.remain, b.trailRemain = 0, 0
		return
	}
	*remain -= size
	b.fields = append(b.fields, hf)
}

// validWireName is x/net's validWireHeaderFieldName: a token in lower
// case.
func validWireName(v string) bool {
	if len(v) == 0 {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// pseudosValid is x/net's checkPseudos: known pseudo-fields, none twice,
// not those of a request and a response together.
func pseudosValid(pf []hpack.HeaderField) bool {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return false
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return false
			}
		}
	}
	return !(isRequest && isResponse)
}
