package config

// The YAML config file: reading, strict decoding, and errors as FILE:LINE:.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileBytes bounds the config file.
const MaxFileBytes = 1 << 20

// fileConfig is the YAML file: the sections with a shape of their own,
// decoded strictly, and the scalar settings by file key.
type fileConfig struct {
	Providers    []fileProvider      `yaml:"providers"`
	Rules        []fileRule          `yaml:"rules"`
	Policies     map[string]fileRule `yaml:"policies"`
	ClaimHeaders map[string]string   `yaml:"claim_headers"`
	// MetadataClaims are claim paths an allowed CheckResponse carries in
	// its dynamic_metadata.
	MetadataClaims []string `yaml:"metadata_claims"`
	// Scalars collects every other top-level key; parseFile checks each
	// against the settings table.
	Scalars map[string]yaml.Node `yaml:",inline"`

	// values are the scalar settings the file sets, by key; a key whose
	// value is null is left out, so it falls through to the default.
	values map[string]fileValue
}

// fileValue is a scalar setting in the file: its text, read as the flag's
// would be, and its line.
type fileValue struct {
	text string
	line int
}

type fileProvider struct {
	Name       string   `yaml:"name"`
	Issuer     string   `yaml:"issuer"`
	Audiences  []string `yaml:"audiences"`
	JWKSURL    string   `yaml:"jwks_url"`
	Algorithms []string `yaml:"algorithms"`
	// ForwardToken keeps the Authorization header upstream on allow.
	ForwardToken bool `yaml:"forward_token"`
}

// fileRule is a rule of rules:, or a named policy of policies: (no path).
type fileRule struct {
	Path    string         `yaml:"path"`
	Methods []string       `yaml:"methods"`
	Hosts   []string       `yaml:"hosts"`
	Public  bool           `yaml:"public"`
	Deny    bool           `yaml:"deny"`
	Scopes  []string       `yaml:"scopes"`
	Claims  map[string]any `yaml:"claims"`
	When    string         `yaml:"when"`
}

func (r fileRule) rule(where string) Rule {
	return Rule{Path: r.Path, Methods: r.Methods, Hosts: r.Hosts, Public: r.Public, Deny: r.Deny,
		Scopes: r.Scopes, Claims: r.Claims, When: r.When, Where: where}
}

// readFile reads and strictly decodes the YAML file: unknown keys and wrong
// types are errors naming the line.
func readFile(path string) (*fileConfig, yaml.Node, error) {
	var root yaml.Node
	f, err := os.Open(path)
	if err != nil {
		return nil, root, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, root, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, root, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileBytes)
	}
	fc, root, err := parseFile(data)
	if err != nil {
		return nil, root, yamlError(path, err)
	}
	return fc, root, nil
}

// parseFile decodes a config file's bytes strictly. It is the fuzz target
// of the loader; errors carry YAML line numbers.
func parseFile(data []byte) (*fileConfig, yaml.Node, error) {
	var root yaml.Node
	fc := &fileConfig{}
	if len(bytes.TrimSpace(data)) == 0 {
		return fc, root, nil
	}
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, root, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// Unknown keys of providers and rules are errors; the top level's go to
	// Scalars, and scalars checks them.
	dec.KnownFields(true)
	var msgs []string
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		te, ok := errors.AsType[*yaml.TypeError](err)
		if !ok {
			return nil, root, err
		}
		msgs = te.Errors
	}
	if msgs = append(msgs, fc.scalars(&root)...); len(msgs) > 0 {
		return nil, root, &yaml.TypeError{Errors: msgs}
	}
	return fc, root, nil
}

// scalars checks the top-level keys the sections left in Scalars (each must
// be a setting's file key with a single value its row parses; the YAML
// library refuses a key set twice) and keeps their values in fc.values. It returns the errors
// as the YAML library words them: "line N: message".
func (fc *fileConfig) scalars(root *yaml.Node) []string {
	type entry struct {
		key  string
		line int
		node yaml.Node
	}
	var entries []entry
	for key, n := range fc.Scalars {
		// The key's line; a key merged in from elsewhere (<<) has none here.
		line := lineOf(root, key, -1)
		if line == 0 {
			line = n.Line
		}
		entries = append(entries, entry{key: key, line: line, node: n})
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Or(cmp.Compare(a.line, b.line), strings.Compare(a.key, b.key)) })
	var msgs []string
	fc.values = make(map[string]fileValue, len(entries))
	for _, e := range entries {
		s, ok := fileSetting(e.key)
		if !ok {
			msgs = append(msgs, fmt.Sprintf("line %d: unknown field %s", e.line, e.key))
			continue
		}
		n := &e.node
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch {
		case n.Kind != yaml.ScalarNode:
			msgs = append(msgs, fmt.Sprintf("line %d: %s: a list or mapping where a single value is expected", e.line, e.key))
		case n.ShortTag() == "!!null":
			// As an absent key: the default applies.
		default:
			// Parsed here too, so that every error of the file shows at
			// once, whatever a flag or variable overrides.
			if s.field != nil {
				if err := s.field.set(&Config{}, n.Value); err != nil {
					msgs = append(msgs, fmt.Sprintf("line %d: %s: %v", e.line, e.key, err))
					continue
				}
			}
			fc.values[e.key] = fileValue{text: n.Value, line: e.line}
		}
	}
	return msgs
}

// topMapping is the document's top-level mapping, nil if it is none.
func topMapping(root *yaml.Node) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	return n
}

// lineOf finds the line of key (and of its idx-th element when idx >= 0) in
// the document, for error messages. 0 when unknown.
func lineOf(root *yaml.Node, key string, idx int) int {
	n := topMapping(root)
	if n == nil {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != key {
			continue
		}
		v := n.Content[i+1]
		if idx >= 0 && v.Kind == yaml.SequenceNode && idx < len(v.Content) {
			return v.Content[idx].Line
		}
		return n.Content[i].Line
	}
	return 0
}

// lineOfKey returns the line of key's member named name, in the top-level
// mapping key (a named policy's line); key's own line when there is none.
func lineOfKey(root *yaml.Node, key, name string) int {
	n := topMapping(root)
	if n == nil {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != key {
			continue
		}
		if v := n.Content[i+1]; v.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(v.Content); j += 2 {
				if v.Content[j].Value == name {
					return v.Content[j].Line
				}
			}
		}
		return n.Content[i].Line
	}
	return 0
}

// fileError is a YAML error rendered as one line of FILE:LINE: messages.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

// yamlError renders the YAML library's errors, which put "line N:" inside
// the text and several type errors on several lines, as FILE:LINE: message
// on one line.
func yamlError(path string, err error) error {
	at := func(msg string) string {
		rest, ok := strings.CutPrefix(msg, "line ")
		if !ok {
			return "config file " + path + ": " + msg
		}
		n, text, ok := strings.Cut(rest, ": ")
		if _, aerr := strconv.Atoi(n); !ok || aerr != nil {
			return "config file " + path + ": " + msg
		}
		// "field x not found in type config.fileProvider" names a Go type.
		if f, ok := strings.CutPrefix(text, "field "); ok {
			if name, _, ok := strings.Cut(f, " not found in type "); ok {
				text = "unknown field " + name
			}
		}
		return path + ":" + n + ": " + text
	}
	// The messages quote the file's values, which may span lines.
	oneLine := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = at(oneLine(m))
		}
		return &fileError{msg: strings.Join(msgs, "; "), err: err}
	}
	return &fileError{msg: at(oneLine(strings.TrimPrefix(err.Error(), "yaml: "))), err: err}
}
