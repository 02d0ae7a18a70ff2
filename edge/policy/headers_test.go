package policy

import (
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	h := hdr(
		"Connection", "keep-alive, X-Hop", "Connection", " x-other ,,",
		"Keep-Alive", "timeout=5", "Proxy-Connection", "close", "Te", "trailers",
		"Trailer", "X-T", "Transfer-Encoding", "chunked", "Upgrade", "h2c",
		"Proxy-Authenticate", "Basic", "Proxy-Authorization", "Basic x",
		"X-Hop", "1", "X-Other", "2", "Content-Type", "text/plain", "Cache-Control", "max-age=1",
	)
	RemoveHopByHop(h)
	want := hdr("Content-Type", "text/plain", "Cache-Control", "max-age=1")
	if !reflect.DeepEqual(h, want) {
		t.Errorf("after RemoveHopByHop: %v, want %v", h, want)
	}
	RemoveHopByHop(nil) // must not panic
}

func TestUpdateHeaders(t *testing.T) {
	tests := []struct {
		name   string
		stored http.Header
		nm     http.Header
		want   http.Header
	}{
		{"replace and keep",
			hdr("Cache-Control", "max-age=60", "Etag", `"a"`, "Content-Type", "text/plain", "X-Keep", "1", "Date", "old"),
			hdr("Cache-Control", "max-age=120", "Date", "new", "X-New", "2", "X-New", "3"),
			hdr("Cache-Control", "max-age=120", "Etag", `"a"`, "Content-Type", "text/plain", "X-Keep", "1", "Date", "new", "X-New", "2", "X-New", "3")},
		{"content-length and body fields kept",
			hdr("Content-Length", "10", "Content-Encoding", "gzip", "Content-Range", "bytes 0-9/10"),
			hdr("Content-Length", "0", "Content-Encoding", "br", "Content-Range", "bytes */10"),
			hdr("Content-Length", "10", "Content-Encoding", "gzip", "Content-Range", "bytes 0-9/10")},
		{"hop-by-hop not copied",
			hdr("X-A", "1"),
			hdr("Connection", "X-Secret", "X-Secret", "s", "Transfer-Encoding", "chunked", "Keep-Alive", "1"),
			hdr("X-A", "1")},
		{"set-cookie never copied",
			hdr("X-A", "1"),
			hdr("Set-Cookie", "session=1"),
			hdr("X-A", "1")},
		{"qualified fields not copied",
			hdr("X-A", "1"),
			hdr("Cache-Control", `no-cache="X-U", private="X-V"`, "X-U", "u", "X-V", "v", "X-W", "w"),
			hdr("X-A", "1", "Cache-Control", `no-cache="X-U", private="X-V"`, "X-W", "w")},
		{"CDN-Cache-Control qualifies fields",
			hdr("X-A", "1"),
			hdr("Cache-Control", `no-cache="X-W"`, "Cdn-Cache-Control", `no-cache="X-U", private=X-V`, "X-U", "u", "X-V", "v", "X-W", "w"),
			hdr("X-A", "1", "Cache-Control", `no-cache="X-W"`, "Cdn-Cache-Control", `no-cache="X-U", private=X-V`, "X-W", "w")},
		{"invalid CDN-Cache-Control leaves it to Cache-Control",
			hdr("X-A", "1"),
			hdr("Cache-Control", `no-cache="X-W"`, "Cdn-Cache-Control", `no-cache="X-U", max-age="5"`, "X-U", "u", "X-W", "w"),
			hdr("X-A", "1", "Cache-Control", `no-cache="X-W"`, "Cdn-Cache-Control", `no-cache="X-U", max-age="5"`, "X-U", "u")},
		{"non-canonical spellings",
			http.Header{"x-a": {"old"}},
			http.Header{"X-a": {"new"}},
			hdr("X-A", "new")},
		{"nil stored", nil, hdr("X-A", "1"), hdr("X-A", "1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storedCopy := tt.stored.Clone()
			got := UpdateHeaders(tt.stored, tt.nm)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UpdateHeaders = %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.stored, storedCopy) {
				t.Errorf("stored was modified: %v", tt.stored)
			}
		})
	}
	t.Run("result does not alias", func(t *testing.T) {
		stored, nm := hdr("X-A", "1"), hdr("X-B", "2")
		got := UpdateHeaders(stored, nm)
		got["X-A"][0], got["X-B"][0] = "changed", "changed"
		if stored.Get("X-A") != "1" || nm.Get("X-B") != "2" {
			t.Errorf("result aliases its inputs")
		}
	})
}

