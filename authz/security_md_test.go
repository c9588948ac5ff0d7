package authz

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// testRef is a test named in SECURITY.md: package/TestName/sub/tests.
var testRef = regexp.MustCompile(`^([a-z][a-z0-9_/-]*?)/((?:Test|Fuzz|Benchmark|Example)[A-Za-z0-9_]*)(?:/(.+))?$`)

// catalogueRef is one test reference of a table row.
type catalogueRef struct {
	line int
	pkg  string // directory below the module root
	fn   string
	subs []string // subtest names as written in the source; "*" is any
}

// parseCatalogue returns the test references in the last cell of every
// table row of SECURITY.md, and the rows that name none.
func parseCatalogue(doc string) (refs []catalogueRef, bare []int) {
	for i, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		last := strings.TrimSpace(cells[len(cells)-1])
		if last == "Tests" || last == "Test" {
			continue // a header row
		}
		n := 0
		for j, span := range strings.Split(last, "`") {
			if j%2 == 0 {
				continue // outside backticks
			}
			m := testRef.FindStringSubmatch(span)
			if m == nil {
				continue
			}
			r := catalogueRef{line: i + 1, pkg: m[1], fn: m[2]}
			if m[3] != "" {
				r.subs = strings.Split(m[3], "/")
			}
			refs = append(refs, r)
			n++
		}
		if n == 0 {
			bare = append(bare, i+1)
		}
	}
	return refs, bare
}

// TestSecurityCatalogue keeps SECURITY.md honest: every table row names at
// least one test, every named test function exists in its package's
// *_test.go files, every named subtest is a string in the same file (the
// best a source check can do; go test turns its spaces into "_"), every
// known gap points at a test that can skip as a known vulnerability, and
// every attack test of the four attack_test.go files is in the catalogue.
func TestSecurityCatalogue(t *testing.T) {
	root := ".."
	raw, err := os.ReadFile(filepath.Join(root, "SECURITY.md"))
	if err != nil {
		t.Fatalf("SECURITY.md: %v", err)
	}
	doc := string(raw)
	refs, bare := parseCatalogue(doc)
	for _, l := range bare {
		t.Errorf("SECURITY.md:%d: a table row names no test", l)
	}
	if len(refs) < 100 {
		t.Errorf("SECURITY.md names %d tests; the catalogue has lost its rows", len(refs))
	}

	// The test sources of each package, by file.
	sources := map[string]map[string]string{}
	load := func(pkg string) map[string]string {
		if s, ok := sources[pkg]; ok {
			return s
		}
		files, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pkg), "*_test.go"))
		if err != nil {
			t.Fatal(err)
		}
		s := map[string]string{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s[filepath.Base(f)] = string(b)
		}
		sources[pkg] = s
		return s
	}

	knownGaps := doc[strings.Index(doc, "## Known gaps"):]
	knownGaps = knownGaps[:strings.Index(knownGaps, "\n## ")+1]
	gapRefs, _ := parseCatalogue(knownGaps)
	named := map[string]bool{}
	for _, r := range refs {
		named[r.pkg+"/"+r.fn] = true
		decl := regexp.MustCompile(`(?m)^func ` + r.fn + `\(`)
		var file string
		for name, src := range load(r.pkg) {
			if decl.MatchString(src) {
				file = name
				break
			}
		}
		if file == "" {
			t.Errorf("SECURITY.md:%d: %s/%s: no such test function in %s/*_test.go", r.line, r.pkg, r.fn, r.pkg)
			continue
		}
		src := sources[r.pkg][file]
		for _, sub := range r.subs {
			if sub != "*" && !strings.Contains(src, `"`+sub+`"`) {
				t.Errorf("SECURITY.md:%d: %s/%s: no subtest %q in %s/%s", r.line, r.pkg, r.fn, sub, r.pkg, file)
			}
		}
		if slices.ContainsFunc(gapRefs, func(g catalogueRef) bool { return g.pkg == r.pkg && g.fn == r.fn }) &&
			!strings.Contains(src, "KNOWN VULNERABILITY") && !strings.Contains(src, "knownIssue") {
			t.Errorf("SECURITY.md:%d: %s/%s is listed as a known gap, but %s cannot skip as one", r.line, r.pkg, r.fn, file)
		}
	}

	for _, pkg := range []string{"authz", "jwks", "server", "integration"} {
		src := load(pkg)["attack_test.go"]
		if src == "" {
			t.Errorf("%s/attack_test.go is missing", pkg)
			continue
		}
		for _, m := range regexp.MustCompile(`(?m)^func (TestAttack\w*)\(`).FindAllStringSubmatch(src, -1) {
			if !named[pkg+"/"+m[1]] {
				t.Errorf("%s/%s is not in SECURITY.md's catalogue", pkg, m[1])
			}
		}
	}
}

// TestParseCatalogue checks the parser on a made-up table, so that a broken
// parser cannot pass TestSecurityCatalogue by finding nothing.
func TestParseCatalogue(t *testing.T) {
	doc := "# x\n\n| Attack | Outcome | Tests |\n|---|---|---|\n" +
		"| `alg: none` | `401` | `authz/TestA/b c, d`, `jwks/FuzzParse` |\n" +
		"| nothing | here | no test |\n" +
		"| nested | | `integration/TestGuide/*/two Authorization headers` |\n"
	refs, bare := parseCatalogue(doc)
	want := []catalogueRef{
		{line: 5, pkg: "authz", fn: "TestA", subs: []string{"b c, d"}},
		{line: 5, pkg: "jwks", fn: "FuzzParse"},
		{line: 7, pkg: "integration", fn: "TestGuide", subs: []string{"*", "two Authorization headers"}},
	}
	if len(refs) != len(want) {
		t.Fatalf("refs = %+v, want %+v", refs, want)
	}
	for i := range want {
		if refs[i].line != want[i].line || refs[i].pkg != want[i].pkg || refs[i].fn != want[i].fn || !slices.Equal(refs[i].subs, want[i].subs) {
			t.Errorf("ref %d = %+v, want %+v", i, refs[i], want[i])
		}
	}
	if !slices.Equal(bare, []int{6}) {
		t.Errorf("rows without tests = %v, want [6]", bare)
	}
}
