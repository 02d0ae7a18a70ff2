// Package geo steers clients to the nearest healthy region of the CDN: it
// locates a client with a GeoIP database (or the EDNS Client Subnet of its
// resolver), orders regions by great-circle distance, tracks each region's
// health with hysteresis, and answers over DNS and HTTP.
//
// The parts, from the bottom up:
//
//   - [Point] and [Point.DistanceKm]: positions in degrees, haversine
//     distances in km; [CountryCentroid] and [ContinentCentroid] for coarse
//     records.
//   - [Locator]: a GeoIP2/GeoLite2 City or Country database turned into a
//     [Location] (coordinates when precise enough, else a centroid).
//   - [Regions] and [Picker]: regions are data; a Picker chooses among the
//     healthy ones ([Nearest], or [Spread] to share a failed region's
//     clients among several neighbours by capacity).
//   - [Service]: probes every edge on its client-facing address, keeps
//     the health state (per edge: k failures down, m successes up; per
//     region, from its edges: a growing hold-down and stepped traffic to
//     come back), and serves [Service.DNSHandler] and [Service.Handler].
//     Answers name only a region's healthy edges (all of them in DNS; one
//     per client, by rendezvous hashing, in [Answer.Edge] and /redirect).
//
// Clients whose region is down go to the nearest region that can take
// them, however many regions are down. Health is ignored (fail open, every
// client to its nearest region) only when no edge of any region answers:
// then the prober is more likely broken than the whole CDN. A prober
// that fails its self-check (a local target that answers at once unless
// the prober is starved) holds the last known state instead: that round's
// failures are no evidence.
//
// A DNS client subnet is placed by the GeoIP networks inside it, and the
// answer's ECS scope says how much of it the answer holds for.
//
// Every answer is a deterministic function of the client's location, the
// region table and the health state, so steering instances in different
// regions that see the same probe results give the same answers.
//
// # Locks
//
// Answers read the health view through an atomic pointer, without a
// lock. Service.mu guards only Run's and Close's lifecycle (running,
// closed, the cancel function); it is a leaf, never held across I/O.
package geo
