package fill_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/edge/fill"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Origin sends the fill as it is and removes the peer-fill mark from the
// origin's answer: an origin cannot pose as a peer.
func TestOriginSendsAsItIsAndDropsThePeerMark(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://origin.test/a?b=1", nil)
	var got *http.Request
	up := fill.Origin(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		return &http.Response{StatusCode: 200, Header: http.Header{fill.PeerHeader: {"edge2"}, "Etag": {`"x"`}},
			Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}))
	resp, err := up.Fill(req, fill.Info{Key: "origin.test/a?b=1", FromPeer: true, Peer: fill.Peer{From: "edge2", Hop: "owner"}})
	if err != nil {
		t.Fatal(err)
	}
	if got != req {
		t.Error("the origin was sent another request than the fill's")
	}
	if v := resp.Header.Get(fill.PeerHeader); v != "" || resp.Header.Get("Etag") != `"x"` {
		t.Errorf("answer fields %v, want the origin's without %s", resp.Header, fill.PeerHeader)
	}
}
