// Package origin is the upstream side of a Meridian site: origin pools with
// health checks, retries, timeouts, circuit breaking and caps on what each
// origin server is asked at once, and a demo origin that serves generated
// objects for local runs and tests.
//
// # Origin protection
//
// A [Pool] caps, per origin server, the connections (max_conns, default
// 256) and the requests in flight (max_inflight, default 512; over
// HTTP/1.1 a request holds its connection, so max_conns is the real cap
// there). A request that finds its server at the cap waits in a FIFO
// queue (max_queue, default 1024) for at most queue_timeout (default 1s)
// over all its tries, and then fails with [KindOverloaded] without having
// reached the origin: the edge answers 503 with Retry-After
// ([IsOverloaded]). A retry on another server takes a slot there, so
// retries never get around the caps. [PoolConfig] says why each default
// is what it is; -1 turns a cap off.
//
// # Origin connections
//
// A pool of plain http:// servers sends its GET and HEAD requests without
// a body through a lean HTTP/1.1 client (h1client.go): written and read on
// the caller's goroutine, with connection deadlines for its timeouts, on
// keep-alive connections of its own; the response is parsed by
// http.ReadResponse. Everything else goes through http.Transport. The
// tests run each hostile origin answer, and a fuzzer's, through both and
// want the same outcome.
//
// # Locks
//
// Pool.mu guards the servers' health, ejection and round-robin state and
// the circuit breaker; each server's slots have a lock of their own. No
// lock is held across I/O or a wait, and none is taken while holding
// another.
package origin
