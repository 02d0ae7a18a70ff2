package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The disk tier's layout was chosen by this benchmark (see the package
// doc): two prototypes of the candidates, reduced to what decides
// between them — storing an object, serving a hit, and loading the index
// of a full disk at start.
//
//   - file per object: each object one file, named by its key's hash,
//     written to a temporary file and renamed; the index is rebuilt at
//     start by reading every file's header;
//   - segment log: objects appended as records to 64 MiB segment files,
//     as Traffic Server's and Varnish MSE's stores do; the index is
//     rebuilt by reading each record's header, skipping the bodies.
//
// go test -run x -bench DiskLayout -benchtime 2000x ./edge/store/

type layout interface {
	put(key string, meta, body []byte) error
	// hit copies the object's body to w.
	hit(key string, w io.Writer) error
	// load rebuilds the index from the directory, as at start.
	load() (int, error)
}

const protoHeader = 4 + 4 + 4 + 8 // magic, meta length, crc, body length

func protoRecord(key string, meta []byte, bodyLen int) []byte {
	h := make([]byte, protoHeader, protoHeader+2+len(key)+len(meta))
	copy(h, "MRD1")
	binary.LittleEndian.PutUint32(h[4:], uint32(2+len(key)+len(meta)))
	binary.LittleEndian.PutUint64(h[12:], uint64(bodyLen))
	h = binary.LittleEndian.AppendUint16(h, uint16(len(key)))
	h = append(h, key...)
	h = append(h, meta...)
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[protoHeader:], crc32.MakeTable(crc32.Castagnoli)))
	return h
}

// fileProto is the file-per-object candidate.
type fileProto struct {
	dir   string
	index map[string]int64 // key → body length
}

func (p *fileProto) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:16])
	return filepath.Join(p.dir, name[:2], name)
}

func (p *fileProto) put(key string, meta, body []byte) error {
	final := p.path(key)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(final), ".tmp-")
	if err != nil {
		return err
	}
	if _, err := f.Write(append(protoRecord(key, meta, len(body)), body...)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	p.index[key] = int64(len(body))
	return os.Rename(f.Name(), final)
}

func (p *fileProto) hit(key string, w io.Writer) error {
	n, ok := p.index[key]
	if !ok {
		return errors.New("miss")
	}
	f, err := os.Open(p.path(key))
	if err != nil {
		return err
	}
	defer f.Close()
	var h [protoHeader]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return err
	}
	if _, err := f.Seek(int64(binary.LittleEndian.Uint32(h[4:])), io.SeekCurrent); err != nil {
		return err
	}
	_, err = io.Copy(w, io.LimitReader(f, n))
	return err
}

func (p *fileProto) load() (int, error) {
	p.index = map[string]int64{}
	subs, err := os.ReadDir(p.dir)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for _, sub := range subs {
		names, err := os.ReadDir(filepath.Join(p.dir, sub.Name()))
		if err != nil {
			return 0, err
		}
		for _, de := range names {
			f, err := os.Open(filepath.Join(p.dir, sub.Name(), de.Name()))
			if err != nil {
				return 0, err
			}
			n, _ := io.ReadFull(f, buf)
			f.Close()
			key, bodyLen, err := protoParse(buf[:n])
			if err != nil {
				return 0, err
			}
			p.index[key] = bodyLen
		}
	}
	return len(p.index), nil
}

