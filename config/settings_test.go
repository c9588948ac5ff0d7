package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// candidates are values tried, in order, until one is valid for a setting
// and differs from its default: otherValue derives a sample per row from
// the table instead of a list kept beside it.
var candidates = []string{"7s", "20m", "7", "true", "false", "127.0.0.1:7", "text", "debug", "x-original"}

// otherValue returns a text that a row's field accepts and that sets a value
// other than the one in base, or fails the test. With loads, the text must
// also load as the flag (with its companions): the settings that go
// together are checked then.
func otherValue(t *testing.T, s setting, base *Config, loads bool) string {
	t.Helper()
	for _, c := range candidates {
		next := *base
		if s.field.set(&next, c) != nil || s.field.get(&next) == s.field.get(base) {
			continue
		}
		args := []string{"--" + s.name + "=" + c}
		for _, o := range companions[s.name] {
			args = append(args, "--"+o)
		}
		if _, err := Load(append(args, minimal...), env{}.lookup, io.Discard); loads && err != nil {
			continue
		}
		return c
	}
	t.Fatalf("no candidate value changes %s; add one to candidates", s.name)
	return ""
}

// companions are what a row needs beside it to load: the settings that go
// together (checkCombined), each with a value.
var companions = map[string][]string{
	"tls-cert-file":      {"tls-key-file=/k"},
	"tls-key-file":       {"tls-cert-file=/c"},
	"tls-client-ca-file": {"tls-cert-file=/c", "tls-key-file=/k"},
}

// TestSettingsTable checks that each row of the table is a flag, a variable
// and a file key (but --config, which names the file), that each of the
// three sets its field, that -h lists it, and that the README documents it.
func TestSettingsTable(t *testing.T) {
	kebab := regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	seen := map[string]bool{}
	for _, s := range settings {
		if !kebab.MatchString(s.name) || seen[s.name] {
			t.Errorf("setting %q: want a unique lower-case name with - between words", s.name)
		}
		seen[s.name] = true
		if s.usage == "" {
			t.Errorf("setting %s has no usage text", s.name)
		}
		if got, ok := fileSetting(s.key()); ok != (s.name != configFile) || ok && got.name != s.name {
			t.Errorf("fileSetting(%s) = %q, %v", s.key(), got.name, ok)
		}
		if s.keySet && s.field == nil {
			t.Errorf("setting %s: keySet without a field: KeySetSettings cannot see it", s.name)
		}
		// Every JWKS setting shapes the key cache; the URL is the provider's own.
		if strings.HasPrefix(s.name, "jwks-") && s.field != nil && !s.keySet {
			t.Errorf("setting %s: a jwks setting the key cache does not depend on?", s.name)
		}
	}

	// The settings with no place in Config are read by the provider and
	// rule steps by name; a new one must be read there too.
	var own []string
	for _, s := range settings {
		if s.field == nil {
			own = append(own, s.name)
		}
	}
	if want := []string{configFile, "issuer", "audience", "jwks-url", "public-paths"}; !slices.Equal(own, want) {
		t.Errorf("settings without a Config field = %q, want %q (read by loadProviders, loadRules)", own, want)
	}

	base := load(t, minimal, nil)
	for _, s := range settings {
		if s.field == nil {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			v := otherValue(t, s, base, true)
			want := *base
			if err := s.field.set(&want, v); err != nil {
				t.Fatal(err)
			}
			flagArgs := []string{"--" + s.name + "=" + v}
			vars := env{s.env(): v}
			file := s.key() + ": " + v + "\n"
			for _, c := range companions[s.name] {
				name, val, _ := strings.Cut(c, "=")
				flagArgs = append(flagArgs, "--"+c)
				vars[named(name).env()] = val
				file += named(name).key() + ": " + val + "\n"
			}
			for _, src := range []struct {
				name string
				args []string
				env  env
			}{
				{name: "flag --" + s.name, args: flagArgs},
				{name: "variable " + s.env(), env: vars},
				{name: "file key " + s.key(), args: []string{"--config", writeConfig(t, file)}},
			} {
				cfg := load(t, append(src.args, minimal...), src.env)
				if got, want := s.field.get(cfg), s.field.get(&want); got != want {
					t.Errorf("%s=%s: got %v, want %v", src.name, v, got, want)
				}
			}
		})
	}

	t.Run("help", func(t *testing.T) {
		var usage bytes.Buffer
		if _, err := Load([]string{"-h"}, env{}.lookup, &usage); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("Load(-h) = %v, want flag.ErrHelp", err)
		}
		for _, s := range settings {
			// The type its parser reads, as flag.PrintDefaults shows its own
			// flags' types: a duration or a number is no string.
			line := "-" + s.name
			switch {
			case s.field == nil:
				line += " string"
			case s.field.kind() != "":
				line += " " + s.field.kind()
			}
			if !strings.Contains(usage.String(), "  "+line+"\n") || !strings.Contains(usage.String(), "[$"+s.env()+"]") {
				t.Errorf("-h does not list %s with [$%s]", line, s.env())
			}
		}
		for _, want := range []string{"  -clock-skew duration\n", "  -jwks-max-bytes int\n", "  -admin-pprof\n", "  -realm string\n", "  -version\n"} {
			if !strings.Contains(usage.String(), want) {
				t.Errorf("-h does not contain %q:\n%s", want, usage.String())
			}
		}
	})

	t.Run("README", func(t *testing.T) {
		readme, err := os.ReadFile("../README.md")
		if err != nil {
			t.Fatal(err)
		}
		// The list runs from the marker to the end of its sentence.
		_, restartText, _ := strings.Cut(string(readme), "These settings **need a restart**")
		restartText, _, _ = strings.Cut(restartText, ". ")
		for _, s := range settings {
			if !strings.Contains(string(readme), "| `--"+s.name+"`") && !strings.Contains(string(readme), ", `--"+s.name+"` |") {
				t.Errorf("README's settings table has no row for --%s", s.name)
			}
			// log_level is reloaded: cmd/extauthz gives the server a LevelVar.
			if needs := s.reload == restart; needs != strings.Contains(restartText, "`"+s.key()+"`") {
				t.Errorf("README's restart list names %s: %v, want %v", s.key(), !needs, needs)
			}
		}
	})
}

