package standin

import (
	"strings"
)

// normalizeTarget applies to a raw request target what an
// HttpConnectionManager with normalize_path: true, merge_slashes: true and
// path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT does before any
// filter sees the request. The query is left alone. It returns the target to
// use; redirect is true when the client must instead be sent to that target
// (it had %2F or %5C in its path), and ok is false for a target Envoy
// rejects with 400.
//
// Envoy canonicalises with Chromium's URL library; this is the RFC 3986
// subset that matters for authorization: percent-escapes of unreserved
// characters decoded (so %2e is a dot), other escapes upper-cased, "\" read
// as "/", bytes that cannot stand in a path escaped, dot segments removed,
// then runs of "/" merged. The checked path and the forwarded path are the
// same string either way.
func normalizeTarget(target string) (normalized string, redirect, ok bool) {
	if target == "*" {
		return target, false, true
	}
	p, query, hasQuery := strings.Cut(target, "?")
	if !strings.HasPrefix(p, "/") {
		return "", false, false
	}

	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", false, false
			}
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(d) {
				b.WriteByte(d)
			} else {
				b.WriteByte('%')
				b.WriteString(strings.ToUpper(p[i+1 : i+3]))
			}
			i += 2
		case c == '\\':
			b.WriteByte('/')
		case c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>`", c) >= 0:
			b.WriteString(percentEncode(c))
		default:
			b.WriteByte(c)
		}
	}
	p = mergeSlashes(removeDotSegments(b.String()))

	if strings.Contains(p, "%2F") || strings.Contains(p, "%5C") {
		p = strings.NewReplacer("%2F", "/", "%5C", "\\").Replace(p)
		redirect = true
	}
	if hasQuery {
		p += "?" + query
	}
	return p, redirect, true
}

// removeDotSegments is RFC 3986 section 5.2.4 for an absolute path.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/." and "/a/b/.." keep their trailing slash.
		}
	}
	return "/" + strings.Join(out, "/")
}

func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func percentEncode(c byte) string {
	const hexDigits = "0123456789ABCDEF"
	return string([]byte{'%', hexDigits[c>>4], hexDigits[c&0xf]})
}
