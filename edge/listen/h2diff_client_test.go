package listen_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The differential harness's client: one TLS connection (ALPN h2) that
// plays a sequence of ops as raw frames and records what the server
// does (h2Outcome). It answers the server as a plain client does
// (SETTINGS and PING ACKs, flow-control credit for every DATA frame
// unless told otherwise, sends POST bodies within the server's windows),
// and nothing else.

// h2Outcome is what one server did with one sequence.
type h2Outcome struct {
	// Settings are the server's SETTINGS frames (not ACKs), each as its
	// parameters sorted by ID.
	Settings []string
	// SettingsAcks counts the server's ACKs of the client's SETTINGS.
	SettingsAcks int
	// PingAcks are the payloads of the server's PING ACKs, in order.
	PingAcks []uint64
	// GoAway is the first GOAWAY ("" for none) and GoAways their count.
	GoAway  string
	GoAways int
	// GoAwayCode and GoAwayLast are the first GOAWAY's fields.
	GoAwayCode http2.ErrCode
	GoAwayLast uint32
	// MaxClientID is the highest stream ID of a frame the client sent.
	MaxClientID uint32
	// HeadersAgain: the client sent HEADERS on a stream it had opened
	// and ended before.
	HeadersAgain bool
	// SelfDependent are the streams the client sent a PRIORITY frame
	// making them depend on themselves.
	SelfDependent []uint32
	// GoAwayErr: the first GOAWAY had an error code: the connection is
	// over, and the server may drop its in-flight answers.
	GoAwayErr bool
	// Closed: the server ended the connection (EOF, reset) before the
	// client stopped.
	Closed bool
	// CloseErr is the read error that said so (not compared).
	CloseErr string
	// ReadErr is the client's framer refusing what the server sent (a
	// frame out of order, too large, malformed).
	ReadErr string
	// GaveUp: the run's time budget ended before the last wait was over.
	GaveUp bool
	// Notes are protocol violations the client saw: frames after a
	// stream's end, an unsignalled dynamic table size change, a push.
	Notes []string
	// Streams are the streams the server sent anything on, and those the
	// client opened, by ID.
	Streams map[uint32]*streamOutcome
	// ClientResets: the client reset a stream it had opened (what
	// reaches the origin then depends on timing); Resets counts them.
	ClientResets bool
	Resets       int
	// Origin is what reached the origin during the run ("METHOD path"),
	// sorted.
	Origin []string
}

// streamOutcome is what the server did with one stream.
type streamOutcome struct {
	// Opened: the client sent HEADERS on it; ClientReset: and later
	// RST_STREAM.
	Opened, ClientReset bool
	// Path is the :path of the client's request ("" if none).
	Path string
	// ClientBroke: after it had ended its request, the client sent on
	// it DATA, HEADERS, or a WINDOW_UPDATE that is a stream error;
	// EmptyData: an empty DATA frame.
	ClientBroke, EmptyData bool
	// Heads are the header blocks the server sent on it, in order (1xx,
	// final, trailers), each as "name: value" lines as sent, Date left
	// out (it is the time of the answer).
	Heads [][]string
	// Body is the concatenated DATA.
	Body []byte
	// End is how the stream ended: "END_STREAM", "RST_STREAM <code>",
	// or "" (it had not when the client stopped).
	End string
	// AfterEnd are frames the server sent on it after End.
	AfterEnd []string
}

// barrierPing marks the payloads of the client's own (wait) PINGs.
const barrierPing = 0xb0 << 56

// goAwayGrace is how long, after a GOAWAY with an error code, the client
// waits for the in-flight answers the server may still send before it
// stops (x/net's server sends them for up to a second before it closes;
// a server may as well drop them, see the cut-stream rule in
// h2diff_compare_test.go).
const goAwayGrace = 50 * time.Millisecond

