package cluster

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

var signTime = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testSigner(now time.Time) *signer {
	return &signer{key: []byte(testSecret), skew: 30 * time.Second, now: func() time.Time { return now }}
}

func TestVerify(t *testing.T) {
	signed := func(at time.Time) http.Header {
		h := http.Header{}
		testSigner(at).sign(h, "GET", "site.test", "/a?b=1", "edge1", hopOwner, testSigner(at).self)
		return h
	}
	with := func(h http.Header, k, v string) http.Header {
		h = h.Clone()
		h.Set(k, v)
		return h
	}
	good := signed(signTime)
	cases := []struct {
		name                 string
		method, host, target string
		h                    http.Header
		want                 error // nil: accepted
	}{
		{"good", "GET", "site.test", "/a?b=1", good, nil},
		{"good HEAD", "HEAD", "site.test", "/a?b=1", func() http.Header {
			h := http.Header{}
			testSigner(signTime).sign(h, "HEAD", "site.test", "/a?b=1", "edge1", hopOwner, testSigner(signTime).self)
			return h
		}(), nil},
		{"30s old", "GET", "site.test", "/a?b=1", signed(signTime.Add(-30 * time.Second)), nil},
		{"30s ahead", "GET", "site.test", "/a?b=1", signed(signTime.Add(30 * time.Second)), nil},
		{"31s old", "GET", "site.test", "/a?b=1", signed(signTime.Add(-31 * time.Second)), errClockSkew},
		{"31s ahead", "GET", "site.test", "/a?b=1", signed(signTime.Add(31 * time.Second)), errClockSkew},
		{"unsigned", "GET", "site.test", "/a?b=1", http.Header{}, errUnsigned},
		{"other method", "HEAD", "site.test", "/a?b=1", good, errBadSignature},
		{"other host", "GET", "Site.test", "/a?b=1", good, errBadSignature},
		{"other target", "GET", "site.test", "/a?b=2", good, errBadSignature},
		{"other name", "GET", "site.test", "/a?b=1", with(good, HeaderPeerName, "edge2"), errBadSignature},
		{"other time", "GET", "site.test", "/a?b=1", with(good, HeaderPeerTime, "1795780801"), errBadSignature},
		{"upper-case hex", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, strings.ToUpper(good.Get(HeaderPeerSignature))), errMalformed},
		{"no name", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Del(HeaderPeerName); return h }(), errMalformed},
		{"no time", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Del(HeaderPeerTime); return h }(), errMalformed},
		{"two times", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Add(HeaderPeerTime, "1"); return h }(), errMalformed},
		{"bad name", "GET", "site.test", "/a?b=1", with(good, HeaderPeerName, "edge 1"), errMalformed},
		{"signed time", "GET", "site.test", "/a?b=1", with(good, HeaderPeerTime, "-1795780800"), errMalformed},
		{"huge time", "GET", "site.test", "/a?b=1", with(good, HeaderPeerTime, "99999999999999999999"), errMalformed},
		{"short signature", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, "v2=abcd"), errMalformed},
		{"no version", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, strings.TrimPrefix(good.Get(HeaderPeerSignature), "v4=")), errMalformed},
		{"other hop", "GET", "site.test", "/a?b=1", with(good, HeaderPeerHop, hopShield), errBadSignature},
		{"unknown hop", "GET", "site.test", "/a?b=1", with(good, HeaderPeerHop, "admin"), errMalformed},
		{"no hop", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Del(HeaderPeerHop); return h }(), errMalformed},
		{"two hops", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Add(HeaderPeerHop, hopOwner); return h }(), errMalformed},
		// A v4 MAC presented as v3, v2 or v1 is another input.
		{"v4 MAC as v3", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, "v3="+strings.TrimPrefix(good.Get(HeaderPeerSignature), "v4=")), errBadSignature},
		{"v4 MAC as v2", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, "v2="+strings.TrimPrefix(good.Get(HeaderPeerSignature), "v4=")), errBadSignature},
		{"v4 MAC as v1", "GET", "site.test", "/a?b=1", with(good, HeaderPeerSignature, "v1="+strings.TrimPrefix(good.Get(HeaderPeerSignature), "v4=")), errBadSignature},
		// Signed for another member: refused here (captured on its way
		// there and replayed to this one).
		{"for another member", "GET", "site.test", "/a?b=1", func() http.Header {
			h := http.Header{}
			testSigner(signTime).sign(h, "GET", "site.test", "/a?b=1", "edge1", hopOwner, "edge2")
			return h
		}(), errNotForMe},
		{"to rewritten", "GET", "site.test", "/a?b=1", func() http.Header {
			h := http.Header{}
			testSigner(signTime).sign(h, "GET", "site.test", "/a?b=1", "edge1", hopOwner, "edge2")
			h.Set(HeaderPeerTo, "")
			return h
		}(), errBadSignature},
		{"no to", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Del(HeaderPeerTo); return h }(), errMalformed},
		// A member not yet upgraded signs version 3 (no to): accepted.
		{"v3 from an older member", "GET", "site.test", "/a?b=1", func() http.Header {
			h := good.Clone()
			s := testSigner(signTime)
			h.Set(HeaderPeerSignature, sigPrefixV3+hex.EncodeToString(s.macV3("GET", "site.test", "/a?b=1", h.Get(HeaderPeerTime), "edge1", hopOwner, h.Get(HeaderPeerNonce))))
			return h
		}(), nil},
		{"other nonce", "GET", "site.test", "/a?b=1", with(good, HeaderPeerNonce, strings.Repeat("0", 32)), errBadSignature},
		{"no nonce", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Del(HeaderPeerNonce); return h }(), errMalformed},
		{"two nonces", "GET", "site.test", "/a?b=1", func() http.Header { h := good.Clone(); h.Add(HeaderPeerNonce, strings.Repeat("0", 32)); return h }(), errMalformed},
		{"upper-case nonce", "GET", "site.test", "/a?b=1", with(good, HeaderPeerNonce, strings.ToUpper(good.Get(HeaderPeerNonce))), errMalformed},
		{"short nonce", "GET", "site.test", "/a?b=1", with(good, HeaderPeerNonce, "abcd"), errMalformed},
		{"line break", "GET", "site.test\nx", "/a?b=1", good, errMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name, hop, err := testSigner(signTime).verify(tc.method, tc.host, tc.target, tc.h)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == nil && (name != "edge1" || hop != hopOwner):
				t.Fatalf("name %q hop %q, want edge1 and %q", name, hop, hopOwner)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("verify = %v, want %v", err, tc.want)
			}
		})
	}
	other := &signer{key: []byte("another-secret-of-16+"), skew: 30 * time.Second, now: func() time.Time { return signTime }}
	if _, _, err := other.verify("GET", "site.test", "/a?b=1", good); !errors.Is(err, errBadSignature) {
		t.Errorf("another secret: %v, want %v", err, errBadSignature)
	}
}

