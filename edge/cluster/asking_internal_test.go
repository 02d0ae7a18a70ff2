package cluster

import "testing"

// The loop guard (HeaderPeerLoop) tells the slices of one object apart:
// the members own different slices of it and ask each other for them
// at once, which is no loop; the same slice, or a range of an object
// asked for whole (a resumption), still is.
func TestLoopGuardTellsSlicesApart(t *testing.T) {
	n := &Member{inflight: map[string]int{}}
	done := n.asking("site.test", "/v.mp4", "bytes=0-1048575")
	if n.isAsking("site.test", "/v.mp4", "bytes=1048576-2097151") {
		t.Error("asking for slice 0 refuses a peer's request for slice 1")
	}
	if !n.isAsking("site.test", "/v.mp4", "bytes=0-1048575") {
		t.Error("asking for slice 0 does not refuse a peer's request for slice 0")
	}
	if n.isAsking("site.test", "/other", "bytes=0-1048575") {
		t.Error("another object refused")
	}
	done()
	if n.isAsking("site.test", "/v.mp4", "bytes=0-1048575") || len(n.inflight) != 0 {
		t.Errorf("still asking after done: %v", n.inflight)
	}
	whole := n.asking("site.test", "/v.mp4", "")
	if !n.isAsking("site.test", "/v.mp4", "") || !n.isAsking("site.test", "/v.mp4", "bytes=5000-") {
		t.Error("asking for the whole object does not refuse a request for it, or for the rest of it")
	}
	whole()
}
