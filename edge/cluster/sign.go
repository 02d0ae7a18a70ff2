package cluster

import (
	"crypto/hmac"
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
// the hop (why it sends the request) and an HMAC-SHA256, under the
// region's secret, of
//
//	"meridian-peer-v2" LF method LF host LF request-target LF time LF name LF hop
//
// where host is the Host header and request-target the path and query
// exactly as on the request line. The receiver recomputes it and compares
// in constant time. A signature is good for MaxClockSkew either side of
// its time; replaying one within that window can only repeat the same
// read-only GET or HEAD for the same hop.
//
// The hop is what the receiving edge's tier and loop decisions rest on
// (edge.FillInfo.Peer), never a client's Via: "owner" (a member asks the
// key's owner), "replica" (a replica copies the key from its owner),
// "consult" (a new owner asks the previous owner or a replica for its
// copy: answered from the cache only), "shield" (another region's owner
// asks the origin shield), "failover" (another region whose own path
// failed) and "internal" (purges and replication orders).
//
// Version 1 ("meridian-peer-v1", the same parts without the hop, "v1="
// signatures) is still accepted from members not yet upgraded, with an
// empty hop; its requests are treated as owner fills, and the decisions
// fall back on the signing member's name.
const (
	// HeaderPeerName carries the sending member's name.
	HeaderPeerName = "Meridian-Peer-Name"
	// HeaderPeerTime carries the signing time in Unix seconds.
	HeaderPeerTime = "Meridian-Peer-Time"
	// HeaderPeerHop carries the hop: why the request was sent.
	HeaderPeerHop = "Meridian-Peer-Hop"
	// HeaderPeerSignature carries "v2=" and the hex HMAC-SHA256.
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
	sigContext   = "meridian-peer-v2"
	sigPrefixV1  = "v1="
	sigPrefix    = "v2="
	// maxTimeDigits bounds the timestamp: Unix seconds fit in 19 digits.
	maxTimeDigits = 19
)

// Reasons a peer request is refused. They are wrapped with detail.
var (
	errUnsigned     = errors.New("unsigned")
	errMalformed    = errors.New("malformed signature headers")
	errClockSkew    = errors.New("timestamp outside the allowed clock skew")
	errBadSignature = errors.New("bad signature")
)

// signer signs and verifies peer requests with the region's secret.
type signer struct {
	key  []byte
	skew time.Duration
	now  func() time.Time
}

// mac returns the version 2 HMAC of a request's signed parts.
func (s *signer) mac(method, host, target, ts, name, hop string) []byte {
	return s.macParts(sigContext, method, host, target, ts, name, hop)
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
// named name, sent for hop.
func (s *signer) sign(h http.Header, method, host, target, name, hop string) {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	h[HeaderPeerName] = []string{name}
	h[HeaderPeerTime] = []string{ts}
	h[HeaderPeerHop] = []string{hop}
	h[HeaderPeerSignature] = []string{sigPrefix + hex.EncodeToString(s.mac(method, host, target, ts, name, hop))}
}

// verify checks a request's signature headers and returns the signing
// member's name and the signed hop ("" for a version 1 signature). Every
// error says why the request is refused.
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
	hexSig, v2 := strings.CutPrefix(sig, sigPrefix)
	v1 := false
	if !v2 {
		hexSig, v1 = strings.CutPrefix(sig, sigPrefixV1)
	}
	if !v1 && !v2 || len(hexSig) != 2*sha256.Size {
		return "", "", fmt.Errorf("%w: %s: want %q and %d hex digits", errMalformed, HeaderPeerSignature, sigPrefix, 2*sha256.Size)
	}
	if v2 {
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
	want := s.macV1(method, host, target, ts, name)
	if v2 {
		want = s.mac(method, host, target, ts, name, hop)
	}
	if !hmac.Equal(got, want) {
		return "", "", errBadSignature
	}
	return name, hop, nil
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
	delete(h, HeaderPeerSignature)
}