// h2Run is one connection playing one sequence.
type h2Run struct {
	conn  net.Conn
	limit time.Time // the run's time budget ends here
	nonce string    // marks this run's requests (x-diff-run) and misses

	// The op goroutine's own: frames are built here, then queued.
	wb       bytes.Buffer
	wfr      *http2.Framer
	lastPath string // the :path of the last header block built
	enc      *hpack.Encoder
	eb       bytes.Buffer

	mu          sync.Mutex
	cond        *sync.Cond
	queue       [][]byte // built frames, for the writer goroutine
	stop        bool     // the writer ends once the queue is empty
	writeErr    error
	readDone    bool
	frozen      bool // the outcome is taken: the reader records nothing more
	out         h2Outcome
	nextID      uint32 // the next odd stream ID to open
	lastOpened  uint32
	connWin     int64            // the server's connection window for the client's DATA
	streamWin   map[uint32]int64 // and each stream's
	initialWin  int64            // the server's SETTINGS_INITIAL_WINDOW_SIZE
	encLimit    uint32           // the server's SETTINGS_HEADER_TABLE_SIZE
	noCredit    bool
	skipAck     bool // the client ACKed the server's SETTINGS before it came (prefaces[4])
	goAwayLast  uint32
	goAwayAt    time.Time
	rapidResets int // HEADERS+RST pairs sent so far (opRapidReset)
	pingSeq     uint64
	// The client's SETTINGS_HEADER_TABLE_SIZE: the largest dynamic
	// table size update its decoder allows (raised as a larger value is
	// sent, lowered once a wait proves the server has it), the last
	// value sent, its lowerings, and each header block's smallest size
	// update (-1: none).
	allowTable uint32
	lastTable  uint32
	lowered    []tableLowering
	updates    []int64 // per header block: its smallest size update, -1 for none
}

// playOps dials addr and plays ops within budget; nonce marks the run.
func playOps(addr string, ops []h2op, budget time.Duration, nonce string) (*h2Outcome, error) {
	limit := time.Now().Add(budget)
	d := &net.Dialer{Deadline: limit}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: testHost, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		return nil, fmt.Errorf("ALPN chose %q, not h2", p)
	}
	conn.SetDeadline(limit)
	r := &h2Run{conn: conn, limit: limit, nonce: nonce, nextID: 1, connWin: 65535, initialWin: 65535,
		encLimit: 4096, allowTable: 4096, lastTable: 4096, streamWin: map[uint32]int64{}}
	r.out.Streams = map[uint32]*streamOutcome{}
	r.cond = sync.NewCond(&r.mu)
	r.wfr = http2.NewFramer(&r.wb, nil)
	r.wfr.AllowIllegalWrites = true
	r.enc = hpack.NewEncoder(&r.eb)
	// The preface is queued before the reader starts: the server's
	// SETTINGS come at once, and the reader's ACK must not go first.
	if len(ops) > 0 && ops[0].kind == opPreface {
		r.preface(ops[0].a)
		ops = ops[1:]
	} else {
		r.preface(0)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.write() }()
	go func() { defer wg.Done(); r.read() }()
	r.play(ops)
	r.mu.Lock()
	r.checkLowerings()
	for _, s := range r.out.Streams {
		if s.Opened && s.ClientReset {
			r.out.Resets++
		}
	}
	r.frozen = true
	r.stop = true
	r.cond.Broadcast()
	out := r.out
	r.mu.Unlock()
	conn.Close()
	wg.Wait()
	return &out, nil
}

// wake rouses whoever waits on the run's state (a deadline passed).
func (r *h2Run) wake() {
	r.mu.Lock()
	r.cond.Broadcast()
	r.mu.Unlock()
}

// write sends the queued frames in order until stopped.
func (r *h2Run) write() {
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && !r.stop {
			r.cond.Wait()
		}
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		b := r.queue[0]
		r.queue = r.queue[1:]
		failed := r.writeErr != nil
		r.mu.Unlock()
		if failed {
			continue
		}
		if _, err := r.conn.Write(b); err != nil {
			r.mu.Lock()
			r.writeErr = err
			r.cond.Broadcast()
			r.mu.Unlock()
		}
	}
}

// push queues b for the writer, whole: a header block and its
// CONTINUATION frames are never split by the reader's control frames.
func (r *h2Run) push(b []byte) {
	r.mu.Lock()
	r.queue = append(r.queue, bytes.Clone(b))
	r.cond.Broadcast()
	r.mu.Unlock()
}