// A member not yet upgraded signs version 1 (no hop): it is accepted with
// an empty hop, and a hop header it did not sign is not believed.
func TestVerifyVersion1(t *testing.T) {
	s := testSigner(signTime)
	ts := "1795780800" // signTime
	h := http.Header{
		HeaderPeerName:      {"edge1"},
		HeaderPeerTime:      {ts},
		HeaderPeerSignature: {sigPrefixV1 + hex.EncodeToString(s.macV1("GET", "site.test", "/a", ts, "edge1"))},
	}
	name, hop, err := s.verify("GET", "site.test", "/a", h)
	if err != nil || name != "edge1" || hop != "" {
		t.Fatalf("v1: %q %q %v, want edge1, no hop", name, hop, err)
	}
	h.Set(HeaderPeerHop, hopShield) // added by someone without the secret
	if _, hop, err := s.verify("GET", "site.test", "/a", h); err != nil || hop != "" {
		t.Fatalf("v1 with an unsigned hop: hop %q, %v; want it ignored", hop, err)
	}
}

// A member not yet upgraded signs version 2 (no nonce): it is accepted,
// with its hop, and a nonce header it did not sign changes nothing.
func TestVerifyVersion2(t *testing.T) {
	s := testSigner(signTime)
	ts := "1795780800" // signTime
	h := http.Header{
		HeaderPeerName:      {"edge1"},
		HeaderPeerTime:      {ts},
		HeaderPeerHop:       {hopShield},
		HeaderPeerSignature: {sigPrefixV2 + hex.EncodeToString(s.macV2("GET", "site.test", "/a", ts, "edge1", hopShield))},
	}
	name, hop, err := s.verify("GET", "site.test", "/a", h)
	if err != nil || name != "edge1" || hop != hopShield {
		t.Fatalf("v2: %q %q %v, want edge1, shield", name, hop, err)
	}
	h.Set(HeaderPeerNonce, strings.Repeat("0", 32))
	if _, _, err := s.verify("GET", "site.test", "/a", h); err != nil {
		t.Fatalf("v2 with an unsigned nonce: %v", err)
	}
}

