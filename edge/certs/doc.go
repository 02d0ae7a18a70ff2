// Package certs is the edge's certificate source: one GetCertificate for
// every TLS handshake of the HTTPS (HTTP/1.1 and HTTP/2) and HTTP/3
// listeners, which share one tls.Config.
//
// A [Source] serves certificates from files, chosen by the client's
// server name (SNI): a site's own certificate for the site's host names,
// then the certificates list by exact name, then by wildcard
// ("*.example.com" covers a.example.com, not example.com nor a.b.example.com),
// then the default certificate (tls.cert_file), which also serves clients
// that send no server name. A name nothing covers fails the handshake.
//
// Files are re-read without a restart: all of them on [Source.Reload]
// (the node calls it on SIGHUP, with its new config; a certificate that
// does not load refuses the whole reload and the running ones keep
// serving, as nginx does), and each key pair whose modification time or
// size changed at every ReloadInterval (a pair that does not load then
// keeps its running certificate and the error is logged once). A new
// certificate is served from the next handshake on; handshakes in
// progress and open connections keep the one they have.
//
// Sites with ACME get certificates obtained and renewed automatically by
// certmagic (github.com/caddyserver/certmagic): one per host name, with
// the http-01 challenge answered on the plain listener ([Source.HTTPChallenge]
// wraps its handler; port 80 must reach it) and tls-alpn-01 on the HTTPS
// listener (ALPN acme-tls/1, see [Source.NextProtos]; port 443), renewed
// when a third of the lifetime is left or when the CA's renewal
// information (ARI) says so, OCSP responses stapled when the CA offers
// them (certificates from files are served as they are, unstapled).
//
// [Watched] keeps any other value loaded from files current the same way
// (the poll by modification time and size, Reload, a refused load keeping
// the running value): the cluster's link certificate and CA
// (edge/cluster) are one. [Source.Expiries] and [ExpiryCollector] export
// when each served certificate expires
// (meridian_tls_certificate_expiry_timestamp_seconds).
//
// # Sharing one CA order among a region's edges
//
// The account, certificates, keys, challenge tokens and locks live in
// tls.acme.storage, a directory. Edges that share it ask the CA once per
// name: the first takes the name's lock and orders, the others wait on
// the lock and then load what it stored; any of them can answer the
// challenge, since its token is in the storage too (a load balancer may
// send the CA's validation to any edge). A multi-host deployment must
// therefore give every edge of a region the same directory: a shared
// file system with atomic renames and exclusive file creation
// (NFSv4, CephFS, EFS, a Kubernetes ReadWriteMany volume). certmagic's
// locks are lock files refreshed while held and taken over when stale,
// so an edge that dies holding one delays the others by a few seconds,
// not for ever. Without a shared directory every edge orders for itself,
// which is correct but asks the CA N times (and meets its rate limits
// sooner).
//
// # Locks
//
// Source.mu serializes changes (Apply, the file poll) and is held while
// certificate files are read, never by GetCertificate, which reads an
// immutable table through an atomic pointer. The ACME manager's mutex is
// taken after Source.mu, never before; certmagic's own locks are its own.
package certs
