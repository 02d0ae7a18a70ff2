package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed peer request. A member sends its name, the time,
// the hop (why it sends the request), a nonce (16 random bytes in hex, new
// for every request) and an HMAC-SHA256, under the region's secret, of
//
//	"meridian-peer-v4" LF method LF host LF request-target LF time LF name LF hop LF nonce LF to
//
// where host is the Host header, request-target the path and query
// exactly as on the request line, and to the name of the member the
// request is for (sent too, so that a member reached under another name,
// such as a regions table that misnames it, says so). The receiver
// refuses a request for another member, recomputes the MAC and compares in
// constant time. A signature
// is good for MaxClockSkew either side of its time, once, and at one
// member: the receiver remembers the signatures it accepted within that
// window (see replayCache) and refuses a replayed one, such as a purge
// captured on the link and sent again, and a request captured on its way
// to one member and sent to another fails there as a bad signature (each
// member's replay cache is its own, so without to it would be accepted
// once by every member). The nonce is what keeps two legitimate requests
// alike in every signed part and sent within the same second (two fills
// of one object with different Range or Accept-Encoding, the same purge
// twice) from sharing a signature; every attempt is signed anew.
//
// The hop is what the receiving edge's tier and loop decisions rest on
// (fill.Info.Peer), never a client's Via: "owner" (a member asks the
// key's owner), "replica" (a replica copies the key from its owner),
// "consult" (a new owner asks the previous owner or a replica for its
// copy: answered from the cache only), "shield" (another region's owner
// asks the origin shield), "failover" (another region whose own path
// failed) and "internal" (purges and replication orders).
//
// Versions 3 ("meridian-peer-v3", "v3=": no to), 2 ("meridian-peer-v2",
// "v2=": no to, no nonce) and 1 ("meridian-peer-v1", "v1=": no to, no
// nonce, no hop) are still accepted from members not yet upgraded, once
// each at each member (their requests can be replayed to another member
// within the skew, which version 4 ends); two version 1 or 2 requests
// alike within a second share a signature, so the second is refused and
// its sender falls back on the origin. Version 1 requests get an empty
// hop; they are treated as owner fills, and the decisions fall back on the
// signing member's name. Members that only know an older version refuse
// newer requests until they are upgraded too (their senders fall back on
// the origin meanwhile).
const (
	// HeaderPeerName carries the sending member's name.
	HeaderPeerName = "Meridian-Peer-Name"
	// HeaderPeerTime carries the signing time in Unix seconds.
	HeaderPeerTime = "Meridian-Peer-Time"
	// HeaderPeerHop carries the hop: why the request was sent.
	HeaderPeerHop = "Meridian-Peer-Hop"
	// HeaderPeerNonce carries 32 hex digits, new for every request.
	HeaderPeerNonce = "Meridian-Peer-Nonce"
	// HeaderPeerTo carries the name of the member the request is for.
	HeaderPeerTo = "Meridian-Peer-To"
	// HeaderPeerSignature carries "v4=" and the hex HMAC-SHA256.
	HeaderPeerSignature = "Meridian-Peer-Signature"
)

// The hops of a signed peer request (HeaderPeerHop).
const (
	hopOwner    = "owner"
	hopReplica  = "replica"
	hopConsult  = "consult"
	hopShield   = "shield"
	hopFailover = "failover"
	hopInternal = "internal"
)

// validHop reports whether h is a hop this version knows.
func validHop(h string) bool {
	switch h {
	case hopOwner, hopReplica, hopConsult, hopShield, hopFailover, hopInternal:
		return true
	}
	return false
}

const (
	sigContextV1 = "meridian-peer-v1"
	sigContextV2 = "meridian-peer-v2"
	sigContextV3 = "meridian-peer-v3"
	sigContext   = "meridian-peer-v4"
	sigPrefixV1  = "v1="
	sigPrefixV2  = "v2="
	sigPrefixV3  = "v3="
	sigPrefix    = "v4="
	// nonceBytes is the nonce's size before hex encoding.
	nonceBytes = 16
	// maxTimeDigits bounds the timestamp: Unix seconds fit in 19 digits.
	maxTimeDigits = 19
)

