// Package cluster makes the edges of a region act as one cache: each key is
// stored once, by the member that owns it on a consistent-hash ring, found
// by every member, and losing a member moves only its share of the keys.
//
// # How it plugs into an edge
//
// A [Node] is one edge's membership. Build it with [New] before the edge,
// give the edge [Node.Transport] as the wrapper of each site's upstream
// (edge.Options.WrapUpstream), then [Node.Start] it with the edge's
// handler:
//
//	node, err := cluster.New(cfg, cluster.Options{Logger: log})
//	h, err := edge.New(ecfg, edge.Options{
//		WrapUpstream: func(_ edge.SiteConfig, up http.RoundTripper) http.RoundTripper {
//			return node.Transport(up)
//		},
//	})
//	err = node.Start(h) // serves the peer endpoint, then joins the seeds
//	...
//	node.Leave(5 * time.Second) // graceful: the region drops us at once
//	node.Close()
//
// # Peer fill
//
// When the edge misses a key, its fill goes through the Transport, which
// asks the key's owner over the peer protocol: the same GET (path and
// query byte for byte, the fill's headers, revalidation conditionals
// included) on the owner's peer endpoint, signed with the region's secret
// (see [HeaderPeerSignature]). The owner serves it from its cache or fills
// it from the origin, coalesced with every other request for the key, so a
// cold key asked for at every member at once reaches the origin once. The
// answer is marked with edge.PeerFillHeader and the asking edge keeps a
// short-lived copy only of hot keys. The owner's edge never forwards a
// peer's request again (edge.FromPeer, the loop guard).
//
// If the owner does not answer usefully (refused, no response headers
// within PeerTimeout, a broken body, or any answer that does not carry the
// owner's own Cache-Status entry, such as a proxy's 502 or a 403 for a
// mismatched secret), the fill goes to the origin instead, the client never
// sees the failure, and the owner is passed over for SuspectFor. Answers
// up to 1 MiB are read whole before they are used so that a peer dying
// mid-body is retried from the origin too; larger bodies stream.
//
// # Membership
//
// Members find each other through hashicorp/memberlist (SWIM gossip) from
// seeds: a static list and/or a DNS name whose A/AAAA records are seeds,
// retried in the background while the member is alone. Gossip is
// encrypted and authenticated with a key derived from the secret, so only
// holders of the secret can announce a peer address. Each member's
// metadata carries its peer address, zone and weight; every join, leave,
// failure or update rebuilds the ring off the request path and swaps it in
// atomically, and requests read it without a lock.
//
// # Replicas, the origin shield, failover and purges
//
// With Config.Replicas 2 the owner of a key asks the key's next replica
// (in another zone first) to take a copy whenever it fills the key from
// upstream; the replica fetches it from the owner, so the copy costs no
// origin request, and a non-owner whose owner stops answering asks the
// replica. Losing a member then sends few of its keys to the origin (in
// the tests: about 4% instead of a third), for twice the memory.
//
// Node.Shield sends a region's fills to the key's owner in a shield
// region (one origin fetch for the whole CDN), Node.Failover to another
// region's owner when this region's own path fails, and Node.Broadcast
// carries purges to every member and region. All of them use the same
// signed peer requests.
//
// # Presets
//
// Config.Preset picks memberlist's tuning: "lan" is memberlist's LAN
// defaults (a dead member is dropped within seconds on a real network);
// "local" probes every 200ms and suspects for 1s so that on loopback a
// dead member leaves the ring within about 2 s. Each number's reason is
// written next to it in preset.go.
package cluster
