package config

// The YAML config file: reading, strict decoding, and errors as FILE:LINE:.

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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

	// sha256 is the digest of the file as read.
	sha256 string
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
	// TokenSources: where the provider's tokens come from, in order.
	TokenSources []fileTokenSource `yaml:"token_sources"`
	// Discovery and DiscoveryURL: the key set's URL from the discovery
	// document.
	Discovery    bool   `yaml:"discovery"`
	DiscoveryURL string `yaml:"discovery_url"`
	// Sender-constrained tokens (DPoP, certificate binding).
	SenderConstraint  string   `yaml:"sender_constraint"`
	DPoPAlgorithms    []string `yaml:"dpop_algorithms"`
	DPoPMaxAge        string   `yaml:"dpop_max_age"`
	DPoPMaxAhead      string   `yaml:"dpop_max_ahead"`
	DPoPNonce         bool     `yaml:"dpop_nonce"`
	DPoPNonceKeyFile  string   `yaml:"dpop_nonce_key_file"`
	DPoPPublicBaseURL string   `yaml:"dpop_public_base_url"`
	ClientCertFrom    string   `yaml:"client_cert_from"`
	ClientCertHeader  string   `yaml:"client_cert_header"`
}

// fileTokenSource is one token location of a provider.
type fileTokenSource struct {
	Header string `yaml:"header"`
	Prefix string `yaml:"prefix"`
	Cookie string `yaml:"cookie"`
	Query  string `yaml:"query"`
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
	// Enforce false makes the rule's denials shadow allows.
	Enforce *bool `yaml:"enforce"`
}