// Reasons a peer request is refused. They are wrapped with detail.
var (
	errUnsigned     = errors.New("unsigned")
	errMalformed    = errors.New("malformed signature headers")
	errClockSkew    = errors.New("timestamp outside the allowed clock skew")
	errBadSignature = errors.New("bad signature")
	errNotForMe     = errors.New("signed for another member")
)

// signer signs and verifies peer requests with the region's secret.
type signer struct {
	key []byte
	// self is the member's name: what a request for it signs as to.
	self string
	skew time.Duration
	now  func() time.Time
	// seen is the replay cache: nil accepts a signature any number of
	// times within the skew (for tests of the signature alone).
	seen *replayCache
}

// mac returns the version 4 HMAC of a request's signed parts.
func (s *signer) mac(method, host, target, ts, name, hop, nonce, to string) []byte {
	return s.macParts(sigContext, method, host, target, ts, name, hop, nonce, to)
}

// macV3 returns the version 3 HMAC (no to).
func (s *signer) macV3(method, host, target, ts, name, hop, nonce string) []byte {
	return s.macParts(sigContextV3, method, host, target, ts, name, hop, nonce)
}

// macV2 returns the version 2 HMAC (no nonce).
func (s *signer) macV2(method, host, target, ts, name, hop string) []byte {
	return s.macParts(sigContextV2, method, host, target, ts, name, hop)
}

// macV1 returns the version 1 HMAC (no hop).
func (s *signer) macV1(method, host, target, ts, name string) []byte {
	return s.macParts(sigContextV1, method, host, target, ts, name)
}

