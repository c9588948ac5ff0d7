// Package logging owns how the project's programs set up log/slog: a level
// from its name and a JSON or text handler. It exists so that the server and
// the demo programs read their --log-level and --log-format the same way.
//
// The package carries no API stability promise.
package logging

import (
	"cmp"
	"flag"
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
//
// A duration (a slog.Duration attribute, such as "duration" or "grace") is
// written as Go writes it, "1.5ms" or "10s", in both formats: slog's JSON
// handler alone would write nanoseconds as a bare number, with no unit.
func New(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// durationText is the handlers' ReplaceAttr: a duration becomes its
// time.Duration.String text.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// Flags are a program's --log-level and --log-format.
type Flags struct {
	Level  string // debug, info, warn or error
	Format string // text or json
}

// Register adds --log-level (default info) and --log-format (default
// defaultFormat) to fs. levelUsage, when not empty, replaces the level's
// usage text (to say what debug adds).
func (f *Flags) Register(fs *flag.FlagSet, defaultFormat, levelUsage string) {
	fs.StringVar(&f.Level, "log-level", "info", cmp.Or(levelUsage, "debug, info, warn or error"))
	fs.StringVar(&f.Format, "log-format", defaultFormat, "text or json")
}

// Validate reports a level or a format that is not one of the names.
func (f Flags) Validate() error {
	if _, err := Level(f.Level); err != nil {
		return err
	}
	if f.Format != "text" && f.Format != "json" {
		return fmt.Errorf("log format %q is not text or json", f.Format)
	}
	return nil
}

// New returns the logger the flags describe, writing to w; a level that
// does not validate is info.
func (f Flags) New(w io.Writer) *slog.Logger {
	level, err := Level(f.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	return New(w, level, f.Format)
}
