package authz

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/extauthz/extauthz/internal/uripath"
)

// readings returns two readings of a request target: strict, the path as a
// standards-following server sees it (query dropped, only unreserved
// characters percent-decoded, dot segments resolved), and lenient, the path
// as the most forgiving backend might see it (fully percent-decoded, twice
// if need be, backslashes as slashes, ";" parameters dropped, repeated
// slashes collapsed, dot segments resolved). ok is false when the target is
// not an origin-form or absolute-form path at all (no leading slash, a
// control character, a broken percent escape).
//
// Rules are matched against both readings and the stricter answer wins, so a
// path is public only if every reading of it is public, and a path that any
// backend could resolve into a scoped prefix needs those scopes.
func readings(target string) (strict, lenient string, ok bool) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		// A request target never holds a fragment, and servers disagree on
		// a raw "#": nginx ends the path there (and passes the raw target
		// upstream), Go's server keeps it in the path, where http.FileServer
		// cleans "/x#/../admin" to "/admin". Read it both ways.
		strict, _, ok = readings(target[:i])
		_, lenient, _ = readings(strings.ReplaceAll(target, "#", "%23"))
		return strict, lenient, ok
	}
	if rest, found := cutScheme(target); found {
		// Absolute form (http://host/path), which nginx's $request_uri can
		// carry: the path starts at the first slash after the authority.
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "/", "/", true
		}
		target = rest[i:]
	}
	if !strings.HasPrefix(target, "/") {
		d, _ := fullyDecode(target)
		l := resolveDots(collapseSlashes(strings.ReplaceAll("/"+d, `\`, "/")))
		return "", l, false
	}
	if !strings.ContainsAny(target, `%\;`) && !strings.Contains(target, "//") && !strings.Contains(target, "/.") {
		return target, target, validChars(target)
	}
	strict, ok = decodeUnreserved(target)
	strict = resolveDots(strict)
	decoded, done := fullyDecode(target)
	lenient = strings.ReplaceAll(decoded, `\`, "/")
	lenient = resolveDots(collapseSlashes(dropParams(lenient)))
	return strict, lenient, ok && done && validChars(target)
}

func cutScheme(s string) (string, bool) {
	for _, p := range []string{"http://", "https://"} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return s[len(p):], true
		}
	}
	return s, false
}

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// decodeUnreserved decodes the percent escapes of unreserved characters
// (RFC 3986 §2.3, the ones that never change a path's meaning) and leaves the
// others encoded. ok is false on a broken escape.
func decodeUnreserved(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return s, false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return s, false
		}
		if c := hi<<4 | lo; unreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upper(s[i+1]))
			b.WriteByte(upper(s[i+2]))
		}
		i += 2
	}
	return b.String(), true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// fullyDecode percent-decodes every valid escape, repeating up to three times
// so that double and triple encoding (%252e, %25252e) are seen through. done
// is false when a valid escape is still left after that: no backend decodes
// so often, but such a path is in doubt (and decoding on until nothing
// changes would cost time quadratic in the path's length).
func fullyDecode(s string) (decoded string, done bool) {
	for round := 0; ; round++ {
		d := decodeOnce(s)
		if len(d) == len(s) {
			return s, true
		}
		if round == 3 {
			return s, false
		}
		s = d
	}
}

// decodeOnce percent-decodes every valid escape once, leaving broken ones.
func decodeOnce(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// dropParams removes ";parameters" from each segment (Tomcat and other
// servlet containers resolve "/public/..;/admin" to "/admin").
func dropParams(s string) string {
	if !strings.Contains(s, ";") {
		return s
	}
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			segs[i] = seg[:j]
		}
	}
	return strings.Join(segs, "/")
}

func collapseSlashes(s string) string {
	for strings.Contains(s, "//") {
		s = strings.ReplaceAll(s, "//", "/")
	}
	return s
}

// resolveDots removes "." and ".." segments (RFC 3986 §5.2.4). The result
// starts with "/", and ".." never climbs above the root.
func resolveDots(p string) string { return uripath.RemoveDots(p) }

// MaxSlowPathBytes bounds a path (query excluded) that needs more than one
// reading (escapes, dot segments, backslashes, parameters, repeated
// slashes): every reading is a pass over it, so such a path is refused (414)
// above this size rather than read dozens of times. Plain paths are read
// once and are not bounded here (the proxy bounds them).
const MaxSlowPathBytes = 4 << 10

// folds returns the readings of backends that map several spellings to one
// resource: case-insensitive routers (Express by default, ASP.NET, IIS),
// Windows file systems (trailing dots and spaces of a segment ignored),
// format suffixes (Rails, older Spring: "/admin.json" is "/admin"), C strings
// (a decoded NUL ends the path) and Unicode normalisation (NFKC: a fullwidth
// "ａ" is "a"). They are appended to buf, without duplicates. Each can only
// make a decision stricter: it adds the scopes its rule requires, and keeps a
// path from being public unless it is public too. sane is false when a
// reading holds a control character or invalid UTF-8 after decoding: such a
// path is in doubt and never public.
func folds(vs []string, buf []string) (out []string, sane bool) {
	out, sane = buf[:0], true
	for _, v := range vs {
		plain := true
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c == 0x7f {
				sane = false
			} else if c >= 0x80 {
				plain = false
			}
		}
		if !plain && !utf8.ValidString(v) {
			sane = false
		}
		x := v
		if i := strings.IndexByte(x, 0); i >= 0 {
			x = x[:i]
		}
		x = foldPath(x)
		if !contains(out, x) {
			out = append(out, x)
		}
		if e := stripExtension(x); e != x && !contains(out, e) {
			out = append(out, e)
		}
	}
	return out, sane
}

// foldPath is the fold in which case-insensitive, Unicode-normalising and
// Windows-like backends compare paths: NFKC, lower case, trailing dots and
// spaces of each segment dropped, dot segments resolved. Rule paths are
// folded with it too, so that a reading and a rule are always compared in
// the same fold.
func foldPath(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] >= 0x80 {
			p = norm.NFKC.String(p)
			break
		}
	}
	return resolveDots(trimSegments(strings.ToLower(p)))
}

// trimSegments drops the trailing dots and spaces of every segment, as
// Windows does with file names ("admin." and "admin " are "admin", and
// ".. " is ".."), keeping "." and "..".
func trimSegments(p string) string {
	if !strings.Contains(p, ".") && !strings.Contains(p, " ") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		t := strings.TrimRight(seg, " ")
		if t != "." && t != ".." {
			if u := strings.TrimRight(t, ". "); u != "" || t == "" {
				t = u
			} else {
				t = "." // a segment of dots only
			}
		}
		segs[i] = t
	}
	return strings.Join(segs, "/")
}

// stripExtension removes a format suffix from the last segment
// ("/admin.json" -> "/admin").
func stripExtension(p string) string {
	i := strings.LastIndexByte(p, '/')
	if j := strings.IndexByte(p[i+1:], '.'); j > 0 {
		return p[:i+1+j]
	}
	return p
}

// variants returns every reading of target that some backend may make, the
// strict one first: a raw "#" as the end of the path or as a character;
// percent escapes decoded for unreserved characters only, or fully once,
// twice or three times; ";" parameters kept, dropped before decoding or
// after; backslashes as characters or as slashes; repeated slashes kept or
// merged; dot segments resolved. ok is false when the target is in doubt
// (no leading slash, a control character, a broken escape, escapes left
// after three decodings): such a target is never public. out is nil when a
// target that needs several readings is longer than MaxSlowPathBytes. A plain target,
// the common case, has one reading and costs one scan.
//
// The plain target's reading is appended to buf; other readings go to a new
// slice.
func variants(target string, buf []string) (out []string, ok bool) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if !strings.ContainsAny(target, `%\;#`) && !strings.Contains(target, "//") && !strings.Contains(target, "/.") &&
		strings.HasPrefix(target, "/") {
		return append(buf[:0], target), validChars(target)
	}
	if len(target) > MaxSlowPathBytes {
		return nil, false
	}
	ok = true
	// Readings are deduplicated before dot segments are resolved, the
	// costly step, and dimensions that cannot change anything are skipped:
	// a hostile path costs a bounded number of linear passes.
	seen := make(map[string]bool, 16)
	add := func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		if r := resolveDots(p); !contains(out, r) {
			out = append(out, r)
		}
	}
	frags := []string{target}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		frags = []string{target[:i], strings.ReplaceAll(target, "#", "%23")}
	}
	for _, f := range frags {
		if rest, found := cutScheme(f); found {
			f = "/"
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				f = rest[i:]
			}
		}
		if !strings.HasPrefix(f, "/") {
			ok = false
			f = "/" + f
		}
		ok = ok && validChars(f)
		strict, good := decodeUnreserved(f)
		ok = ok && good
		add(strict)
		paramModes := []int{keepParams}
		if strings.Contains(f, ";") || strings.Contains(f, "%") {
			paramModes = []int{keepParams, dropBefore, dropAfter}
		}
		for _, params := range paramModes {
			g := f
			if params == dropBefore {
				g = dropParams(g)
			}
			for level := 0; level <= 3; level++ {
				var d string
				if level == 0 {
					d, _ = decodeUnreserved(g)
				} else {
					d = decodeOnce(g)
					if d == g && level > 1 {
						break // nothing left to decode
					}
					if level == 3 && strings.Contains(d, "%") && decodeOnce(d) != d {
						ok = false // still encoded: no backend decodes so often
					}
					g = d
				}
				if params == dropAfter {
					d = dropParams(d)
				}
				xs := []string{d}
				if strings.Contains(d, `\`) {
					xs = append(xs, strings.ReplaceAll(d, `\`, "/"))
				}
				for _, x := range xs {
					add(x)
					if strings.Contains(x, "//") {
						add(collapseSlashes(x))
					}
				}
			}
		}
	}
	return out, ok
}

const (
	keepParams = iota
	dropBefore
	dropAfter
)

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
