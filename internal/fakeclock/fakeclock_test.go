package fakeclock_test

import (
	"testing"
	"time"

	"github.com/meridiancdn/meridian/internal/fakeclock"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	c := fakeclock.New()
	if !c.Now().Equal(fakeclock.Start) {
		t.Fatalf("New at %v, want %v", c.Now(), fakeclock.Start)
	}
	c.Advance(90 * time.Second)
	c.Advance(-30 * time.Second)
	if got := c.Now().Sub(fakeclock.Start); got != time.Minute {
		t.Errorf("after +90s and -30s: %v from the start, want 1m", got)
	}
	at := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := fakeclock.At(at).Now(); !got.Equal(at) {
		t.Errorf("At(%v).Now() = %v", at, got)
	}
}

func TestTickMovesEachReading(t *testing.T) {
	c := fakeclock.New()
	c.SetTick(time.Microsecond)
	a, b := c.Now(), c.Now()
	if b.Sub(a) != time.Microsecond || !a.Equal(fakeclock.Start) {
		t.Fatalf("readings %v then %v, want the start then a microsecond on", a, b)
	}
	c.SetTick(0)
	if c.Now() != c.Now() {
		t.Fatal("with no tick, readings moved the clock")
	}
}
