// Package uripath holds the URI path algorithms that the decision (package
// authz, reading a request's path) and DPoP (package dpop, comparing a
// proof's htu) must apply identically.
package uripath

import "strings"

// RemoveDots removes the "." and ".." segments of an absolute path (RFC 3986
// §5.2.4): the result starts with "/" (p must), ".." never climbs above the
// root, and a final "." or ".." leaves a trailing "/".
func RemoveDots(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p, "/")[1:]
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		last := i == len(segs)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}
