// Package logging owns how the project's programs set up log/slog: a level
// from its name and a JSON or text handler. It exists so that the server and
// the demo programs read their --log-level and --log-format the same way.
//
// The package carries no API stability promise.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// Level returns the slog level named debug, info, warn or error (any case).
func Level(name string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("log level %q is not debug, info, warn or error", name)
	}
	return l, nil
}

// New returns a logger writing to w at level: JSON lines for format "json",
// slog's text format for anything else. level may be a *slog.LevelVar, so
// that a reload can change it.
func New(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
