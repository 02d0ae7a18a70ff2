package policy

import (
	"net/http"
	"testing"
	"time"
)

func TestCheckPreconditions(t *testing.T) {
	lm := t0.Add(-time.Hour)
	before, at, after := httpDate(lm.Add(-time.Minute)), httpDate(lm), httpDate(lm.Add(time.Minute))
	const etag = `"v1"`
	tests := []struct {
		name   string
		method string
		req    http.Header
		etag   string
		lm     time.Time
		want   int
	}{
		{"no conditions", "GET", hdr(), etag, lm, 0},
		{"If-None-Match matches", "GET", hdr("If-None-Match", `"v1"`), etag, lm, 304},
		{"If-None-Match matches in list", "GET", hdr("If-None-Match", `"a", "v1"`), etag, lm, 304},
		{"If-None-Match matches across lines", "HEAD", hdr("If-None-Match", `"a"`, "If-None-Match", `W/"v1"`), etag, lm, 304},
		{"If-None-Match weak comparison", "GET", hdr("If-None-Match", `"v1"`), `W/"v1"`, lm, 304},
		{"If-None-Match star", "GET", hdr("If-None-Match", "*"), etag, lm, 304},
		{"If-None-Match star without etag", "GET", hdr("If-None-Match", "*"), "", lm, 304},
		{"If-None-Match no match", "GET", hdr("If-None-Match", `"v2"`), etag, lm, 0},
		{"If-None-Match no stored etag", "GET", hdr("If-None-Match", `"v1"`), "", lm, 0},
		{"If-None-Match malformed member skipped", "GET", hdr("If-None-Match", `v1, "v1`), etag, lm, 0},
		{"If-None-Match garbage then match", "GET", hdr("If-None-Match", `xx"v1", "v1"`), etag, lm, 304},
		{"If-None-Match unsafe method", "POST", hdr("If-None-Match", `"v1"`), etag, lm, 412},
		{"If-None-Match beats If-Modified-Since", "GET", hdr("If-None-Match", `"v2"`, "If-Modified-Since", after), etag, lm, 0},
		{"If-Modified-Since not modified", "GET", hdr("If-Modified-Since", at), etag, lm, 304},
		{"If-Modified-Since later", "GET", hdr("If-Modified-Since", after), etag, lm, 304},
		{"If-Modified-Since modified", "GET", hdr("If-Modified-Since", before), etag, lm, 0},
		{"If-Modified-Since invalid", "GET", hdr("If-Modified-Since", "yesterday"), etag, lm, 0},
		{"If-Modified-Since double spaces ignored", "GET", hdr("If-Modified-Since", "Wed, 01  May  2024 11:00:00 GMT"), etag, lm, 0},
		{"If-Modified-Since one-digit hour ignored", "GET", hdr("If-Modified-Since", "Wed, 01 May 2024 9:00:00 GMT"), etag, lm.Add(-3 * time.Hour), 0},
		{"If-Modified-Since lower case ignored", "GET", hdr("If-Modified-Since", "wed, 01 may 2024 11:00:00 gmt"), etag, lm, 0},
		{"If-Modified-Since rfc850", "GET", hdr("If-Modified-Since", "Wednesday, 01-May-24 11:00:00 GMT"), etag, lm, 304},
		{"If-Modified-Since asctime", "GET", hdr("If-Modified-Since", "Wed May  1 11:00:00 2024"), etag, lm, 304},
		{"If-Modified-Since two lines", "GET", hdr("If-Modified-Since", at, "If-Modified-Since", at), etag, lm, 0},
		{"If-Modified-Since no Last-Modified", "GET", hdr("If-Modified-Since", at), etag, time.Time{}, 0},
		{"If-Modified-Since only for GET/HEAD", "DELETE", hdr("If-Modified-Since", after), etag, lm, 0},
		{"If-Match strong match", "GET", hdr("If-Match", `"v1"`), etag, lm, 0},
		{"If-Match weak stored fails", "GET", hdr("If-Match", `"v1"`), `W/"v1"`, lm, 412},
		{"If-Match weak request fails", "GET", hdr("If-Match", `W/"v1"`), etag, lm, 412},
		{"If-Match mismatch", "GET", hdr("If-Match", `"v2"`), etag, lm, 412},
		{"If-Match star", "PUT", hdr("If-Match", "*"), "", lm, 0},
		{"If-Match empty fails", "GET", hdr("If-Match", ""), etag, lm, 412},
		{"If-Match passes, then If-None-Match", "GET", hdr("If-Match", `"v1"`, "If-None-Match", `"v1"`), etag, lm, 304},
		{"If-Match beats If-Unmodified-Since", "GET", hdr("If-Match", `"v1"`, "If-Unmodified-Since", before), etag, lm, 0},
		{"If-Unmodified-Since fails", "GET", hdr("If-Unmodified-Since", before), etag, lm, 412},
		{"If-Unmodified-Since passes", "GET", hdr("If-Unmodified-Since", at), etag, lm, 0},
		{"If-Unmodified-Since invalid ignored", "GET", hdr("If-Unmodified-Since", "nope"), etag, lm, 0},
		{"If-Unmodified-Since double spaces ignored", "GET", hdr("If-Unmodified-Since", "Wed, 01  May 2024 10:59:00 GMT"), etag, lm, 0},
		{"If-Unmodified-Since no Last-Modified", "GET", hdr("If-Unmodified-Since", before), etag, time.Time{}, 0},
		{"If-Unmodified-Since then If-Modified-Since", "GET", hdr("If-Unmodified-Since", after, "If-Modified-Since", after), etag, lm, 304},
		{"sub-second Last-Modified", "GET", hdr("If-Modified-Since", at), etag, lm.Add(300 * time.Millisecond), 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckPreconditions(tt.method, tt.req, tt.etag, tt.lm); got != tt.want {
				t.Errorf("CheckPreconditions = %d, want %d", got, tt.want)
			}
			// A caller may skip the evaluation when HasPreconditions
			// says there is nothing to evaluate.
			if tt.want != 0 && !HasPreconditions(tt.req) {
				t.Errorf("HasPreconditions false for a request CheckPreconditions answers %d", tt.want)
			}
		})
	}
}

func TestCheckPreconditionsAllocs(t *testing.T) {
	req := hdr("If-None-Match", `"a", "b", W/"v1"`)
	if n := testing.AllocsPerRun(100, func() { _ = CheckPreconditions("GET", req, `"v1"`, t0) }); n != 0 {
		t.Errorf("CheckPreconditions: %v allocs", n)
	}
}
