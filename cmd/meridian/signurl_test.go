package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignURLCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.yaml")
	conf := `sites:
  - hosts: [dl.example.com]
    origin: http://127.0.0.1:9000
    signed_urls: {keys: [0123456789abcdef0123], prefixes: [/files/]}
  - hosts: [www.example.com]
    origin: http://127.0.0.1:9000
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }
	var out strings.Builder
	if err := signURL(&out, []string{"--config", path, "--ttl", "10m", "https://DL.example.com/files/a.zip?v=1"}, now); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "https://DL.example.com/files/a.zip?v=1&expires=1800000600&token=") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("printed %q", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", path, "https://www.example.com/files/a.zip"}, "no signed_urls.keys"},
		{[]string{"--config", path, "https://dl.example.com/other/a.zip"}, "outside signed_urls.prefixes"},
		{[]string{"--config", path, "https://nope.example.com/files/a.zip"}, "no site"},
		{[]string{"--config", path, "/files/a.zip"}, "absolute URL"},
		{[]string{"https://dl.example.com/files/a.zip"}, "usage"},
	} {
		err := signURL(&out, tc.args, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	out.Reset()
	if err := signURL(&out, []string{"--config", path, "--host", "dl.example.com", "/files/a.zip"}, now); err != nil || !strings.HasPrefix(out.String(), "/files/a.zip?expires=") {
		t.Fatalf("--host with a path: %v %q", err, out.String())
	}
}
