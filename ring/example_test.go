package ring_test

import (
	"fmt"

	"github.com/meridiancdn/meridian/ring"
)

func Example() {
	r, err := ring.New([]ring.Peer{
		{Name: "edge-a1", Zone: "a"},
		{Name: "edge-a2", Zone: "a"},
		{Name: "edge-b1", Zone: "b", Weight: 2}, // twice the capacity
		{Name: "edge-c1", Zone: "c"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	owner, _ := r.Owner("https://cdn.example.com/logo.png")
	fmt.Println("owner:", owner.Name)
	for _, p := range r.Replicas("https://cdn.example.com/logo.png", 3) {
		fmt.Println("replica:", p.Name, "in zone", p.Zone)
	}
	fmt.Printf("edge-b1 owns %.0f%% of keys\n", 100*r.Share("edge-b1"))
	// Output:
	// owner: edge-b1
	// replica: edge-b1 in zone b
	// replica: edge-c1 in zone c
	// replica: edge-a2 in zone a
	// edge-b1 owns 40% of keys
}

// A Holder publishes membership changes to lock-free readers.
func ExampleHolder() {
	var current ring.Holder

	// Membership path: rebuild off the request path, then publish.
	r, _ := ring.New([]ring.Peer{{Name: "edge-1"}, {Name: "edge-2"}})
	current.Store(r)

	// Request path: one atomic load, no lock.
	if owner, ok := current.Load().Owner("/index.html"); ok {
		fmt.Println("fill from", owner.Name)
	}

	// A peer leaves: only its keys move.
	r, _ = ring.New([]ring.Peer{{Name: "edge-2"}})
	current.Store(r)
	owner, _ := current.Load().Owner("/index.html")
	fmt.Println("fill from", owner.Name)
	// Output:
	// fill from edge-1
	// fill from edge-2
}