func TestInvalidations(t *testing.T) {
	req, _ := url.Parse("https://example.com/a/b?x=1#frag")
	tests := []struct {
		name   string
		method string
		status int
		resp   http.Header
		want   []string
	}{
		{"GET is safe", "GET", 200, hdr(), nil},
		{"HEAD is safe", "HEAD", 200, hdr(), nil},
		{"OPTIONS is safe", "OPTIONS", 200, hdr(), nil},
		{"TRACE is safe", "TRACE", 200, hdr(), nil},
		{"POST error", "POST", 500, hdr(), nil},
		{"POST 4xx", "POST", 404, hdr(), nil},
		{"POST 1xx", "POST", 100, hdr(), nil},
		{"POST", "POST", 200, hdr(), []string{"https://example.com/a/b?x=1"}},
		{"DELETE with relative Location", "DELETE", 303, hdr("Location", "../c"), []string{"https://example.com/a/b?x=1", "https://example.com/c"}},
		{"PUT with Content-Location", "PUT", 201, hdr("Content-Location", "/d", "Location", "https://EXAMPLE.com:443/e"), []string{"https://example.com/a/b?x=1", "https://example.com/e", "https://example.com/d"}},
		{"other origin ignored", "POST", 200, hdr("Location", "https://evil.example/x", "Content-Location", "http://example.com/y"), []string{"https://example.com/a/b?x=1"}},
		{"other port ignored", "POST", 200, hdr("Location", "https://example.com:8443/x"), []string{"https://example.com/a/b?x=1"}},
		{"duplicate removed", "PATCH", 204, hdr("Location", "/a/b?x=1", "Content-Location", "/a/b?x=1"), []string{"https://example.com/a/b?x=1"}},
		{"bad Location ignored", "POST", 200, hdr("Location", "http://[::1"), []string{"https://example.com/a/b?x=1"}},
		{"host normalised", "POST", 200, hdr("Location", "HTTPS://Example.COM:443/f"), []string{"https://example.com/a/b?x=1", "https://example.com/f"}},
		{"unknown method is unsafe", "PURGE", 200, hdr(), []string{"https://example.com/a/b?x=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Invalidations(tt.method, req, tt.status, tt.resp)
			var s []string
			for _, u := range got {
				s = append(s, u.String())
			}
			if !reflect.DeepEqual(s, tt.want) {
				t.Errorf("Invalidations = %q, want %q", s, tt.want)
			}
		})
	}
	if req.Fragment != "frag" {
		t.Errorf("reqURL was modified: %v", req)
	}
	v6, _ := url.Parse("http://[::1]:80/x")
	if got := Invalidations("POST", v6, 200, hdr("Location", "http://[::1]:8080/y")); len(got) != 1 || got[0].String() != "http://[::1]/x" {
		t.Errorf("IPv6: %v", got)
	}
	if got := Invalidations("POST", nil, 200, nil); got != nil {
		t.Errorf("nil URL: %v", got)
	}
}

// FuzzDelField: delField deletes what http.Header.Del deletes (the
// field's canonical name, or a name that is not a token as it is), among
// the name's spellings, without canonicalizing in an allocation.
func FuzzDelField(f *testing.F) {
	for _, s := range []string{"keep-alive", "X-Forwarded-For", "x-FORWARDED-for", "foo bar", "Foo Bar", "a_b", "-a--b-",
		"é", "x\x00y", "1abc", "ABC", "Ab-cD", "`|~!#$%&'*+.^_", strings.Repeat("ab-", 30)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" {
			return // (RemoveConnectionOptions never asks)
		}
		mk := func() http.Header {
			return http.Header{name: {"as is"}, textproto.CanonicalMIMEHeaderKey(name): {"canonical"},
				strings.ToLower(name): {"lower"}, strings.ToUpper(name): {"upper"}, "Other": {"other"}}
		}
		want, got := mk(), mk()
		want.Del(name)
		delField(got, name)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("delField(%q) left %q, Del %q", name, got, want)
		}
	})
}
