package cluster_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
	"github.com/meridiancdn/meridian/internal/cdntest"
)

// purgeReceiver is a member whose edge acknowledges internal requests and
// records their targets.
type purgeReceiver struct {
	node *cluster.Member
	mu   sync.Mutex
	got  []string
}

func (p *purgeReceiver) targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func startPurgeReceiver(t *testing.T, name string) *purgeReceiver {
	t.Helper()
	p := &purgeReceiver{}
	n, err := cluster.New(cluster.Config{
		Name:         name,
		GossipListen: "127.0.0.1:0",
		PeerListen:   "127.0.0.1:0",
		Secret:       cdntest.Secret,
		Preset:       cluster.PresetLocal,
	}, cluster.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Start(cluster.PeerServerFunc(func(w http.ResponseWriter, r *http.Request, _ fill.Peer) {
		p.mu.Lock()
		p.got = append(p.got, r.Host+r.RequestURI)
		p.mu.Unlock()
		w.Header().Set(cluster.AckHeader, name)
		w.WriteHeader(http.StatusNoContent)
	})); err != nil {
		t.Fatal(err)
	}
	p.node = n
	return p
}

// A signed purge captured on the link and sent again is refused (403, and
// counted), while the member's own second purge of the same target, within
// the same second, is signed anew and accepted. Sent to another member of
// the same secret instead, whose replay cache never saw it, it is refused
// too: the signature names the member it is for.
func TestReplayedSignedPurgeIsRefused(t *testing.T) {
	recv := startPurgeReceiver(t, "receiver")
	other := startPurgeReceiver(t, "other")
	sender := startNode(t, "sender", nil, cluster.Options{})

	// The link: a proxy that forwards each request and keeps a copy.
	var mu sync.Mutex
	var captured []*http.Request
	link := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		captured = append(captured, r.Clone(context.Background()))
		mu.Unlock()
		resp, err := forward(r, recv.node.PeerAddr())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(link.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const target = "/purge?key=www.example.com/app.js"
	if err := sender.SendTo(ctx, "receiver", link.Listener.Addr().String(), target); err != nil {
		t.Fatalf("first purge: %v", err)
	}
	if err := sender.SendTo(ctx, "receiver", link.Listener.Addr().String(), target); err != nil {
		t.Fatalf("the same purge again, signed anew: %v", err)
	}
	if got := recv.targets(); len(got) != 2 {
		t.Fatalf("receiver's edge saw %q, want both purges", got)
	}
	mu.Lock()
	first := captured[0]
	if len(captured) != 2 || first.Header.Get(cluster.HeaderPeerNonce) == captured[1].Header.Get(cluster.HeaderPeerNonce) {
		t.Fatalf("captured %d requests with nonces %q and %q; want two, each its own", len(captured),
			first.Header.Get(cluster.HeaderPeerNonce), captured[1].Header.Get(cluster.HeaderPeerNonce))
	}
	mu.Unlock()

	// The attacker replays the captured request, byte for byte, straight
	// to the member.
	resp, err := forward(first, recv.node.PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "replay") {
		t.Errorf("replayed purge: %d %q, want 403 naming the replay", resp.StatusCode, body)
	}
	if got := recv.targets(); len(got) != 2 {
		t.Errorf("the replay reached the edge: %q", got)
	}
	if n := recv.node.Replays(); n != 1 {
		t.Errorf("Replays() = %d, want 1", n)
	}

	resp, err = forward(first, other.node.PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "signed for another member") {
		t.Errorf("purge for another member replayed to this one: %d %q, want 403 saying it is for another member", resp.StatusCode, body)
	}
	if got := other.targets(); len(got) != 0 {
		t.Errorf("the replay reached the other member's edge: %q", got)
	}
}

// forward sends a copy of r (method, target, Host and header) to addr.
func forward(r *http.Request, addr string) (*http.Response, error) {
	out, err := http.NewRequestWithContext(context.Background(), r.Method, "http://"+addr+r.RequestURI, nil)
	if err != nil {
		return nil, err
	}
	out.Host = r.Host
	out.Header = r.Header.Clone()
	return http.DefaultTransport.RoundTrip(out)
}
