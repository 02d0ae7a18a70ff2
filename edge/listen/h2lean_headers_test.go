package listen

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// blockOutcome is what reading one HEADERS frame gave, as the lean front
// uses it: the error's kind and code, and the fields and truncation of
// the header list.
func blockOutcome(f http2.Frame, err error) string {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("stream error %d %v", se.StreamID, se.Code)
	case errors.As(err, &ce):
		return fmt.Sprintf("connection error %v, frame %v", http2.ErrCode(ce), f != nil)
	case err != nil:
		return "error " + err.Error()
	}
	mh := f.(*http2.MetaHeadersFrame)
	return fmt.Sprintf("stream %d end %v truncated %v fields %q", mh.StreamID, mh.StreamEnded(), mh.Truncated, mh.Fields)
}

// readBlocks writes each block as a one-frame HEADERS (END_HEADERS) on
// streams 1, 3, ... and reads them back with read, whose framer is set
// up as the lean front's with a header list limit; it returns what each
// read gave.
func readBlocks(blocks [][]byte, limit uint32, read func(*leanConn) (http2.Frame, error)) []string {
	var wire bytes.Buffer
	w := http2.NewFramer(&wire, nil)
	for i, b := range blocks {
		w.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: b, EndStream: i%2 == 0, EndHeaders: true})
	}
	c := &leanConn{}
	c.fr = http2.NewFramer(nil, &wire)
	c.blocks.dec = hpack.NewDecoder(leanHeaderTable, nil)
	c.fr.ReadMetaHeaders = c.blocks.dec
	c.fr.MaxHeaderListSize = limit
	c.fr.SetReuseFrames()
	var out []string
	for range blocks {
		f, err := read(c)
		out = append(out, blockOutcome(f, err))
		var ce http2.ConnectionError
		if errors.As(err, &ce) || err != nil && !errors.As(err, new(http2.StreamError)) {
			break // the connection ends: nothing more is read
		}
	}
	return out
}

// FuzzLeanBlockDecoder holds decodeBlock to x/net's readMetaFrame: the
// same header blocks, one after another on one connection (so that the
// hpack table each leaves is the next one's), give the same fields,
// truncation and errors.
func FuzzLeanBlockDecoder(f *testing.F) {
	enc := func(fields ...string) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return b.Bytes()
	}
	get := enc(":method", "GET", ":scheme", "https", ":authority", "site.test", ":path", "/obj", "user-agent", "fuzz")
	f.Add(get, enc(":method", "GET", ":scheme", "https", ":authority", "site.test", ":path", "/obj", "user-agent", "fuzz"), uint32(0))
	f.Add(get, get, uint32(60))
	f.Add(enc(":method", "GET", "x", "1", ":path", "/"), get, uint32(0))                          // pseudo after regular
	f.Add(enc(":method", "GET", "X-Up", "1"), get, uint32(0))                                     // upper case name
	f.Add(enc(":method", "GET", "x", "a\x00b"), get, uint32(0))                                   // invalid value
	f.Add(enc(":method", "GET", ":method", "GET"), get, uint32(0))                                // duplicate pseudo
	f.Add(enc(":method", "GET", ":status", "200"), get, uint32(0))                                // request and response
	f.Add(enc(":bogus", "1"), get, uint32(0))                                                     // unknown pseudo
	f.Add(enc(":method", "GET", "trailer", "a, b, c", "x", "yyyyyyyy"), get, uint32(120))         // trailer budget
	f.Add([]byte{0x3f, 0xe1, 0x1f}, get, uint32(0))                                               // size update past the limit
	f.Add([]byte{0x40, 0x85}, get, uint32(0))                                                     // truncated literal
	f.Add(bytes.Repeat([]byte{0x82}, 300), get, uint32(100))                                      // fragment far past the limit
	f.Add(enc(":method", "GET", "cookie", "a=1", "cookie", "b=2"), enc("cookie", "c"), uint32(0)) // table entries reused
	f.Fuzz(func(t *testing.T, a, b []byte, limit uint32) {
		if len(a) > 16000 || len(b) > 16000 {
			return // one frame of the Framer's default size
		}
		blocks := [][]byte{a, b}
		want := readBlocks(blocks, limit, func(c *leanConn) (http2.Frame, error) { return c.fr.ReadFrame() })
		got := readBlocks(blocks, limit, (*leanConn).readFrame)
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d, blocks %x:\nx/net %q\nlean  %q", limit, blocks, want, got)
		}
	})
}

// A connection does not keep a header block's fields while it waits for
// its next frame: a long list (its strings up to the header list limit,
// and the slice grown for it) is let go, whatever comes next.
func TestLeanBlockDecoderLetsGoOfFields(t *testing.T) {
	var block bytes.Buffer
	e := hpack.NewEncoder(&block)
	e.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	for i := range 100 {
		e.WriteField(hpack.HeaderField{Name: fmt.Sprint("x-", i), Value: string(bytes.Repeat([]byte("v"), 1000))})
	}
	var wire bytes.Buffer
	http2.NewFramer(&wire, nil).WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	c := &leanConn{}
	c.fr = http2.NewFramer(nil, &wire)
	c.blocks.dec = hpack.NewDecoder(leanHeaderTable, nil)
	c.fr.ReadMetaHeaders = c.blocks.dec
	c.fr.MaxHeaderListSize = 1 << 20
	f, err := c.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.(*http2.MetaHeadersFrame).Fields); n != 101 {
		t.Fatalf("%d fields decoded, want 101", n)
	}
	if _, err := c.readFrame(); err == nil {
		t.Fatal("a frame read past the end of the input")
	}
	if cap(c.blocks.fields) != 0 || c.blocks.mh.Fields != nil || c.blocks.mh.HeadersFrame != nil {
		t.Fatalf("kept after the block: %d fields of room, frame %v", cap(c.blocks.fields), c.blocks.mh.HeadersFrame != nil)
	}
}
