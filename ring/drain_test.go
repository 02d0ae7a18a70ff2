package ring

import (
	"fmt"
	"slices"
	"testing"
)

// TestDrain: draining one of n peers moves about 1/n of the keys, all of
// them away from it and none between the others; it then owns nothing,
// yet stays a member, last in every preference list. The drained ring
// owns every key exactly as the ring without the peer does.
func TestDrain(t *testing.T) {
	for _, n := range []int{3, 10, 50} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			peers := namedPeers(n)
			base := mustNew(t, peers)
			d := n / 2
			drainName := peers[d].Name
			drained := slices.Clone(peers)
			drained[d].Draining = true
			next := mustNew(t, drained)
			without := mustNew(t, slices.Delete(slices.Clone(peers), d, d+1))

			moved, stray := 0, 0
			for p := range base.partitions() {
				from, to := base.ownerAt(p), next.ownerAt(p)
				if to == drainName {
					t.Fatalf("partition %d still owned by the draining peer", p)
				}
				if to != without.ownerAt(p) {
					t.Fatalf("partition %d: drained ring owner %s, ring without the peer %s", p, to, without.ownerAt(p))
				}
				if from == to {
					continue
				}
				moved++
				if from != drainName {
					stray++
				}
			}
			q := float64(base.partitions())
			t.Logf("draining 1 of %d peers moved %.4f%% of keys (ideal %.4f%%), %.4f%% between the others",
				n, 100*float64(moved)/q, 100/float64(n), 100*float64(stray)/q)
			if ratio := float64(moved) / q * float64(n); ratio < 0.97 || ratio > 1.03 {
				t.Errorf("moved %.4fx the ideal 1/n", ratio)
			}
			if float64(stray)/q > 0.001 {
				t.Errorf("%.4f%% of keys moved between the other peers; want <= 0.1%%", 100*float64(stray)/q)
			}
			if next.Share(drainName) != 0 || next.Len() != n {
				t.Errorf("draining peer: share %v, ring of %d peers", next.Share(drainName), next.Len())
			}
			if got := next.Peers()[d]; got.Name != drainName || !got.Draining {
				t.Errorf("Peers()[%d] = %+v", d, got)
			}
			// Preference lists: the draining peer is last, the others in the
			// order of the ring without it.
			for k := range 200 {
				key := fmt.Sprintf("/obj/%d", k)
				all := next.Replicas(key, n)
				if len(all) != n || all[n-1].Name != drainName {
					t.Fatalf("Replicas(%q) = %v: the draining peer is not last", key, names(all))
				}
				if w := without.Replicas(key, n-1); !slices.Equal(names(all[:n-1]), names(w)) {
					t.Fatalf("Replicas(%q) = %v, ring without the peer %v", key, names(all[:n-1]), names(w))
				}
			}
		})
	}
}

// TestDrainAll: when every peer drains, none does: the keys have nowhere
// else to go, so the ring places them as if no peer drained.
func TestDrainAll(t *testing.T) {
	peers := namedPeers(5)
	base := mustBuild(t, peers, testBits)
	for i := range peers {
		peers[i].Draining = true
	}
	all := mustBuild(t, peers, testBits)
	for p := range base.partitions() {
		if base.ownerAt(p) != all.ownerAt(p) {
			t.Fatalf("partition %d: %s, with every peer draining %s", p, base.ownerAt(p), all.ownerAt(p))
		}
	}
	if all.Share(peers[0].Name) == 0 {
		t.Error("every peer draining: a peer owns nothing")
	}
}

func names(ps []Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}
