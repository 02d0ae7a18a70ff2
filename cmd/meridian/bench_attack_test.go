package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meridiancdn/meridian/origin"
)

// `meridian bench attack` runs an attack against any server, appends its
// sample, and `bench attack report` makes the table from the samples.
func TestBenchAttack(t *testing.T) {
	demo := origin.NewDemo(nil)
	org := httptest.NewServer(demo)
	defer org.Close()
	defer demo.Close()
	dir := t.TempDir()
	samples := filepath.Join(dir, "samples.jsonl")

	err := runBench(context.Background(), []string{"attack", "--kind", "unique-keys",
		"--url", org.URL + "/a?size=100", "--rate", "20", "--duration", "200ms", "--tail", "10ms",
		"--hit-url", org.URL + "/hit?size=10", "--origin-stats", org.URL + "/_stats",
		"--pid", strconv.Itoa(os.Getpid()), "--budget-bytes", "1GiB", "--origin-cap-rps", "1000",
		"--out", samples, "--server", "demo"})
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "attack.md")
	if err := runBench(context.Background(), []string{"attack", "report", "--in", samples, "--md", md}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	// 4 planned requests, all read; the origin served them and the
	// legitimate client's requests (it has no cache in front).
	if !strings.Contains(string(b), "| unique-keys (demo) | 20/s × 0.2 s | 4 | 0 | 4 answered |") {
		t.Errorf("table lacks the attack's row:\n%s", b)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"attack", "--kind", "nope", "--url", org.URL}, "--kind: \"nope\""},
		{[]string{"attack", "--kind", "h1-close", "--url", org.URL, "--budget-bytes", "12MB"}, "--budget-bytes"},
		{[]string{"attack", "--kind", "h1-close", "--url", org.URL, "--kill-above", "-1"}, "--kill-above"},
		{[]string{"attack", "--kind", "h1-close", "--url", org.URL, "--pid", "x"}, "bad pid"},
		{[]string{"attack", "--kind", "h1-close", "--url", org.URL, "extra"}, "unexpected arguments"},
		{[]string{"attack", "--kind", "h2-reset", "--url", org.URL}, "needs https"},
		{[]string{"attack", "--kind", "h1-close", "--url", org.URL, "--out", samples}, "--scenario and --server are required"},
		{[]string{"attack", "report"}, "--in FILE is required"},
		{[]string{"attack", "report", "--in", filepath.Join(dir, "none")}, "no such file"},
	} {
		err := runBench(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %q = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