// frames builds frames with the op goroutine's framer and returns them.
func (r *h2Run) frames(fn func(fr *http2.Framer)) []byte {
	r.wb.Reset()
	fn(r.wfr)
	r.mu.Lock()
	for b := r.wb.Bytes(); len(b) >= 9; {
		r.out.MaxClientID = max(r.out.MaxClientID, binary.BigEndian.Uint32(b[5:9])&(1<<31-1))
		b = b[min(len(b), 9+int(b[0])<<16|int(b[1])<<8|int(b[2])):]
	}
	r.mu.Unlock()
	return r.wb.Bytes()
}

// over reports whether the run cannot go on: the connection ended, a
// write failed, or the budget is spent. r.mu is held.
func (r *h2Run) over() bool {
	return r.readDone || r.writeErr != nil || !time.Now().Before(r.limit)
}

// play plays ops (after the preface), then waits for the server to be
// done.
func (r *h2Run) play(ops []h2op) {
	t := time.AfterFunc(time.Until(r.limit), r.wake)
	defer t.Stop()
	for i, o := range ops {
		r.mu.Lock()
		over := r.over()
		r.mu.Unlock()
		if over {
			break
		}
		r.do(i, o)
	}
	r.wait()
}

func (r *h2Run) preface(kind byte) {
	settings := func(fr *http2.Framer) { fr.WriteSettings() }
	switch int(kind) % len(prefaces) {
	case 0:
		r.push(append([]byte(http2.ClientPreface), r.frames(settings)...))
	case 1:
		r.push([]byte("GET / HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n"))
	case 2:
		r.push(append(bytes.Clone(r.frames(settings)), http2.ClientPreface...))
	case 3:
		r.push([]byte(http2.ClientPreface))
		r.do(0, get(0, 0))
		r.push(r.frames(settings))
	case 4:
		r.mu.Lock()
		r.skipAck = true // the early ACK is the ACK
		r.mu.Unlock()
		r.push(append([]byte(http2.ClientPreface), r.frames(func(fr *http2.Framer) { fr.WriteSettingsAck() })...))
		r.push(r.frames(settings))
	}
}

// baseRequest is a GET of path, as every request starts.
func (r *h2Run) baseRequest(path string) [][2]string {
	return [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", testHost}, {":path", path}, {"x-diff-run", r.nonce}}
}

// slowPath is the run's own /slow: its requests coalesce with each
// other, never with a fill of another run's, which may still be ending
// when this run starts, on one server and not the other.
func (r *h2Run) slowPath() string { return "/slow?run=" + r.nonce }

// templateRequest is opGet's request for a; a miss's path is one of
// the run's own, numbered key%4, and so is /slow (slowPath).
func (r *h2Run) templateRequest(a byte, key uint32) [][2]string {
	path := diffPaths[a&15].path
	switch path {
	case "/miss/":
		path += r.nonce + "/" + strconv.Itoa(int(key%4))
	case "/slow":
		path = r.slowPath()
	}
	f := r.baseRequest(path)
	for _, kv := range diffVariants[a>>4].fields {
		replaced := false
		for i := range f {
			if f[i][0] == kv[0] && strings.HasPrefix(kv[0], ":") {
				f[i][1], replaced = kv[1], true
			}
		}
		if !replaced {
			f = append(f, kv)
		}
	}
	return f // a pseudo-field a variant empties is left out by headerBlock
}

// headerBlock encodes fields with the connection's encoder; a
// pseudo-field whose value a variant emptied is left out.
func (r *h2Run) headerBlock(fields [][2]string, dropEmptyPseudo bool) []byte {
	r.mu.Lock()
	limit := r.encLimit
	r.mu.Unlock()
	r.enc.SetMaxDynamicTableSizeLimit(limit)
	r.eb.Reset()
	r.lastPath = ""
	for _, kv := range fields {
		if kv[0] == ":path" {
			r.lastPath = kv[1]
		}
		if dropEmptyPseudo && strings.HasPrefix(kv[0], ":") && kv[1] == "" {
			continue
		}
		r.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	return bytes.Clone(r.eb.Bytes())
}

// writeHeaders builds HEADERS (and CONTINUATION frames past 16 KiB)
// carrying block on stream id.
func writeHeaders(fr *http2.Framer, id uint32, block []byte, endStream bool) {
	const max = 16 << 10
	first := block[:min(len(block), max)]
	block = block[len(first):]
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		c := block[:min(len(block), max)]
		block = block[len(c):]
		fr.WriteContinuation(id, len(block) == 0, c)
	}
}

// open registers stream id as opened by the client.
func (r *h2Run) open(id uint32, reset bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == 0 {
		return
	}
	s := r.stream(id)
	s.Opened = true
	s.Path = r.lastPath
	s.ClientReset = s.ClientReset || reset
	r.out.ClientResets = r.out.ClientResets || reset
	r.streamWin[id] = r.initialWin
	r.lastOpened = id
	if id >= r.nextID {
		r.nextID = (id + 2) | 1
	}
}

// broke notes that the client sends a frame on stream id after its
// request ended (every op ends the requests it sends), one that is a
// stream error while the stream is open, if it opened it.
func (r *h2Run) broke(id uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.out.Streams[id]; s != nil && s.Opened {
		s.ClientBroke = true
	}
}

// stream is id's outcome, made on first use. r.mu is held.
func (r *h2Run) stream(id uint32) *streamOutcome {
	s := r.out.Streams[id]
	if s == nil {
		s = &streamOutcome{}
		r.out.Streams[id] = s
	}
	return s
}

// sel is the stream an op's selector names.
func (r *h2Run) sel(a byte) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch a {
	case selLast:
		return r.lastOpened
	case selZero:
		return 0
	case selIdle:
		id := r.nextID // taken: no later stream reuses it
		r.nextID += 2
		return id
	case selEven:
		return r.lastOpened + 1 - r.lastOpened%2 + 1
	}
	return 2*uint32(a) - 1
}

