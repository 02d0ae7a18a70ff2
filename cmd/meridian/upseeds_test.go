package main

import (
	"slices"
	"testing"
)

// Every edge of a region is a seed of every other (issue 14 item 4):
// whichever restarts, the first included, finds the others.
func TestUpSeedsListEveryEdgeOfTheRegion(t *testing.T) {
	got := upSeeds(1, 3)
	want := []string{"127.0.2.1:7946", "127.0.2.2:7946", "127.0.2.3:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("upSeeds(1, 3) = %v, want %v", got, want)
	}
}
