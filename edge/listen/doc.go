// Package listen puts an edge's http.Handler on its client listeners:
// plain HTTP/1.1, HTTPS with HTTP/2, and HTTP/3 over QUIC, with the
// connection-level defences against hostile clients (connection caps,
// strict HTTP/1.1 framing, rapid-reset detection).
//
// The front door is [NewServer], which takes the node's [edge.Config]
// (listen, tls and server settings) and the handler, usually an
// [*edge.Handler]; [Server.Start] binds and serves, [Server.Shutdown]
// drains. HTTP/2 and HTTP/3 requests, and every HTTP/1.1 request with
// server.front "nethttp", go through net/http (or quic-go's http3) to
// the handler's ServeHTTP. The package knows nothing of caching: what a
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
// closing the connection). While the handler runs, a read watches the
// connection, as net/http's background read does: the request's context
// ends if the client leaves, and bytes that come are the next request's.
// With the fill path's savings that came with it, a miss costs about a
// fifth less CPU than lent to net/http (all-miss bench, 1 KiB, 4
// interleaved pairs: 59-62 µs against 75-85 µs per miss, 139 allocations
// against 165; nginx 30-38 µs). What is left is mostly the origin side:
// http.Transport's two goroutines per connection and their hand-offs,
// contexts and timers per fill, and the garbage collector.
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
// The HTTPS listener's HTTP/2 is x/net's HTTP/2 server (the same code
// as net/http's bundled copy, newer), because only its ServeConn lets
// the listener put something between the server and the TLS connection
// in cleartext: an h2Conn (h2.go). net/http's HTTP/2 server writes a
// response's HEADERS frame and flushes before the handler's body is
// even queued (the handler waits for its header to be written), so
// every answer cost two TLS records and two write system calls. The
// h2Conn holds a write that ends with a HEADERS frame that does not end
// its stream, and sends it with the next write, in one record and one
// system call (at most 2 ms later when no write follows: a streaming
// answer's header is late by that much at most). Under h2load (64
// connections, one stream each, 1 KiB hits, the server on one core),
// that is 20 % less CPU per hit (median of 5 interleaved pairs: 42.9
// µs against 54.9 µs; nginx 17.7 µs), 16 % with 10 streams per
// connection; 64 KiB hits are unchanged (their header goes alone: one
// write saved of several is not worth copying 16 KiB).
//
// The rest of the gap to nginx is the HTTP/2 server's design: a
// goroutine per request and one per frame write or flush, each frame
// read handed from the reader goroutine to the serving one, a header
// map and a request per hit. Answering plain hits inside the server's
// own loop (a hook in processHeaders, measured on a fork of x/net: 28
// µs) or in a loop of our own that owns the connection (18 µs, nginx's
// level) is the next step; both need hand-written protocol code and its
// differential tests, see issue 21.
//
// # Concurrency
//
// Each fast connection is owned by its goroutine; while it is lent, the
// goroutine waits for the connection to come back (handoffConn.back) and
// net/http's goroutines own it. While it runs the handler for a request,
// one more goroutine (fastConn.watch) reads into the end of its buffer
// and hands what it read over a channel (fastConn.watched); the
// connection's goroutine waits for it before it touches the buffer again. Its state (idle, active, lent for good)
// is atomic, for Shutdown to read. The locks are leaves, none taken
// under another: fastFront.mu guards the set of open fast connections
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
package listen