// newID takes the next odd stream ID.
func (r *h2Run) newID() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextID
	r.nextID += 2
	return id
}

// pattern is n deterministic bytes, different at every offset of a
// short period, so that a body cut or shifted shows.
func pattern(n int, seed string) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(i+i/36+len(seed))%36]
	}
	return b
}

// do plays one op (i is its index).
func (r *h2Run) do(i int, o h2op) {
	switch o.kind {
	case opGet:
		id := r.newID()
		block := r.headerBlock(r.templateRequest(o.a, o.v), true)
		r.open(id, false)
		split := o.a>>4 == variantSplitEnd
		r.push(r.frames(func(fr *http2.Framer) {
			writeHeaders(fr, id, block, !split)
			if split {
				fr.WriteData(id, true, nil)
			}
		}))
	case opHeadersAt:
		id := o.v & 0xffff
		r.broke(id)
		r.mu.Lock()
		if s := r.out.Streams[id]; s != nil && s.Opened {
			r.out.HeadersAgain = true
		}
		r.mu.Unlock()
		block := r.headerBlock(r.templateRequest(o.a, o.v>>16), true)
		r.open(id, false)
		r.push(r.frames(func(fr *http2.Framer) { writeHeaders(fr, id, block, true) }))
	case opPost:
		r.post(o.v%maxPostBody, o.a)
	case opReset:
		if o.a == selAll {
			var ids []uint32
			r.mu.Lock()
			for id, s := range r.out.Streams {
				if s.Opened && !s.ClientReset && s.End == "" {
					s.ClientReset = true
					ids = append(ids, id)
				}
			}
			r.out.ClientResets = r.out.ClientResets || len(ids) > 0
			r.mu.Unlock()
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			r.push(r.frames(func(fr *http2.Framer) {
				for _, id := range ids {
					fr.WriteRSTStream(id, http2.ErrCode(o.v%16))
				}
			}))
			return
		}
		id := r.sel(o.a)
		r.mu.Lock()
		if s := r.out.Streams[id]; s != nil && s.Opened {
			s.ClientReset = true
			r.out.ClientResets = true
		}
		r.mu.Unlock()
		r.push(r.frames(func(fr *http2.Framer) { fr.WriteRSTStream(id, http2.ErrCode(o.v%16)) }))
	case opWindowUpdate:
		id := r.sel(o.a)
		if o.v&(1<<31-1) == 0 || o.v&(1<<31-1) >= 1<<30 {
			r.broke(id) // a stream error (zero increment, or an overflow)
		}
		r.push(r.frames(func(fr *http2.Framer) { fr.WriteWindowUpdate(id, o.v) }))
	case opSettings:
		s := http2.Setting{ID: http2.SettingID(o.a % 10), Val: o.v}
		if s.ID == http2.SettingHeaderTableSize {
			r.mu.Lock()
			if s.Val < r.lastTable {
				r.lowered = append(r.lowered, tableLowering{to: s.Val, from: len(r.updates), proven: -1})
			}
			r.lastTable = s.Val
			r.allowTable = max(r.allowTable, s.Val)
			r.mu.Unlock()
		}
		r.push(r.frames(func(fr *http2.Framer) { fr.WriteSettings(s) }))
	case opPing:
		var p [8]byte
		binary.BigEndian.PutUint64(p[:], uint64(o.v))
		r.push(r.frames(func(fr *http2.Framer) { fr.WritePing(o.a&1 != 0, p) }))
	case opPriority:
		id := r.sel(o.a)
		if o.v&0xff == id {
			r.mu.Lock()
			r.out.SelfDependent = append(r.out.SelfDependent, id)
			r.mu.Unlock()
		}
		r.push(r.frames(func(fr *http2.Framer) {
			fr.WritePriority(id, http2.PriorityParam{StreamDep: o.v & 0xff, Exclusive: o.v&0x100 != 0, Weight: byte(o.v >> 9)})
		}))
	case opData:
		id := r.sel(o.a & 0x7f)
		r.broke(id)
		if o.v%1024 == 0 && id != 0 {
			r.mu.Lock()
			r.stream(id).EmptyData = true
			r.mu.Unlock()
		}
		r.push(r.frames(func(fr *http2.Framer) { fr.WriteData(id, o.a&0x80 != 0, pattern(int(o.v%1024), "data")) }))
	case opContinuationFlood:
		id := r.newID()
		first := r.headerBlock(r.baseRequest("/hit/small"), true)
		r.open(id, false)
		n := int(o.v % 2048)
		r.push(r.frames(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: true, EndHeaders: n == 0})
			for k := range n {
				var frag []byte
				if o.a&1 == 0 {
					r.eb.Reset()
					r.enc.WriteField(hpack.HeaderField{Name: "x-flood-" + strconv.Itoa(k), Value: string(pattern(1<<10, "flood"))})
					frag = r.eb.Bytes()
				}
				fr.WriteContinuation(id, k == n-1 && o.a&2 != 0, frag)
			}
		}))
	case opBadRequest:
		id := r.newID()
		b := badRequests[int(o.a)%len(badRequests)]
		block := r.headerBlock(b.fn(r.baseRequest(badPath), int(o.v)), false)
		r.open(id, false)
		r.push(r.frames(func(fr *http2.Framer) { writeHeaders(fr, id, block, true) }))
	case opRapidReset:
		var ids []uint32
		var blocks [][]byte
		// The rapid-reset guard closes the connection once 100 of its
		// last 200 requests were reset, from the handlers' ends, which
		// race with the client's next frames. Near the threshold the
		// outcome would be timing's: a run stays well below it, or
		// goes well past it.
		n := int(o.v % 256)
		if n > 40 || r.rapidResets+n > 80 {
			n = 250
		}
		r.rapidResets += n
		for range n {
			id := r.newID()
			ids = append(ids, id)
			blocks = append(blocks, r.headerBlock(r.baseRequest(r.slowPath()), true))
			r.open(id, true)
		}
		r.push(r.frames(func(fr *http2.Framer) {
			for k, id := range ids {
				writeHeaders(fr, id, blocks[k], true)
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}))
	case opWait:
		r.wait()
	case opCredit:
		r.mu.Lock()
		r.noCredit = o.a&1 != 0
		r.mu.Unlock()
	case opRawFrame:
		id := (o.v >> 16) & 0xff
		switch http2.FrameType(o.a) {
		case http2.FrameData, http2.FrameHeaders, http2.FrameContinuation, http2.FrameWindowUpdate, http2.FramePushPromise:
			r.broke(id) // a stream error, or a frame after the request's end
		case http2.FrameRSTStream:
			r.mu.Lock()
			if s := r.out.Streams[id]; s != nil && s.Opened {
				s.ClientReset = true
				r.out.ClientResets = true
			}
			r.mu.Unlock()
		}
		r.push(r.frames(func(fr *http2.Framer) {
			fr.WriteRawFrame(http2.FrameType(o.a), http2.Flags(o.v>>24), (o.v>>16)&0xff, pattern(int(o.v&0x7fff), "raw"))
		}))
	case opPreface:
		if o.a%2 == 0 {
			r.push([]byte(http2.ClientPreface))
		} else {
			r.push([]byte("GET / HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n"))
		}
	}
}

