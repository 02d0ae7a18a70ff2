// Package cluster makes the edges of a region act as one cache: each key is
// stored once, by the member that owns it on a consistent-hash ring, found
// by every member, and losing a member moves only its share of the keys.
//
// # How it plugs into an edge
//
// A [Member] is one edge's membership. Build it with [New] before the edge,
// give the edge [Member.Transport] as the path of each site's fills
// (edge.Options.WrapUpstream), then [Member.Start] it with the edge's
// handler (a [PeerServer]):
//
//	node, err := cluster.New(cfg, cluster.Options{Logger: log})
//	h, err := edge.New(ecfg, edge.Options{
//		WrapUpstream: func(_ edge.SiteConfig, origin fill.Upstream) fill.Upstream {
//			return node.Transport(origin)
//		},
//	})
//	err = node.Start(h) // serves the peer endpoint, then joins the seeds
//	...
//	node.Leave(5 * time.Second) // graceful: the region drops us at once
//	node.Close()
//
// The package does not import the edge. The two meet in the leaf package
// fill, in signatures rather than context values: each fill comes to the
// Transport (and the Shield and Failover below it) with its fill.Info as a
// parameter (the key it routes by, and the peer request it serves, if
// any), and the peer endpoint hands each request it verified to
// [PeerServer.ServePeer] with the signing member and the signed hop
// (fill.Peer). The edge builds an Info from its own routing and from what
// ServePeer was told, never from a client's header fields, so a client
// cannot pose as a peer; between members, what a decision rests on is in
// the signature.
//
// # Peer fill
//
// When the edge misses a key, its fill goes through the Transport, which
// asks the key's owner over the peer protocol: the same GET (path and
// query byte for byte, the fill's headers, revalidation conditionals
// included) on the owner's peer endpoint, signed with the region's secret
// and the hop "owner" (see [HeaderPeerSignature]). The owner serves it
// from its cache or fills it from upstream, coalesced with every other
// request for the key, so a cold key asked for at every member at once
// reaches the origin once. The answer is marked with fill.PeerHeader
// and the asking edge keeps a short-lived copy only of hot keys. The
// owner's edge never forwards a peer's request to another peer (the loop
// guard), apart from the cache-only consult below.
//
// # Peer liveness
//
// "Is the peer alive" is kept apart from "how long does the fill take".
// While the owner's edge has no answer yet (its own fill waits on a slow
// origin), the peer endpoint sends an interim 102 Processing every
// PeerTimeout/4. The asker needs a sign of life (a 102 or the response
// header) within PeerTimeout, and again within each PeerTimeout after the
// last one; how long the fill itself takes is bounded only by the fill's
// context, which carries the site's first-byte timeout. So a slow origin
// costs one origin fetch per object for the whole CDN however slow it is,
// and nobody is suspected for it. The 102s are hop-by-hop: the edge
// relays only 103 Early Hints to clients, and askers that sign version 1
// (see below) get none.
//
// A peer is passed over for SuspectFor only for a peer-level failure:
// connection refused or not made within PeerTimeout, no sign of life
// within PeerTimeout, a reset or a broken body, or an answer without the
// peer's own Cache-Status entry (a proxy's 502, a 403 for a mismatched
// secret). An answer from the origin relayed by the peer, a 5xx included,
// is the answer. A fill whose owner failed goes to the key's live replica
// (Config.Replicas 2), then upstream; the client never sees the failure.
//
// Members whose rings disagree while a membership change spreads could
// each wait on the other for the same object (each thinks the other owns
// it, and a peer's request joins the member's own fill). A member that is
// itself asking a peer for an object refuses an owner fill of it with 508
// and HeaderPeerLoop; the asker fills upstream at once, suspecting no one.
//
// # Resuming a broken answer
//
// Answers up to 1 MiB are read whole before they are used, so that a peer
// dying mid-body is retried from the next source unseen. Larger answers
// stream; if the peer dies mid-body and the answer is a 200 with a strong
// ETag, the rest is asked from the next source of the same chain (the
// live replica, else upstream: shield, another region, origin) with
// "Range: bytes=N-" and "If-Range: <ETag>", and the edge reads one
// unbroken body. A shield's answer is resumed the same way, from the next
// shield region and then the origin: a link cut or tampered with mid-body
// (over mutual TLS a tampered record fails its MAC) is a broken answer
// like any other. The resumption must be a 206 of exactly the rest of the
// same representation (or a 200 of it, whose first N bytes are skipped);
// anything else, and any answer without a strong validator, ends the body
// with an error, a detectable truncation.
//
// # Membership
//
// Members find each other through hashicorp/memberlist (SWIM gossip) from
// seeds: a static list and/or a DNS name whose A/AAAA records are seeds.
// Gossip is encrypted and authenticated with a key derived from the
// secret, so only holders of the secret can announce a peer address. Each
// member's metadata carries its peer address, zone and weight; every
// join, leave, failure or update rebuilds the ring off the request path
// and swaps it in atomically, and requests read it without a lock.
//
// The region heals by itself after any restart order. A member alone
// tries its seeds every few hundred milliseconds (local) or seconds
// (lan). Once in the region, every rejoin interval (1s local, 10s lan) it
// joins again through every address it knows whose member it does not see
// alive: its seeds and the last gossip address of every member it saw
// alive within the forget period (10 minutes local, an hour lan). A member
// that came back alone (a seed with nobody to join, or one back after the
// others declared it dead) is thus found by the others within one
// interval. Addresses of live members are skipped, so a whole region
// makes no joins; the cost of a gone member is one connection attempt per
// interval until it is forgotten. (The published regions table names peer
// endpoints, not gossip addresses, so it is no seed.)
//
// # Replicas and handoff
//
// With Config.Replicas 2 the owner of a key asks the key's next replica
// (in another zone first) to take a copy whenever it fills the key from
// upstream; the replica fetches it from the owner (hop "replica"), so the
// copy costs no origin request, and a member whose owner fails asks the
// replica.
//
// Ownership changes consult the members that may hold a copy before
// upstream (hinted handoff, read repair): a key's owner that misses asks,
// from their caches only (hop "consult", answered only-if-cached, never
// filled, never forwarded: a miss is a 504), first the key's other
// replicas, and for ten minutes after a membership change the key's owner
// and replicas on the ring before it (for a member that just started: on
// the ring without it, who held its keys while it was away), at most two
// members, before it fills from upstream. The copy found is stored as the
// owner's own. Restarting a member with replicas 2 then costs about no
// origin fetch.
//
// # The origin shield, failover and purges
//
// Member.Shield sends a region's fills to the key's owner in a shield
// region (one origin fetch for the whole CDN), Member.Failover to another
// region's owner when this region's own path fails, and Member.Broadcast
// carries purges to every member and region. All of them use the same
// signed peer requests.
//
// Failures never amplify: a shield's or another region's answer is the
// answer whatever its status (the origin's 5xx goes back once, as the
// error or a stale copy); only a region or shield that does not answer is
// passed over. Failover to another region happens only when this region's
// path failed: no shield answered (and direct fills are not allowed), or
// no connection to the origin could be made. A timeout waiting for the
// origin, a reset, a 5xx or an open circuit breaker is the origin's
// trouble, which another region would meet too.
//
// Tier and loop decisions rest on the signed hop, never on a client's
// Via (edge names are public in every Via and Cache-Status): a fill that
// serves a "shield" hop, or any request signed by an edge of a shield
// region, goes to the origin, not to a shield again; a fill that serves a
// "shield" or "failover" hop, or a request signed by another region's
// edge, does not fail over again. The signature covers the hop
// ("meridian-peer-v2"); version 1 signatures (no hop) from members not yet
// upgraded are accepted with an empty hop, and decisions then rest on the
// signing member's name alone. Members that are not upgraded refuse
// version 2 (403), so a mixed region fills more from upstream until every
// member runs this version.
//
// # Mutual TLS on the links
//
// With Config.TLS every link between members (owner, replica and consult
// fills, shield and failover fills, purges and replication orders) runs on
// TLS 1.3 with HTTP/1.1: the peer endpoint asks for a client certificate,
// and each end checks the other's against the cluster CA (see
// [TLSConfig]); a certificate of another CA, an expired one, or none
// fails the handshake and is counted ([Member.TLSRefused]). The links gain
// confidentiality and integrity: an answer altered on the way fails the
// record's MAC, the ask fails like a peer that reset, and the fill goes to
// the next source; the asker never stores it. The signature stays the
// authorisation (who asks, for what, once), and the link's TLS is not the
// client's: the edge keys a peer's request by the asker's
// X-Forwarded-Proto. All members of a CDN run with TLS or without: a
// member on plain HTTP and one on TLS cannot talk, and fill from upstream.
//
// # Locks
//
// Member.life serializes Start, Leave and Close; mu guards the members, the
// metadata and the advertised addresses; smu the suspects; amu the
// objects this member is asking a peer for; kmu the addresses of members
// seen. Each is held for map operations only, never across network I/O
// or another of them (joinLoop copies what it needs under mu, then under
// kmu). memberlist's callbacks take mu and kmu under memberlist's own
// locks, so neither is ever held while calling memberlist. The request
// path reads the ring and addresses through an atomic pointer.
//
// # Presets
//
// Config.Preset picks memberlist's tuning: "lan" is memberlist's LAN
// defaults (a dead member is dropped within seconds on a real network);
// "local" probes every 200ms and suspects for 1s so that on loopback a
// dead member leaves the ring within about 2 s. Each number's reason is
// written next to it in preset.go.
package cluster