// TestNeedsRestart changes one setting at a time, for every row of the
// table: NeedsRestart names it exactly when a reload cannot apply it.
func TestNeedsRestart(t *testing.T) {
	start := load(t, minimal, nil)
	for _, s := range settings {
		if s.field == nil {
			continue
		}
		for _, levelVar := range []bool{false, true} {
			next := *start
			if err := s.field.set(&next, otherValue(t, s, start, false)); err != nil {
				t.Fatal(err)
			}
			var want []string
			if s.reload == restart || s.reload == hotWithLevelVar && !levelVar {
				want = []string{s.key()}
			}
			if got := NeedsRestart(start, &next, levelVar); !slices.Equal(got, want) {
				t.Errorf("%s changed, levelVar %v: NeedsRestart = %q, want %q", s.name, levelVar, got, want)
			}
		}
	}
	if got := NeedsRestart(start, start, false); got != nil {
		t.Errorf("NeedsRestart(unchanged) = %q, want none", got)
	}
}

// TestKeySetSettings changes one setting at a time: the key cache identity
// changes exactly for the settings a key cache is built with.
func TestKeySetSettings(t *testing.T) {
	start := load(t, minimal, nil)
	for _, s := range settings {
		if s.field == nil {
			continue
		}
		next := *start
		if err := s.field.set(&next, otherValue(t, s, start, false)); err != nil {
			t.Fatal(err)
		}
		if changed := KeySetSettings(start) != KeySetSettings(&next); changed != s.keySet {
			t.Errorf("%s changed: key set settings changed %v, want %v", s.name, changed, s.keySet)
		}
	}
}

// TestDurationMessages: a duration setting's error says what its parser
// accepts: "positive" only where 0 is refused too, "0 or more" where 0 is
// a value (none, or off).
func TestDurationMessages(t *testing.T) {
	for _, s := range settings {
		if s.field == nil || s.field.kind() != "duration" {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			zeroErr := s.field.set(&Config{}, "0s")
			err := s.field.set(&Config{}, "-1s")
			if err == nil {
				t.Fatal("-1s accepted")
			}
			if zeroErr == nil {
				if strings.Contains(err.Error(), "positive") || !strings.Contains(err.Error(), "0 or more") {
					t.Errorf("0s is accepted, but -1s's error reads %q", err)
				}
				return
			}
			for _, e := range []error{zeroErr, err} {
				if !strings.Contains(e.Error(), "positive") {
					t.Errorf("0s is refused, but the error reads %q, not positive", e)
				}
			}
		})
	}
}

// TestVersionFlag: --version is no setting; Load returns ErrVersion for it,
// whatever else is missing, and -h lists it.
func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version=true"}, {"--realm", "x", "--version"}} {
		if _, err := Load(args, env{}.lookup, io.Discard); !errors.Is(err, ErrVersion) {
			t.Errorf("Load(%q) = %v, want ErrVersion", args, err)
		}
	}
	if _, err := Load(append([]string{"--version=false"}, minimal...), env{}.lookup, io.Discard); err != nil {
		t.Errorf("Load(--version=false) = %v, want a configuration", err)
	}
}