// post sends a POST with an n-byte body, within the server's windows;
// a's bits are opPost's.
func (r *h2Run) post(n uint32, a byte) {
	id := r.newID()
	f := r.baseRequest("/post")
	f[0][1] = "POST"
	cl := int(n)
	switch {
	case a&2 != 0:
		cl++ // more than is sent
	case a&4 != 0 && n > 0:
		cl-- // less than is sent
	}
	f = append(f, [2]string{"content-length", strconv.Itoa(cl)}, [2]string{"content-type", "application/octet-stream"})
	if a&1 != 0 {
		f = append(f, [2]string{"expect", "100-continue"})
	}
	trailers := a&8 != 0
	block := r.headerBlock(f, true)
	r.open(id, false)
	r.push(r.frames(func(fr *http2.Framer) { writeHeaders(fr, id, block, n == 0 && !trailers) }))
	body := pattern(int(n), "post")
	for len(body) > 0 {
		r.mu.Lock()
		for !r.over() && r.out.Streams[id].End == "" && (r.connWin <= 0 || r.streamWin[id] <= 0) {
			r.cond.Wait()
		}
		if r.over() || r.out.Streams[id].End != "" {
			r.mu.Unlock()
			return
		}
		k := int(min(int64(len(body)), 16<<10, r.connWin, r.streamWin[id]))
		r.connWin -= int64(k)
		r.streamWin[id] -= int64(k)
		r.mu.Unlock()
		chunk := body[:k]
		body = body[k:]
		r.push(r.frames(func(fr *http2.Framer) { fr.WriteData(id, len(body) == 0 && !trailers, chunk) }))
	}
	if trailers {
		tb := r.headerBlock([][2]string{{"x-trailer", "t"}}, false)
		r.push(r.frames(func(fr *http2.Framer) { writeHeaders(fr, id, tb, true) }))
	}
}

