package uripath

import "testing"

// TestRemoveDots: RFC 3986 §5.2.4's examples for absolute paths, and the
// root bound.
func TestRemoveDots(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b/c/./../../g":    "/a/g",
		"/mid/content=5/../6": "/mid/6",
		"/a/b/..":             "/a/",
		"/a/b/.":              "/a/b/",
		"/../../x":            "/x",
		"/..":                 "/",
		"/":                   "/",
		"/a.b/c..d/...":       "/a.b/c..d/...",
		"/no/dots":            "/no/dots",
	} {
		if got := RemoveDots(in); got != want {
			t.Errorf("RemoveDots(%q) = %q, want %q", in, got, want)
		}
	}
}
