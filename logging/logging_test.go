package logging

import (
	"bytes"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLevel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    slog.Level
		wantErr bool
	}{
		{name: "debug", want: slog.LevelDebug},
		{name: "INFO", want: slog.LevelInfo},
		{name: "warn", want: slog.LevelWarn},
		{name: "error", want: slog.LevelError},
		{name: "verbose", wantErr: true},
		{name: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Level(tc.name)
			if (err != nil) != tc.wantErr || err == nil && got != tc.want {
				t.Errorf("Level(%q) = %v, %v; want %v, error %v", tc.name, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{format: "json", want: `"msg":"hello"`},
		{format: "text", want: "msg=hello"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			lv := new(slog.LevelVar)
			lv.Set(slog.LevelWarn)
			log := New(&buf, lv, tc.format)
			log.Info("hidden")
			log.Warn("hello")
			if out := buf.String(); !strings.Contains(out, tc.want) || strings.Contains(out, "hidden") {
				t.Errorf("output %q: want %q and no info line", out, tc.want)
			}
			lv.Set(slog.LevelInfo)
			log.Info("shown")
			if !strings.Contains(buf.String(), "shown") {
				t.Error("the level var did not lower the level")
			}
		})
	}
}

// TestNewDurations: a duration is written with its unit, "1.5ms", in JSON
// as in text, groups included; never as bare nanoseconds.
func TestNewDurations(t *testing.T) {
	for _, tc := range []struct{ format, want, group string }{
		{format: "json", want: `"duration":"1.5ms"`, group: `"fetch":{"took":"2m0s"}`},
		{format: "text", want: "duration=1.5ms", group: "fetch.took=2m0s"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			log := New(&buf, slog.LevelInfo, tc.format)
			log.Info("check", slog.Duration("duration", 1500*time.Microsecond), slog.Group("fetch", slog.Duration("took", 2*time.Minute)))
			if out := buf.String(); !strings.Contains(out, tc.want) || !strings.Contains(out, tc.group) || strings.Contains(out, "1500000") {
				t.Errorf("output %q: want %s and %s", out, tc.want, tc.group)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    Flags
		wantErr string
	}{
		{name: "defaults", want: Flags{Level: "info", Format: "text"}},
		{name: "set", args: []string{"--log-level", "debug", "--log-format", "json"}, want: Flags{Level: "debug", Format: "json"}},
		{name: "bad level", args: []string{"--log-level", "loud"}, want: Flags{Level: "loud", Format: "text"}, wantErr: "loud"},
		{name: "bad format", args: []string{"--log-format", "xml"}, want: Flags{Level: "info", Format: "xml"}, wantErr: "xml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f Flags
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			f.Register(fs, "text", "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if f != tc.want {
				t.Errorf("flags = %+v, want %+v", f, tc.want)
			}
			err := f.Validate()
			if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
	var b bytes.Buffer
	Flags{Level: "warn", Format: "json"}.New(&b).Info("hidden")
	Flags{Level: "warn", Format: "json"}.New(&b).Warn("shown")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Errorf("New wrote %q; want only the warning, as JSON", out)
	}
}