// wait sends a PING and waits until the server has answered it and
// ended every stream the client opened and did not reset (those past a
// GOAWAY's last stream excepted), or the connection ended, or a GOAWAY
// with an error code is goAwayGrace old, or the budget is spent.
func (r *h2Run) wait() {
	r.mu.Lock()
	r.pingSeq++
	payload := barrierPing | r.pingSeq
	over := r.over()
	r.mu.Unlock()
	if !over {
		var p [8]byte
		binary.BigEndian.PutUint64(p[:], payload)
		r.push(r.frames(func(fr *http2.Framer) { fr.WritePing(false, p) }))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case !time.Now().Before(r.limit):
			r.out.GaveUp = true
			return
		case r.readDone:
			return
		case r.writeErr != nil:
			// The server closed (its reader will see it) or the
			// budget ended: wait for one of the two.
		case r.out.GoAwayErr:
			if !r.live() || time.Since(r.goAwayAt) >= goAwayGrace {
				return // the server reads nothing more: no PING ACK comes
			}
		case !r.live() && r.acked(payload):
			// The server has every SETTINGS sent before the PING.
			r.allowTable = r.lastTable
			for i := range r.lowered {
				if r.lowered[i].proven < 0 {
					r.lowered[i].proven = len(r.updates)
				}
			}
			return
		}
		r.cond.Wait()
	}
}

