package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Memory bounds of the codecs. Windows stay within what every HTTP
// client decodes: zstd's 8 MiB (RFC 9659 §3), brotli's default 4 MiB.
const (
	brotliWindowBits = 20      // 1 MiB: the encoder's window (ngx_brotli's default is 512 KiB)
	zstdWindow       = 4 << 20 // the encoder's window
	zstdMaxWindow    = 8 << 20 // the largest window a zstd body from upstream may ask for (RFC 9659)
	readChunk        = 32 << 10
)

// encoder is what the three compressors have in common.
type encoder interface {
	io.WriteCloser
	Reset(io.Writer)
}

// codecPools keep a Coder's encoders for reuse: a zstd encoder costs
// about a megabyte to set up, a brotli one some hundreds of kilobytes.
type codecPools struct {
	gzip, brotli, zstd sync.Pool
}

func (c *Coder) getEncoder(cd Coding, dst io.Writer) (encoder, error) {
	var p *sync.Pool
	switch cd {
	case Gzip:
		p = &c.pools.gzip
	case Brotli:
		p = &c.pools.brotli
	case Zstd:
		p = &c.pools.zstd
	default:
		return nil, fmt.Errorf("compress: cannot encode %s", cd)
	}
	if e, ok := p.Get().(encoder); ok {
		e.Reset(dst)
		return e, nil
	}
	switch cd {
	case Gzip:
		return gzip.NewWriterLevel(dst, c.cfg.GzipLevel)
	case Brotli:
		return brotli.NewWriterOptions(dst, brotli.WriterOptions{Quality: c.cfg.BrotliLevel, LGWin: brotliWindowBits}), nil
	default:
		return zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(c.cfg.ZstdLevel)),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true))
	}
}

func (c *Coder) putEncoder(cd Coding, e encoder) {
	e.Reset(io.Discard) // drop the reference to the last body's buffer
	switch cd {
	case Gzip:
		c.pools.gzip.Put(e)
	case Brotli:
		c.pools.brotli.Put(e)
	case Zstd:
		c.pools.zstd.Put(e)
	}
}

// Encode returns src compressed with cd, as it is read: a reader pulls
// from src only as much as it needs to produce output, so a body is never
// held whole. Closing it closes src. Encoding to Identity returns src.
func (c *Coder) Encode(cd Coding, src io.ReadCloser) (io.ReadCloser, error) {
	if cd == Identity {
		return src, nil
	}
	r := &encReader{src: src, c: c, cd: cd, in: make([]byte, readChunk)}
	e, err := c.getEncoder(cd, &r.out)
	if err != nil {
		return nil, err
	}
	r.enc = e
	return r, nil
}

// encReader compresses src as it is read.
type encReader struct {
	src io.ReadCloser
	c   *Coder
	cd  Coding
	in  []byte

	mu   sync.Mutex // guards what follows: Read against Close
	enc  encoder    // nil once given back
	out  bytes.Buffer
	done bool
	err  error
}

func (r *encReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.out.Len() == 0 {
		switch {
		case r.err != nil:
			return 0, r.err
		case r.done:
			return 0, io.EOF
		case r.enc == nil:
			return 0, io.ErrClosedPipe
		}
		n, err := r.src.Read(r.in)
		if n > 0 {
			if _, werr := r.enc.Write(r.in[:n]); werr != nil {
				r.err = fmt.Errorf("%s encoder: %w", r.cd, werr)
				continue
			}
		}
		switch {
		case err == io.EOF:
			if cerr := r.enc.Close(); cerr != nil {
				r.err = fmt.Errorf("%s encoder: %w", r.cd, cerr)
				continue
			}
			r.done = true
			r.release()
		case err != nil:
			r.err = err
		}
	}
	n, _ := r.out.Read(p)
	return n, nil
}

// release gives the encoder back. The caller holds mu.
func (r *encReader) release() {
	if r.enc != nil {
		r.c.putEncoder(r.cd, r.enc)
		r.enc = nil
	}
}

