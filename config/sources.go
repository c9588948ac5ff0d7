package config

// Where a setting's value comes from: the flags (derived from the table), the
// AUTHZ_* variables, the config file, the default, in that order.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrVersion is returned by [Load] for --version: the caller prints the
// version and exits, as for flag.ErrHelp.
var ErrVersion = errors.New("config: --version")

// parseFlags parses the command line into the flags given, by name: one flag
// per setting, and --version. flag.ErrHelp is returned for -h, after the
// usage went to usage; ErrVersion for --version.
func parseFlags(args []string, usage io.Writer) (map[string]string, error) {
	fs := flag.NewFlagSet("extauthz", flag.ContinueOnError)
	// The flag package prints the error and the whole usage on a bad flag;
	// the caller prints the error as one line instead, and the usage is
	// only for -h.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range settings {
		help := s.usage + " [$" + s.env() + "]"
		if s.isSwitch() {
			fs.Var(&switchValue{s: s.def}, s.name, help)
			continue
		}
		fs.Var(&textValue{s: s.def}, s.name, help)
	}
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(usage, "Usage: extauthz [flags]\n\nEnvoy ext_authz (gRPC) and forward-auth (HTTP) server that verifies JWT bearer tokens against a JWKS.\nEvery flag can also be set by the variable in brackets, in the environment or in ./.env.\n\n")
			printFlags(usage, fs)
			return nil, err
		}
		return nil, fmt.Errorf("%w (-h lists the flags)", err)
	}
	if *version {
		return nil, ErrVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags such as --issuer)", fs.Arg(0))
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "version" {
			given[f.Name] = f.Value.String()
		}
	})
	return given, nil
}

// printFlags lists the flags in the table's order (related settings stay
// together), then --version, in flag.PrintDefaults' layout, each with the
// type of its value as the table's parser reads it: duration (10s, 15m),
// int, string, or nothing for a switch.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	entry := func(name, kind, usage, def string, quote bool) {
		line := "  -" + name
		if kind != "" {
			line += " " + kind
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		switch {
		case def == "" || def == "false" && kind == "":
		case quote:
			line += fmt.Sprintf(" (default %q)", def)
		default:
			line += " (default " + def + ")"
		}
		fmt.Fprintln(w, line)
	}
	for _, s := range settings {
		kind := "string"
		if s.field != nil {
			kind = s.field.kind()
		}
		entry(s.name, kind, fs.Lookup(s.name).Usage, s.def, kind == "string")
	}
	v := fs.Lookup("version")
	entry(v.Name, "", v.Usage, "", false)
}

// sources are the places a setting may be set, highest precedence first.
// The guide's AUTHACTION_* variables, which rank between AUTHZ_* and the
// file for the single provider only, are loadProviders' business.
type sources struct {
	flags map[string]string // the flags given, by name
	env   Lookup
	path  string      // the config file, "" for none
	file  *fileConfig // empty without a file
	root  yaml.Node   // the file's document, for the lines of errors
}

// newSources reads the config file, if a flag or variable names one.
func newSources(flags map[string]string, env Lookup) (*sources, error) {
	src := &sources{flags: flags, env: env, file: &fileConfig{}}
	if path, _, ok := src.explicit(configFile); ok {
		f, root, err := readFile(path)
		if err != nil {
			return nil, err
		}
		src.path, src.file, src.root = path, f, root
	}
	return src, nil
}

// explicit returns the value of a flag or, failing that, a non-empty
// AUTHZ_* variable, and names it.
func (src *sources) explicit(name string) (val, where string, ok bool) {
	if v, ok := src.flags[name]; ok {
		return v, "--" + name, true
	}
	s := named(name)
	if v, ok := src.env(s.env()); ok && v != "" {
		return v, s.env(), true
	}
	return "", "", false
}

// inFile returns the file's value of a setting, named FILE:LINE: key.
func (src *sources) inFile(name string) (val, where string, ok bool) {
	key := named(name).key()
	v, ok := src.file.values[key]
	if !ok {
		return "", "", false
	}
	return v.text, fmt.Sprintf("%s:%d: %s", src.path, v.line, key), true
}

// value resolves a setting: flag, variable, file, default.
func (src *sources) value(s setting) (val, where string) {
	if v, w, ok := src.explicit(s.name); ok {
		return v, w
	}
	if v, w, ok := src.inFile(s.name); ok {
		return v, w
	}
	return s.def, "default of --" + s.name
}

// at names a line of the file: FILE:LINE, the line of key (and of its
// idx-th element when idx >= 0).
func (src *sources) at(key string, idx int) string {
	return fmt.Sprintf("%s:%d", src.path, lineOf(&src.root, key, idx))
}

// textValue is a setting's flag, kept as text: the setting's parser reads it
// like the variable's or the file's text, and names where it came from.
type textValue struct{ s string }

func (v *textValue) String() string {
	if v == nil {
		return ""
	}
	return v.s
}

func (v *textValue) Set(s string) error {
	v.s = s
	return nil
}

// switchValue is a boolean flag kept as text, so that it resolves like every
// other setting (flag, variable, file, default): --name alone means true.
type switchValue struct{ s string }

func (v *switchValue) String() string {
	if v == nil {
		return ""
	}
	return v.s
}

func (v *switchValue) Set(s string) error {
	if _, err := strconv.ParseBool(s); err != nil {
		return errors.New("not true or false")
	}
	v.s = s
	return nil
}

func (v *switchValue) IsBoolFlag() bool { return true }

// FlagTakesValue reports whether --name is a setting's flag (known) and
// whether it takes a value (every one but the true-or-false switches, whose
// bare flag means true), so that a command wrapping the server's flags
// (explain, validate) can tell their values from its own arguments.
func FlagTakesValue(name string) (takes, known bool) {
	for _, s := range settings {
		if s.name == name {
			return !s.isSwitch(), true
		}
	}
	return false, false
}