// live reports whether a stream the client opened may still be
// answered. r.mu is held.
func (r *h2Run) live() bool {
	for id, s := range r.out.Streams {
		if s.Opened && !s.ClientReset && s.End == "" && (r.out.GoAways == 0 || id <= r.goAwayLast) {
			return true
		}
	}
	return false
}

func (r *h2Run) acked(payload uint64) bool {
	for _, p := range r.out.PingAcks {
		if p == payload {
			return true
		}
	}
	return false
}

// read records the server's frames until the connection ends.
func (r *h2Run) read() {
	fr := http2.NewFramer(nil, r.conn)
	var cfr bytes.Buffer // control frames the reader sends
	ctl := http2.NewFramer(&cfr, nil)
	dec := hpack.NewDecoder(4096, nil)
	var (
		block    []byte
		blockID  uint32
		blockEnd bool
	)
	for {
		f, err := fr.ReadFrame()
		r.mu.Lock()
		if err != nil {
			if !r.frozen {
				var ne net.Error
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
					r.out.GaveUp = true // the budget ended
				case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err):
					r.out.Closed = true
					r.out.CloseErr = err.Error()
				default:
					r.out.ReadErr = err.Error()
				}
			}
			r.readDone = true
			r.cond.Broadcast()
			r.mu.Unlock()
			return
		}
		if r.frozen {
			r.mu.Unlock()
			continue
		}
		cfr.Reset()
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				r.out.SettingsAcks++
				break
			}
			var ps []string
			f.ForeachSetting(func(s http2.Setting) error {
				ps = append(ps, s.String())
				switch s.ID {
				case http2.SettingInitialWindowSize:
					for id := range r.streamWin {
						r.streamWin[id] += int64(s.Val) - r.initialWin
					}
					r.initialWin = int64(s.Val)
				case http2.SettingHeaderTableSize:
					r.encLimit = s.Val
				}
				return nil
			})
			sort.Strings(ps)
			r.out.Settings = append(r.out.Settings, strings.Join(ps, " "))
			if r.skipAck {
				r.skipAck = false
			} else {
				ctl.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			block, blockID, blockEnd = append(block[:0], f.HeaderBlockFragment()...), f.StreamID, f.StreamEnded()
			if f.HeadersEnded() {
				r.gotHeaderBlock(dec, blockID, block, blockEnd)
			}
		case *http2.ContinuationFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				r.gotHeaderBlock(dec, blockID, block, blockEnd)
			}
		case *http2.DataFrame:
			s := r.stream(f.StreamID)
			if s.End != "" {
				s.AfterEnd = append(s.AfterEnd, fmt.Sprintf("DATA (%d bytes)", len(f.Data())))
			} else {
				s.Body = append(s.Body, f.Data()...)
				if f.StreamEnded() {
					s.End = "END_STREAM"
				}
			}
			if n := f.Length; n > 0 && !r.noCredit {
				ctl.WriteWindowUpdate(0, n)
				if s.End == "" {
					ctl.WriteWindowUpdate(f.StreamID, n)
				}
			}
		case *http2.RSTStreamFrame:
			s := r.stream(f.StreamID)
			if s.End != "" {
				s.AfterEnd = append(s.AfterEnd, "RST_STREAM "+f.ErrCode.String())
			} else {
				s.End = "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			r.out.GoAways++
			if r.out.GoAways == 1 {
				r.out.GoAway = fmt.Sprintf("GOAWAY %v last-stream %d", f.ErrCode, f.LastStreamID)
				r.goAwayLast = f.LastStreamID
				r.out.GoAwayCode, r.out.GoAwayLast = f.ErrCode, f.LastStreamID
				if f.ErrCode != http2.ErrCodeNo {
					r.out.GoAwayErr = true
					r.goAwayAt = time.Now()
					time.AfterFunc(goAwayGrace, r.wake)
				}
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				r.connWin += int64(f.Increment)
			} else {
				r.streamWin[f.StreamID] += int64(f.Increment)
			}
		case *http2.PingFrame:
			if f.IsAck() {
				r.out.PingAcks = append(r.out.PingAcks, binary.BigEndian.Uint64(f.Data[:]))
			} else {
				ctl.WritePing(true, f.Data)
			}
		case *http2.PushPromiseFrame:
			r.out.Notes = append(r.out.Notes, fmt.Sprintf("PUSH_PROMISE on stream %d", f.StreamID))
		default:
			r.out.Notes = append(r.out.Notes, fmt.Sprintf("unexpected %v frame on stream %d", f.Header().Type, f.Header().StreamID))
		}
		if cfr.Len() > 0 {
			r.queue = append(r.queue, bytes.Clone(cfr.Bytes()))
		}
		r.cond.Broadcast()
		r.mu.Unlock()
	}
}

