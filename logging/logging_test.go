package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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