func (s *signer) macParts(context string, parts ...string) []byte {
	size := len(context)
	for _, part := range parts {
		size += 1 + len(part)
	}
	msg := append(make([]byte, 0, size), context...)
	for _, part := range parts {
		msg = append(msg, '\n')
		msg = append(msg, part...)
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return m.Sum(make([]byte, 0, sha256.Size))
}

// sign sets the signature headers on h for a request from the member
// named name to the member named to, sent for hop, with a new nonce: call
// it for every attempt.
func (s *signer) sign(h http.Header, method, host, target, name, hop, to string) {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	var n [nonceBytes]byte
	rand.Read(n[:]) // never fails (crypto/rand)
	nonce := hex.EncodeToString(n[:])
	h[HeaderPeerName] = []string{name}
	h[HeaderPeerTime] = []string{ts}
	h[HeaderPeerHop] = []string{hop}
	h[HeaderPeerNonce] = []string{nonce}
	h[HeaderPeerTo] = []string{to}
	h[HeaderPeerSignature] = []string{sigPrefix + hex.EncodeToString(s.mac(method, host, target, ts, name, hop, nonce, to))}
}

// verify checks a request's signature headers and returns the signing
// member's name and the signed hop ("" for a version 1 signature). With a
// replay cache, a good signature is accepted once: verify records it, and
// fails with errReplayed when it comes again (errReplayFull when the cache
// is full). Every error says why the request is refused.
func (s *signer) verify(method, host, target string, h http.Header) (name, hop string, err error) {
	if len(h[HeaderPeerSignature]) == 0 {
		return "", "", fmt.Errorf("%w: no %s header", errUnsigned, HeaderPeerSignature)
	}
	name, okName := single(h, HeaderPeerName)
	ts, okTime := single(h, HeaderPeerTime)
	sig, okSig := single(h, HeaderPeerSignature)
	switch {
	case !okName:
		return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerName)
	case !okTime:
		return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerTime)
	case !okSig:
		return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerSignature)
	}
	if err := checkName(name); err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", errMalformed, HeaderPeerName, err)
	}
	t, err := parseUnix(ts)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", errMalformed, HeaderPeerTime, err)
	}
	hexSig, v4 := strings.CutPrefix(sig, sigPrefix)
	v1, v2, v3 := false, false, false
	if !v4 {
		hexSig, v3 = strings.CutPrefix(sig, sigPrefixV3)
	}
	if !v4 && !v3 {
		hexSig, v2 = strings.CutPrefix(sig, sigPrefixV2)
	}
	if !v4 && !v3 && !v2 {
		hexSig, v1 = strings.CutPrefix(sig, sigPrefixV1)
	}
	if !v1 && !v2 && !v3 && !v4 || len(hexSig) != 2*sha256.Size {
		return "", "", fmt.Errorf("%w: %s: want %q and %d hex digits", errMalformed, HeaderPeerSignature, sigPrefix, 2*sha256.Size)
	}
	var nonce string
	if v3 || v4 {
		var ok bool
		if nonce, ok = single(h, HeaderPeerNonce); !ok {
			return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerNonce)
		}
		if len(nonce) != 2*nonceBytes || !isLowerHex(nonce) {
			return "", "", fmt.Errorf("%w: %s: want %d lower-case hex digits", errMalformed, HeaderPeerNonce, 2*nonceBytes)
		}
	}
	if v4 {
		to, ok := single(h, HeaderPeerTo)
		if !ok {
			return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerTo)
		}
		if to != s.self {
			return "", "", fmt.Errorf("%w: %s is %q, this member is %q (does a regions table name it otherwise?)", errNotForMe, HeaderPeerTo, to, s.self)
		}
	}
	if v2 || v3 || v4 {
		var ok bool
		if hop, ok = single(h, HeaderPeerHop); !ok {
			return "", "", fmt.Errorf("%w: want exactly one %s", errMalformed, HeaderPeerHop)
		}
		if !validHop(hop) {
			return "", "", fmt.Errorf("%w: %s: unknown hop %q", errMalformed, HeaderPeerHop, hop)
		}
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return "", "", fmt.Errorf("%w: %s: not hex", errMalformed, HeaderPeerSignature)
	}
	if strings.ContainsAny(method, "\n\r") || strings.ContainsAny(host, "\n\r") || strings.ContainsAny(target, "\n\r") {
		return "", "", fmt.Errorf("%w: line break in the request line or Host", errMalformed)
	}
	now := s.now().Unix()
	if d := now - t; d > int64(s.skew/time.Second) || -d > int64(s.skew/time.Second) {
		return "", "", fmt.Errorf("%w (%ds off, at most %s)", errClockSkew, now-t, s.skew)
	}
	var want []byte
	switch {
	case v4:
		want = s.mac(method, host, target, ts, name, hop, nonce, s.self)
	case v3:
		want = s.macV3(method, host, target, ts, name, hop, nonce)
	case v2:
		want = s.macV2(method, host, target, ts, name, hop)
	default:
		want = s.macV1(method, host, target, ts, name)
	}
	if !hmac.Equal(got, want) {
		return "", "", errBadSignature
	}
	if s.seen != nil {
		switch err := s.seen.use(got, t, now); {
		case errors.Is(err, errReplayFull):
			return "", "", fmt.Errorf("%w (%d signatures within the %s skew)", err, s.seen.max, s.skew)
		case err != nil:
			return "", "", err
		}
	}
	return name, hop, nil
}

// isLowerHex reports whether s is lower-case hex digits only.
func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// single returns the one value of a header field.
func single(h http.Header, key string) (string, bool) {
	vs := h[key]
	if len(vs) != 1 {
		return "", false
	}
	return vs[0], true
}

// parseUnix parses decimal Unix seconds, digits only.
func parseUnix(s string) (int64, error) {
	if s == "" || len(s) > maxTimeDigits {
		return 0, errors.New("want 1 to 19 decimal digits")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("want decimal digits")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// stripSignature removes the signature headers from h.
func stripSignature(h http.Header) {
	delete(h, HeaderPeerName)
	delete(h, HeaderPeerTime)
	delete(h, HeaderPeerHop)
	delete(h, HeaderPeerNonce)
	delete(h, HeaderPeerTo)
	delete(h, HeaderPeerSignature)
}