// FuzzVerify feeds arbitrary signature headers and request parts to
// verify: it must never panic, never accept a signature other than the
// secret's MAC of exactly those parts, and accept a request signed with
// the secret only for the parts it was signed for.
func FuzzVerify(f *testing.F) {
	f.Add("GET", "site.test", "/a?b=1", "edge1", "1795780800", "owner", "v2=00", "")
	f.Add("HEAD", "site.test", "/", "edge-2.zone_a", "1795780830", "shield", "v2="+strings.Repeat("ab", 32), "")
	f.Add("GET", "site.test", "/a%2Fb?c=%20", "edge1", "0", "", "v1="+strings.Repeat("0", 64), "")
	f.Add("POST", "", "*", "", "", "", "", "")
	f.Add("GET", "h\nx", "/\r\n", "a\nb", "17957808001795780800", "own\ner", "v3=zz", "zz")
	f.Add("GET", "site.test", "/a?b=1", "edge1", "1795780800", "owner", "v3="+strings.Repeat("ab", 32), strings.Repeat("0f", 16))
	f.Add("GET", "site.test", "/a?b=1", "edge1", "1795780800", "owner", "v4="+strings.Repeat("ab", 32), strings.Repeat("0f", 16))
	f.Fuzz(func(t *testing.T, method, host, target, name, ts, hop, sig, nonce string) {
		s := testSigner(signTime)
		h := http.Header{}
		for k, v := range map[string]string{HeaderPeerName: name, HeaderPeerTime: ts, HeaderPeerHop: hop, HeaderPeerSignature: sig, HeaderPeerNonce: nonce} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		if from, gotHop, err := s.verify(method, host, target, h); err == nil {
			// Only the MAC made with the secret, within the skew, from
			// the member named, for the hop, opens the door.
			v4 := sigPrefix + hex.EncodeToString(s.mac(method, host, target, ts, name, hop, nonce, s.self))
			v3 := sigPrefixV3 + hex.EncodeToString(s.macV3(method, host, target, ts, name, hop, nonce))
			v2 := sigPrefixV2 + hex.EncodeToString(s.macV2(method, host, target, ts, name, hop))
			v1 := sigPrefixV1 + hex.EncodeToString(s.macV1(method, host, target, ts, name))
			switch {
			case from != name:
				t.Fatalf("accepted name %q, signed %q", from, name)
			case (sig == v4 || sig == v3 || sig == v2) && gotHop != hop:
				t.Fatalf("accepted hop %q, signed %q", gotHop, hop)
			case sig == v1 && gotHop != "":
				t.Fatalf("a v1 signature carried hop %q", gotHop)
			case sig != v4 && sig != v3 && sig != v2 && sig != v1:
				t.Fatalf("accepted signature %q from %q; only %q (or v3 %q, v2 %q, v1 %q) is valid", sig, from, v4, v3, v2, v1)
			}
			if at, _ := parseUnix(ts); at < signTime.Unix()-30 || at > signTime.Unix()+30 {
				t.Fatalf("accepted time %s outside the skew", ts)
			}
		}

		h = http.Header{}
		s.sign(h, method, host, target, "edge1", hopOwner, s.self)
		clean := !strings.ContainsAny(method+host+target, "\r\n")
		from, _, err := s.verify(method, host, target, h)
		if clean && (err != nil || from != "edge1") {
			t.Fatalf("refused its own signature: %v", err)
		}
		if !clean && err == nil {
			t.Fatal("accepted a line break in the signed parts")
		}
		if _, _, err := s.verify(method, host, target+"x", h); err == nil {
			t.Fatal("accepted a tampered target")
		}
		if _, _, err := s.verify(method, host+"x", target, h); err == nil {
			t.Fatal("accepted a tampered host")
		}
	})
}

func TestDecodeMetadata(t *testing.T) {
	cases := []struct {
		in   string
		want metadata
		err  bool
	}{
		{`{"p":"10.0.0.1:7947","z":"a","w":2}`, metadata{Peer: "10.0.0.1:7947", Zone: "a", Weight: 2}, false},
		{`{"p":"[::1]:7947"}`, metadata{Peer: "[::1]:7947"}, false},
		{`{"p":"10.0.0.1"}`, metadata{}, true},
		{`{"p":"10.0.0.1:0"}`, metadata{}, true},
		{`{"p":"10.0.0.1:1","w":-1}`, metadata{}, true},
		{`{"p":"10.0.0.1:1","z":"` + strings.Repeat("z", 65) + `"}`, metadata{}, true},
		{``, metadata{}, true},
		{`null`, metadata{}, true},
	}
	for _, tc := range cases {
		got, err := decodeMetadata([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("decodeMetadata(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzDecodeMetadata: gossip metadata never panics the decoder, and what
// it accepts names a usable peer address.
func FuzzDecodeMetadata(f *testing.F) {
	f.Add([]byte(`{"p":"10.0.0.1:7947","z":"a","w":2}`))
	f.Add([]byte(`{"p":"[::1]:7947"}`))
	f.Add([]byte(`{"p":"10.0.0.1:1","w":-1}`))
	f.Add([]byte(`{"p":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMetadata(b)
		if err != nil {
			return
		}
		if _, err := splitHostPort(m.Peer, false); err != nil {
			t.Fatalf("accepted peer address %q: %v", m.Peer, err)
		}
		if m.Weight < 0 || len(m.Zone) > maxZoneLen {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// BenchmarkSignVerify is the peer protocol's cost per request, both ends.
func BenchmarkSignVerify(b *testing.B) {
	s := testSigner(signTime)
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		s.sign(h, "GET", "site.test", "/assets/app.js?v=123", "edge1", hopOwner, s.self)
		if _, _, err := s.verify("GET", "site.test", "/assets/app.js?v=123", h); err != nil {
			b.Fatal(err)
		}
	}
}
