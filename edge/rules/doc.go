// Package rules is a site's request and response rules, as an operator
// writes them in the site's config: header rules (set, add, remove on the
// request to the origin and on the response to the client), redirects and
// rewrites, signed URLs and geo access control. It is pure: it reads a
// request's parts and a header, and decides; the edge applies the
// decision at one place of its request path (see edge's siterules.go).
//
// The order in which a request meets the rules, written down once:
//
//  1. Redirects and rewrites ([Redirect]), in the order listed: the first
//     that matches wins. A redirect answers at once (3xx with Location);
//     a rewrite is remembered and applied at step 4.
//  2. Geo access control ([GeoAccessConfig]): the first geo rule whose
//     path matches allows or denies the client's country and continent
//     (403 with the configured body).
//  3. Signed URLs ([SignedURLConfig]): under the signed prefixes, the
//     token and expiry in the query are verified (403 when bad or
//     expired) and then removed: neither the cache key nor the origin
//     ever sees them.
//  4. The rewrite, if one matched: the path that is keyed and sent to
//     the origin.
//  5. Request header rules, on the request as keyed and forwarded (so a
//     header that the origin varies on is the one looked up).
//  6. The cache (lookup, fill), which stores the origin's response as it
//     came.
//  7. Response header rules, on every answer to the client: hits, misses,
//     passes, errors, and the redirects and 403s above.
//
// Every path condition (prefix, glob) is matched against the request's
// path decoded, with dot segments resolved and repeated slashes merged
// ([CleanPath]), as the client asked for it (before a rewrite): so
// "/a/../private/x" and "/private//x" cannot slip past a rule for
// "/private/".
package rules
