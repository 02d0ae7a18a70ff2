package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// Issue 20: the process log's level and format are flags, and durations
// read as durations, not nanoseconds ("for":30000000000 before).
func TestProcessLogFlags(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	lf := addLogFlags(fs, "json")
	if err := fs.Parse([]string{"--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log, err := lf.logger(&out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "for", 30*time.Second)
	if got := strings.TrimSpace(out.String()); strings.Contains(got, "hidden") || !strings.Contains(got, `"for":"30s"`) || !strings.HasPrefix(got, "{") {
		t.Fatalf("log %q: want one JSON warning with \"for\":\"30s\"", got)
	}

	out.Reset()
	lf = &logFlags{level: "debug", format: "text"}
	if log, err = lf.logger(&out); err != nil {
		t.Fatal(err)
	}
	log.Debug("shown", "for", 1500*time.Millisecond)
	if got := out.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "for=1.5s") {
		t.Fatalf("text log %q", got)
	}

	for _, bad := range []logFlags{{level: "loud", format: "json"}, {level: "info", format: "xml"}} {
		if _, err := bad.logger(&out); err == nil {
			t.Errorf("%+v accepted", bad)
		} else if !strings.Contains(err.Error(), "--log-") {
			t.Errorf("%+v: error %q does not name the flag", bad, err)
		}
	}
}

// -h and --help on a command print its flags and are not an error (the
// process exits 0; "flag: help requested" and exit 1 before).
func TestHelpIsNotAnError(t *testing.T) {
	for _, cmd := range []string{"edge", "geo", "origin", "up"} {
		for _, h := range []string{"-h", "--help"} {
			err := run(context.Background(), []string{cmd, h})
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("meridian %s %s: %v, want the help (exit 0)", cmd, h, err)
			}
		}
	}
	if err := run(context.Background(), []string{"version"}); err != nil {
		t.Errorf("meridian version: %v", err)
	}
}