// gotHeaderBlock records a whole header block the server sent on id.
// r.mu is held.
func (r *h2Run) gotHeaderBlock(dec *hpack.Decoder, id uint32, block []byte, endStream bool) {
	// The dynamic table size updates a block starts with are applied
	// here: x/net's decoder refuses the second of two (RFC 7541 §4.2:
	// the smallest size, then the final one, as x/net's own encoder
	// writes them after a lowered then raised table size) when the first
	// left entries in the table.
	sizes, rest := tableSizeUpdates(block)
	update := int64(-1) // the smallest, which a lowering needs
	for _, size := range sizes {
		if update < 0 || int64(size) < update {
			update = int64(size)
		}
		if size > r.allowTable {
			r.out.Notes = append(r.out.Notes, fmt.Sprintf("a dynamic table size update to %d, above the client's SETTINGS_HEADER_TABLE_SIZE", size))
			size = r.allowTable
		}
		dec.SetMaxDynamicTableSize(size)
	}
	r.updates = append(r.updates, update)
	dec.SetAllowedMaxDynamicTableSize(r.allowTable)
	s := r.stream(id)
	fields, err := dec.DecodeFull(rest)
	var lines []string
	if err != nil {
		lines = []string{"hpack error: " + err.Error()}
	}
	for _, hf := range fields {
		if hf.Name == "date" {
			continue // the time of the answer
		}
		lines = append(lines, hf.Name+": "+hf.Value)
	}
	if s.End != "" {
		s.AfterEnd = append(s.AfterEnd, "HEADERS "+strings.Join(lines, ", "))
		return
	}
	s.Heads = append(s.Heads, lines)
	if endStream {
		s.End = "END_STREAM"
	}
}

// tableLowering is a SETTINGS_HEADER_TABLE_SIZE the client lowered to:
// from is the index of the first header block that may follow it, and
// proven that of the first one encoded after the server had it (-1
// until a wait proved it).
type tableLowering struct {
	to           uint32
	from, proven int
}

// checkLowerings notes a lowered SETTINGS_HEADER_TABLE_SIZE after which
// the server sent header blocks but no dynamic table size update to at
// most the new value (RFC 7541 §4.2: the first header block after the
// change must start with one). r.mu is held.
func (r *h2Run) checkLowerings() {
	for _, l := range r.lowered {
		if l.proven < 0 || len(r.updates) <= l.proven {
			continue
		}
		ok := false
		for _, u := range r.updates[l.from:] {
			ok = ok || u >= 0 && u <= int64(l.to)
		}
		if !ok {
			r.out.Notes = append(r.out.Notes, fmt.Sprintf("no dynamic table size update to at most %d after the client lowered SETTINGS_HEADER_TABLE_SIZE to it (RFC 7541 §4.2)", l.to))
		}
	}
}

// tableSizeUpdates returns the dynamic table size updates a header
// block starts with (RFC 7541 §6.3), and the rest of the block.
func tableSizeUpdates(block []byte) (sizes []uint32, rest []byte) {
	for len(block) > 0 && block[0]&0xe0 == 0x20 {
		v := uint64(block[0] & 0x1f)
		block = block[1:]
		if v == 0x1f {
			for m := 0; len(block) > 0 && m < 32; m += 7 {
				c := block[0]
				block = block[1:]
				v += uint64(c&0x7f) << m
				if c&0x80 == 0 {
					break
				}
			}
		}
		sizes = append(sizes, uint32(min(v, 1<<32-1)))
	}
	return sizes, block
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}