// Close closes src first (which ends a Read waiting on it), then gives
// the encoder back.
func (r *encReader) Close() error {
	err := r.src.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		// A body cut short: the encoder's state is of no use; a fresh
		// one is made next time rather than trusting a Reset mid-stream.
		r.enc = nil
	}
	r.release()
	return err
}

// Decode returns src decoded from cd, as it is read, without bounds
// (see Coder.Decode). The decoder starts at the first Read, so that a
// malformed body is an error reading it. Closing it closes src.
// Decoding Identity returns src.
func Decode(cd Coding, src io.ReadCloser) (io.ReadCloser, error) {
	return decode(cd, src, 0, 0)
}

// Decode is the package's Decode within the coder's bounds: reading more
// than max_decoded_bytes, or more than max_decode_ratio bytes per byte
// read from src once past the first MiB, fails with an error that wraps
// ErrDecodeLimit (a decompression bomb).
func (c *Coder) Decode(cd Coding, src io.ReadCloser) (io.ReadCloser, error) {
	return decode(cd, src, c.cfg.MaxDecodedBytes, c.cfg.MaxDecodeRatio)
}

// ErrDecodeLimit is wrapped by the error of a body that decodes to more
// than the coder's bounds allow.
var ErrDecodeLimit = errors.New("decoded body exceeds the decoding limits")

// ratioSlack is what is decoded before MaxDecodeRatio applies: a small
// body may compress well.
const ratioSlack = 1 << 20

func decode(cd Coding, src io.ReadCloser, max, ratio int64) (io.ReadCloser, error) {
	switch cd {
	case Identity:
		return src, nil
	case Gzip, Brotli, Zstd:
		r := &decReader{src: src, cd: cd, max: max, ratio: ratio}
		r.in = &countReader{r: src}
		return r, nil
	}
	return nil, fmt.Errorf("compress: cannot decode %s", cd)
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decReader decodes src as it is read.
type decReader struct {
	src io.ReadCloser
	in  *countReader // src, counted
	cd  Coding
	// max and ratio bound the output (0: unbounded); out counts it.
	max, ratio, out int64

	mu    sync.Mutex
	dec   io.Reader
	close func() // releases the decoder, if it must be
	err   error
}

func (r *decReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	if r.dec == nil {
		switch r.cd {
		case Gzip:
			zr, err := gzip.NewReader(r.in)
			if err != nil {
				r.err = fmt.Errorf("gzip body: %w", err)
				return 0, r.err
			}
			r.dec = zr
		case Brotli:
			r.dec = brotli.NewReader(r.in)
		case Zstd:
			zr, err := zstd.NewReader(r.in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(zstdMaxWindow))
			if err != nil {
				r.err = fmt.Errorf("zstd body: %w", err)
				return 0, r.err
			}
			r.dec, r.close = zr, zr.Close
		}
	}
	if r.max > 0 && int64(len(p)) > r.max-r.out+1 {
		p = p[:r.max-r.out+1] // one byte past the cap tells
	}
	n, err := r.dec.Read(p)
	r.out += int64(n)
	switch {
	case r.max > 0 && r.out > r.max:
		r.err = fmt.Errorf("%s body: %w: more than max_decoded_bytes (%d)", r.cd, ErrDecodeLimit, r.max)
		return 0, r.err
	case r.ratio > 0 && r.out > ratioSlack && r.out > r.ratio*r.in.n:
		r.err = fmt.Errorf("%s body: %w: %d bytes from %d, more than max_decode_ratio (%d)", r.cd, ErrDecodeLimit, r.out, r.in.n, r.ratio)
		return 0, r.err
	}
	if err != nil && err != io.EOF {
		r.err = fmt.Errorf("%s body: %w", r.cd, err)
		return n, r.err
	}
	return n, err
}

// Close closes src (ending a Read waiting on it), then the decoder.
func (r *decReader) Close() error {
	err := r.src.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.close != nil {
		r.close()
		r.close = nil
	}
	if r.err == nil {
		r.err = io.ErrClosedPipe
	}
	return err
}
