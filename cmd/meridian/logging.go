package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are the process log's flags, shared by the commands that run
// something: --log-level and --log-format.
type logFlags struct {
	level  string
	format string
}

// addLogFlags registers --log-level and --log-format on fs, with format
// as the default format.
func addLogFlags(fs *flag.FlagSet, format string) *logFlags {
	l := &logFlags{}
	fs.StringVar(&l.level, "log-level", "info", "process log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", format, "process log format: json or text")
	return l
}

// logger returns the process logger writing to w. Durations are written
// as Go durations ("1.5s"), not nanoseconds.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	switch strings.ToLower(l.format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not json or text", l.format)
}

// durationsAsText makes a time.Duration attribute read "30s" (slog's JSON
// handler writes nanoseconds: "for":30000000000).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