func (r fileRule) rule(where string) Rule {
	return Rule{Path: r.Path, Methods: r.Methods, Hosts: r.Hosts, Public: r.Public, Deny: r.Deny,
		Scopes: r.Scopes, Claims: r.Claims, When: r.When, Shadow: r.Enforce != nil && !*r.Enforce, Where: where}
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
	sum := sha256.Sum256(data)
	fc.sha256 = hex.EncodeToString(sum[:])
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
		return nil, root, syntaxError(data, err)
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
		for _, m := range te.Errors {
			msgs = append(msgs, nameField(&root, m))
		}
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

// syntaxError returns err, a YAML syntax error, with the line of the
// problem. The YAML library names the line where the construct around it
// began (a block mapping, the rules: list), counted from 0 for parser
// errors: often a line or more before the mistake. The problem's line is
// the first from there at which the file, cut after it, fails with the
// same message: the parser reads left to right, so the mistake fails the
// same way in every longer cut, and a shorter cut either parses or fails
// for its truncation. At most maxSyntaxCuts cuts are parsed, one line
// apart, then the rest by halves.
func syntaxError(data []byte, err error) error {
	rest, ok := strings.CutPrefix(err.Error(), "yaml: line ")
	if !ok {
		return err
	}
	n, msg, ok := strings.Cut(rest, ": ")
	line, aerr := strconv.Atoi(n)
	if !ok || aerr != nil {
		return err
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(cut int) bool {
		var n yaml.Node
		e := yaml.Unmarshal(bytes.Join(lines[:cut], nil), &n)
		if e == nil {
			return false
		}
		_, m, _ := strings.Cut(strings.TrimPrefix(e.Error(), "yaml: line "), ": ")
		return m == msg
	}
	lo, hi := max(line, 1), len(lines) // fails(hi): the whole file
	if lo >= hi {
		return &syntaxErr{line: line, msg: msg, err: err}
	}
	for cut := lo; cut < min(hi, lo+maxSyntaxCuts); cut++ {
		if fails(cut) {
			return &syntaxErr{line: cut, msg: msg, err: err}
		}
	}
	for lo = min(hi, lo+maxSyntaxCuts); lo < hi; {
		if mid := lo + (hi-lo)/2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return &syntaxErr{line: hi, msg: msg, err: err}
}

// maxSyntaxCuts bounds the line-by-line search of syntaxError: a mistake is
// rarely more lines than this below the construct it breaks.
const maxSyntaxCuts = 64

// syntaxErr is a YAML syntax error with the line of its problem, worded as
// the YAML library words its errors.
type syntaxErr struct {
	line int
	msg  string
	err  error
}

func (e *syntaxErr) Error() string { return fmt.Sprintf("yaml: line %d: %s", e.line, e.msg) }
func (e *syntaxErr) Unwrap() error { return e.err }

// nameField rewords one of the YAML library's decoding errors, which name a
// line and Go types ("line 5: cannot unmarshal !!str `admin` into
// []string", "line 5: field scope not found in type config.fileRule"), to
// name the field and what it should be: "line 5: rules[0].scopes: "admin"
// is not a list", "line 5: rules[0]: unknown field scope". An error it
// cannot place is returned as it is.
func nameField(root *yaml.Node, msg string) string {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return msg
	}
	n, text, ok := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(n)
	if !ok || err != nil {
		return msg
	}
	if f, ok := strings.CutPrefix(text, "field "); ok {
		if name, _, ok := strings.Cut(f, " not found in type "); ok {
			if path, _, found := fieldAt(root, line, true, func(k *yaml.Node) bool { return k.Value == name }); found && path != "" {
				return fmt.Sprintf("line %d: %s: unknown field %s", line, path, name)
			}
		}
		return msg
	}
	m := unmarshalError.FindStringSubmatch(text)
	if m == nil {
		return msg
	}
	tag, goType := m[1], m[3]
	path, v, found := fieldAt(root, line, false, func(v *yaml.Node) bool {
		if v.ShortTag() != tag {
			return false
		}
		if cut, ok := strings.CutSuffix(m[2], "..."); ok {
			return strings.HasPrefix(v.Value, cut)
		}
		return m[2] == "" || v.Value == m[2]
	})
	if !found {
		return msg
	}
	if path == "" {
		path = "the file"
	}
	return fmt.Sprintf("line %d: %s: %s is not %s", line, path, yamlWhat(v), goWhat(goType))
}

// unmarshalError is the YAML library's type error: the node's tag, its
// value for a scalar (cut to 7 bytes and "..." past 10), the Go type.
var unmarshalError = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")

// fieldAt finds, on line, the deepest value node (a mapping's value, a
// list's element or the document) that match accepts, or with keys, the
// first mapping key; it returns the node and its path, rules[0].scopes or
// policies.admin, "" for the document (a key's path is its mapping's).
func fieldAt(root *yaml.Node, line int, keys bool, match func(n *yaml.Node) bool) (string, *yaml.Node, bool) {
	var (
		best      *yaml.Node
		bestPath  string
		bestDepth = -1
	)
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if n == nil || depth > 64 || keys && best != nil { // files are shallow
			return
		}
		if !keys && n.Line == line && depth > bestDepth && match(n) {
			best, bestPath, bestDepth = n, path, depth
		}
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) > 0 {
				walk(n.Content[0], path, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if keys && k.Line == line && match(k) {
					best, bestPath = k, path
					return
				}
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				walk(n.Content[i+1], p, depth+1)
			}
		}
	}
	walk(root, "", 0)
	return bestPath, best, best != nil
}

// yamlWhat names what the file holds at a node: a list, a mapping, or the
// value itself, quoted (and cut when long).
func yamlWhat(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return strconv.Quote(v)
}

// goWhat names what a Go type of the file's shape expects.
func goWhat(t string) string {
	switch {
	case t == "config.fileConfig":
		return "a mapping of settings"
	case strings.HasPrefix(t, "[]config.file"):
		return "a list of " + strings.ToLower(strings.TrimPrefix(t, "[]config.file")) + "s"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map[string]config.file"):
		return "a mapping of named " + strings.ToLower(strings.TrimPrefix(t, "map[string]config.file")) + "s"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case strings.HasPrefix(t, "config.file"):
		return "a mapping (a " + strings.ToLower(strings.TrimPrefix(t, "config.file")) + ")"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a single value"
	}
	return "a " + t
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
