// Package listen puts an edge's http.Handler on its client listeners:
// plain HTTP/1.1, HTTPS with HTTP/2, and HTTP/3 over QUIC, with the
// connection-level defences against hostile clients (connection caps,
// strict HTTP/1.1 framing, rapid-reset detection).
//
// The front door is [NewServer], which takes the node's [edge.Config]
// (listen, tls and server settings) and the handler, usually an
// [*edge.Handler]; [Server.Start] binds and serves, [Server.Shutdown]
// drains. HTTP/3 requests, and every HTTP/1.1 and HTTP/2 request with
// server.front "nethttp", go through net/http, x/net's HTTP/2 server (or
// quic-go's http3) to the handler's ServeHTTP. The package knows nothing of caching: what a
// request means is the handler's.
//
// # The fast front
//
// With server.front "fast" (and an *edge.Handler, not a wrapped one) a
// hand-written HTTP/1.1 reader and writer serves the plain listener
// (fast.go). It reads each request's header itself; a plain GET or HEAD
// (no body, no conditionals, no Range, no Authorization) is looked up
// through edge's hit contract: [edge.Handler.LookupHit] finds a fresh
// stored answer, [edge.Hit.AppendHead] and [edge.Hit.Body] are written
// with one system call and no header map, and [edge.Handler.Delivered]
// books it (hit count, metrics, access log) exactly as ServeHTTP books
// its own hits. The fast front names nothing else of edge.
//
// Every other GET or HEAD that the reader parsed whole (a miss, a
// conditional, a Range, an error; not one with Expect or Upgrade) goes
// to the handler on the fast connection itself (fast_miss.go): an
// *http.Request built as net/http builds it, and a ResponseWriter
// (fastWriter) that writes what net/http's would (1xx at once, the
// header at the first flush, Content-Length or chunked as net/http
// chooses, sniffed Content-Type, Date, HEAD, a short body or a panic
// closing the connection). An answer the handler writes from a stored
// entry as it is (the leader and waiters of a fill whose small body was
// stored before they were answered, a stale copy) comes to the writer
// whole and in wire form instead ([edge.StoredAnswerWriter]: the
// entry's sealed blocks, as a hit's), with no header map. Once the handler has run for 50 ms
// (watchAfter), a read watches the connection, as net/http's background
// read does: the request's context ends if the client leaves, and bytes
// that come are the next request's. A quicker answer (a miss from a near
// origin) spends nothing on the watch; a client that leaves is noticed
// at most 50 ms late.
// With the fill path's savings that came with it, a miss costs about a
// fifth less CPU than lent to net/http (all-miss bench, 1 KiB, 4
// interleaved pairs: 59-62 µs against 75-85 µs per miss, 139 allocations
// against 165; nginx 30-38 µs). Starting the watch only after 50 ms
// took about 3 % more off, near the noise (all-miss bench, wrk -c64, 13
// interleaved pairs over three runs: 0.82-1.03 of the CPU per miss,
// median 0.97; BenchmarkMissFront 0.85-1.02, median 0.91, one allocation
// fewer); the system calls stay 4 reads and
// 2 writes per miss in the process, as the serve loop's read replaces
// the watch's. What is left is mostly the origin side: http.Transport's
// two goroutines per connection and their hand-offs, contexts and timers
// per fill, and the garbage collector; of the front's own share, the
// write of the answer and the read of the next request.
//
// Every other request is handed, bytes untouched, to a net/http server
// behind the fast front, with the same handler and limits, so that cache
// semantics and HTTP strictness are net/http's own. The hand-off is a
// net.Conn (handoffConn) given to that server through an in-memory
// listener (handoffListener):
//
//   - a request without a body is lent alone (with a fast front whose
//     handler is not an *edge.Handler): handoffConn first replays
//     the bytes the fast reader took, and once net/http is back at a
//     request boundary (its ConnState says idle) the next read ends the
//     lent connection with io.EOF, net/http closes it, and Close hands
//     the connection back to the fast reader instead of closing the
//     socket. Bytes of the next request that net/http's background read
//     took meanwhile are kept for the fast reader;
//   - anything else (a body, a header the reader refers to net/http, a
//     request that is not complete in time) gives the rest of the
//     connection to net/http for good, its reads followed by a reqFramer
//     so that ambiguous framing is refused there too.
//
// # HTTP/2
//
// With server.front "fast" (and an *edge.Handler) the HTTPS listener's
// HTTP/2 is the lean front (h2lean.go), in the spirit of the fast
// HTTP/1.1 front: one goroutine per connection reads its frames with
// x/net's Framer (its hpack decoder, header list limit and CONTINUATION
// checks) and answers a plain fresh GET or HEAD itself (the same
// plainness as the fast front's: no body, conditionals, Range or
// Authorization; :authority without Host), through the hit contract:
// LookupHit, a HEADERS block converted from Hit.AppendHead (literals
// that are not indexed, so the client's hpack table is only the relay's
// encoder's), DATA frames, all into a buffered writer flushed once no
// input is buffered (several answers of a connection then go in one TLS
// record), and Delivered. It answers only a hit whose body fits the
// stream's and the connection's send windows.
//
// Every other stream is relayed (h2lean_relay.go) to x/net's HTTP/2
// server, started with the connection's first such stream over an
// in-memory connection (net.Pipe) that carries the client's addresses,
// TLS state and base context (the rapid-reset guard, Alt-Svc): the
// request's header block re-encoded, its DATA, RST_STREAM and
// WINDOW_UPDATE passed on under the same stream ID, the answer's header
// block re-encoded with the client's encoder. So cache semantics,
// request bodies, trailers, 1xx answers, cancellation and the send
// timeout of a stream stay the standard server's, at the price of one
// more framing and hpack pass on a non-hit. The relay's server gets the
// client's windows as the client grants them, so it never sends more
// than the client takes, and the relay holds at most one of its DATA
// frames, waiting for credit that hits used (at most the send timeout,
// then the stream is reset). Simpler designs were weighed and left: a
// hook inside a fork of x/net's server keeps its semantics for free but
// costs a fork to rebase on each security release and measured 28 µs
// per hit; answering non-hits through ServeHTTP into a recorder loses
// streaming, request bodies and cancellation.
//
// The connection-level duties are the lean front's, each as x/net's
// server does it: SETTINGS (the client's header table size, initial
// window and frame size honoured; x/net's own settings advertised),
// PING, GOAWAY on Shutdown with a drain of the open streams, the idle
// timeout, 250 concurrent streams, the flow-control errors, the
// rapid-reset guard (a hit counts as an answered request; a relayed
// stream is guarded by guardResets as before), floods (CONTINUATION by
// the Framer; an empty DATA frame is dropped and 100 in a row end the
// connection; control frames are answered by writes that block, so a
// client that does not read stops being read); the connection caps and
// the connection's send timeout are the listener's, as for every
// connection. A connection over TLS 1.2 with a cipher HTTP/2 forbids is
// served by x/net's server alone, which refuses it.
//
// Under h2load (64 connections, the server on one core, interleaved
// repetitions, server CPU per request; the medians): 1 KiB hits with one
// stream per connection cost 9.8 µs against 36.5 µs for x/net's server
// over an h2Conn and 10.7 µs for nginx (lean/nginx 0.90-1.04 over 5
// pairs, median 0.95); with 10 streams per connection 3.3 µs against
// 35.2 and 9.2 (several answers go in one record); 64 KiB hits 43.5 µs
// against 101.9 and 55.2. BenchmarkHitH2: 15 allocations per 1 KiB hit
// against 56. A request's header block in one frame is since decoded by
// the lean front itself (h2lean_headers.go: x/net's hpack decoder and
// checks, into a frame and fields the connection reuses), which took 9
// of those 15 allocations (6 left, the benchmark's client's included)
// and 7-12 % of the CPU per hit: 10.6-11.0 µs against 11.6-11.8 for the
// front before it and 12.2-12.3 for nginx (3 interleaved runs on a quiet
// machine; new/nginx 0.87-0.89; on a busier one, 4 runs, 12.7-13.2
// against 13.9-15.1 and 14.3-15.4); 64 KiB hits unchanged (0.95-1.00 of
// the front before, 0.70-0.87 of nginx). Most of what is left
// is the read and write system calls, one each per answer, as nginx's,
// and x/net's hpack decoding. The relay's price, measured the same
// way with every request a new key (h2load -c1 -m64, 3 interleaved
// runs): 90-97 µs per miss against 75-82 µs for x/net's server alone
// (nginx 63-67), about 15 µs more per relayed stream; requests that join
// a fill in progress are relayed too. With hit ratios of a CDN that is a
// large net gain, and it is what to shave next.
//
// With server.front "nethttp", or a handler that is not an
// *edge.Handler, the HTTPS listener's HTTP/2 is x/net's server (the
// same code as net/http's bundled copy, newer) through ServeConn, which
// lets the listener put an h2Conn (h2.go) between the server and the TLS
// connection in cleartext. net/http's HTTP/2 server writes a response's
// HEADERS frame and flushes before the handler's body is even queued,
// so every answer cost two TLS records and two write system calls; the
// h2Conn holds a write that ends with a HEADERS frame that does not end
// its stream, and sends it with the next write, in one record and one
// system call (at most 2 ms later when no write follows). The relay's
// server writes through an h2Conn too.
//
// # Concurrency
//
// Each fast connection is owned by its goroutine; while it is lent, the
// goroutine waits for the connection to come back (handoffConn.back) and
// net/http's goroutines own it. While it runs the handler for a request,
// past watchAfter, one more goroutine (fastConn.startWatch, started by the
// connection's timer) reads into the end of its buffer and hands what it
// read over a channel (fastConn.watched); unless stopping the timer
// shows the watch never started, the connection's goroutine waits for
// it before it touches the buffer again. Its state (idle, active, lent
// for good) is atomic, for Shutdown to read. The locks are leaves, none
// taken under another: fastConn.watchMu guards what the watch reads of
// the request and orders its clearing of the read deadline before the
// deadline that ends it (held over SetReadDeadline only);
// fastFront.mu guards the set of open fast connections
// (Shutdown closes them after releasing it); connLimiter.mu guards the
// per-address connection counts; connGuard.mu guards one HTTP/2 or
// HTTP/3 connection's recent resets (the guard closes its connection
// after releasing it). No network I/O happens under any of them but
// one: h2Conn.wmu serializes the writes to an HTTP/2 connection (the
// server's, and the held header's when its timer sends it), as
// tls.Conn's own write lock does, so only that connection's writers wait
// on it; h2Conn.Close closes the connection before taking it. A
// reqFramer is fed by one goroutine at a time, and its verdict is read
// atomically by the request's handler.
//
// A lean HTTP/2 connection is owned by its goroutine (leanConn.serve),
// which reads every frame; its relay's reader (relay.read) is the one
// other goroutine that writes to it. Its locks are leaves too:
// leanConn.mu guards its streams and windows and is never held over I/O;
// leanConn.wmu serializes the writes to the client and relay.pmu those
// to the relay's in-memory connection, each held across its write as
// h2Conn.wmu is (a write to the client waits at most the send timeout; a
// write to the relay, for x/net's reader, which never waits on its
// writer). leanH2.mu guards the set of lean connections (Shutdown's
// GOAWAYs are sent after releasing it).
package listen
