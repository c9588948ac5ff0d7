package standin

import (
	"strings"
	"testing"
)

func TestNormalizeTarget(t *testing.T) {
	tests := []struct {
		name         string
		target       string
		want         string
		wantRedirect bool
		wantOK       bool
	}{
		{name: "plain", target: "/public/x?a=1", want: "/public/x?a=1", wantOK: true},
		{name: "dot-dot climbs out of public", target: "/public/../admin", want: "/admin", wantOK: true},
		{name: "dot segments", target: "/a/./b/../c/", want: "/a/c/", wantOK: true},
		{name: "trailing dot-dot keeps the slash", target: "/a/b/..", want: "/a/", wantOK: true},
		{name: "dot-dot above root stays at root", target: "/../../admin", want: "/admin", wantOK: true},
		{name: "merged slashes", target: "//admin///x", want: "/admin/x", wantOK: true},
		{name: "escaped dots are dots", target: "/public/%2e%2E/admin", want: "/admin", wantOK: true},
		{name: "escaped unreserved decoded", target: "/%61dmin", want: "/admin", wantOK: true},
		{name: "other escapes upper-cased", target: "/a%3ab", want: "/a%3Ab", wantOK: true},
		{name: "backslash is a slash", target: `/public\..\admin`, want: "/admin", wantOK: true},
		{name: "query untouched", target: "/a/../b?x=/../y", want: "/b?x=/../y", wantOK: true},
		{name: "escaped slash redirects", target: "/public%2F..%2Fadmin?q=1", want: "/public/../admin?q=1", wantRedirect: true, wantOK: true},
		{name: "escaped backslash redirects", target: "/a%5cb", want: `/a\b`, wantRedirect: true, wantOK: true},
		{name: "asterisk", target: "*", want: "*", wantOK: true},
		{name: "bad escape rejected", target: "/a%zz", wantOK: false},
		{name: "truncated escape rejected", target: "/a%2", wantOK: false},
		{name: "relative rejected", target: "admin", wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, redirect, ok := normalizeTarget(tc.target)
			if ok != tc.wantOK {
				t.Fatalf("normalizeTarget(%q) ok = %v, want %v", tc.target, ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if got != tc.want || redirect != tc.wantRedirect {
				t.Errorf("normalizeTarget(%q) = %q, redirect %v; want %q, redirect %v", tc.target, got, redirect, tc.want, tc.wantRedirect)
			}
		})
	}
}

func FuzzNormalizeTarget(f *testing.F) {
	for _, s := range []string{"/", "/public/../admin", "//a//b/", "/%2e%2e/x", `/a\..\b`, "/a%2Fb?c", "/%", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got, redirect, ok := normalizeTarget(target)
		if !ok || redirect || got == "*" {
			return
		}
		// What the check sees is what goes upstream: it must be stable and
		// free of anything a backend could resolve differently.
		again, redirect2, ok2 := normalizeTarget(got)
		if !ok2 || redirect2 || again != got {
			t.Fatalf("normalizeTarget(%q) = %q, not a fixed point: %q, %v, %v", target, got, again, redirect2, ok2)
		}
		p, _, _ := strings.Cut(got, "?")
		for _, bad := range []string{"/../", "/./", "//", `\`} {
			if containsSegment(p, bad) {
				t.Fatalf("normalizeTarget(%q) = %q still contains %q", target, got, bad)
			}
		}
	})
}

func containsSegment(p, bad string) bool {
	if bad == "/../" || bad == "/./" {
		p += "/"
	}
	return strings.Contains(p, bad)
}