func protoParse(h []byte) (key string, bodyLen int64, err error) {
	if len(h) < protoHeader+2 || string(h[:4]) != "MRD1" {
		return "", 0, errors.New("bad header")
	}
	ml := int(binary.LittleEndian.Uint32(h[4:]))
	if len(h) < protoHeader+ml {
		return "", 0, errors.New("short header")
	}
	if crc32.Checksum(h[protoHeader:protoHeader+ml], crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(h[8:]) {
		return "", 0, errors.New("bad checksum")
	}
	kl := int(binary.LittleEndian.Uint16(h[protoHeader:]))
	return string(h[protoHeader+2 : protoHeader+2+kl]), int64(binary.LittleEndian.Uint64(h[12:])), nil
}

// segmentProto is the segment-log candidate.
type segmentProto struct {
	dir   string
	segs  []*os.File
	off   int64 // write offset in the last segment
	index map[string]segLoc
}

type segLoc struct {
	seg       int
	off, size int64 // the body's
}

const protoSegmentBytes = 64 << 20

func (p *segmentProto) put(key string, meta, body []byte) error {
	rec := append(protoRecord(key, meta, len(body)), body...)
	if len(p.segs) == 0 || p.off+int64(len(rec)) > protoSegmentBytes {
		f, err := os.OpenFile(filepath.Join(p.dir, fmt.Sprintf("seg-%06d", len(p.segs))), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		p.segs, p.off = append(p.segs, f), 0
	}
	seg := p.segs[len(p.segs)-1]
	if _, err := seg.WriteAt(rec, p.off); err != nil {
		return err
	}
	p.index[key] = segLoc{seg: len(p.segs) - 1, off: p.off + int64(len(rec)-len(body)), size: int64(len(body))}
	p.off += int64(len(rec))
	return nil
}

func (p *segmentProto) hit(key string, w io.Writer) error {
	loc, ok := p.index[key]
	if !ok {
		return errors.New("miss")
	}
	_, err := io.Copy(w, io.NewSectionReader(p.segs[loc.seg], loc.off, loc.size))
	return err
}

func (p *segmentProto) load() (int, error) {
	p.index = map[string]segLoc{}
	for _, f := range p.segs {
		f.Close()
	}
	p.segs = nil
	names, err := filepath.Glob(filepath.Join(p.dir, "seg-*"))
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	for i, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		p.segs = append(p.segs, f)
		for off := int64(0); ; {
			n, _ := f.ReadAt(buf, off)
			if n == 0 {
				break
			}
			key, bodyLen, err := protoParse(buf[:n])
			if err != nil {
				break // the end of the log, or a torn record
			}
			ml := int64(binary.LittleEndian.Uint32(buf[4:]))
			p.index[key] = segLoc{seg: i, off: off + protoHeader + ml, size: bodyLen}
			off += protoHeader + ml + bodyLen
		}
	}
	return len(p.index), nil
}

func BenchmarkDiskLayout(b *testing.B) {
	meta := bytes.Repeat([]byte("m"), 200) // a sealed entry's key, blocks and numbers
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("b"), size)
		for _, kind := range []string{"file", "segment"} {
			mk := func(dir string) layout {
				if kind == "file" {
					return &fileProto{dir: dir, index: map[string]int64{}}
				}
				return &segmentProto{dir: dir, index: map[string]segLoc{}}
			}
			name := fmt.Sprintf("%s/%dKiB", kind, size>>10)
			b.Run("put/"+name, func(b *testing.B) {
				l := mk(b.TempDir())
				b.SetBytes(int64(size))
				for i := 0; i < b.N; i++ {
					if err := l.put("example.test/object/"+strconv.Itoa(i), meta, body); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("hit/"+name, func(b *testing.B) {
				l := mk(b.TempDir())
				const objects = 256
				for i := range objects {
					if err := l.put("example.test/object/"+strconv.Itoa(i), meta, body); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := l.hit("example.test/object/"+strconv.Itoa(i%objects), io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			})
			if size > 4<<10 {
				continue
			}
			// The index load: b.N objects stored, then read back as at
			// start (the page cache warm: what is measured is the work
			// per object, not the device).
			b.Run("load/"+name, func(b *testing.B) {
				l := mk(b.TempDir())
				for i := 0; i < b.N; i++ {
					if err := l.put("example.test/object/"+strconv.Itoa(i), meta, body); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				n, err := l.load()
				if err != nil || n != b.N {
					b.Fatalf("loaded %d of %d: %v", n, b.N, err)
				}
			})
		}
	}
}
