package authz

// Rendering verified claims as upstream headers, and removing look-alikes.

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// renderClaimHeaders renders the configured claim headers from a verified
// token: the ones with a value, sorted by name, and the names of the others.
func (s *Server) renderClaimHeaders(v verified) (set []Header, missing []string) {
	for _, h := range s.claimHeaders {
		if val, ok := v.claimValue(h.claim); ok {
			set = append(set, Header{Name: h.name, Value: val})
		} else {
			missing = append(missing, h.name)
		}
	}
	return set, missing
}

// claimHeadersFor computes the headers to set and remove upstream. Every
// configured claim header is in exactly one of the two lists; look-alike
// request headers (x_jwt_sub for x-jwt-sub, x-user for x_user) are removed.
// Header names are case-insensitive, so a spelling that differs from a
// configured name only in case is that header, handled by the first list,
// and is never removed (that would remove the value just set). v is a
// verified token, or the zero value for an anonymous request.
func (s *Server) claimHeadersFor(v verified, requestHeaders []string, hasToken bool) (set []Header, remove []string) {
	set, remove = v.headers, v.missing
	if v.reason != Allowed {
		set, remove = nil, s.allClaimHeaders
		if hasToken {
			remove = s.anonRemove // an unverified token is not forwarded either
		}
	}
	cloned := false
	for _, name := range requestHeaders {
		n := strings.ToLower(name)
		canon := strings.ReplaceAll(n, "_", "-")
		for _, h := range s.claimHeaders {
			if n != h.name && strings.ReplaceAll(h.name, "_", "-") == canon && !slices.Contains(remove, n) {
				if !cloned {
					// set and remove are shared with the cache entry.
					remove, cloned = slices.Clone(remove), true
				}
				remove = append(remove, n)
			}
		}
	}
	if cloned {
		slices.Sort(remove)
	}
	return set, remove
}

// claimValue renders a claim as a header value. ok is false when the token
// is absent, the claim is missing or null, or its value cannot be a header
// value (control characters).
func (v verified) claimValue(path string) (string, bool) {
	if v.claims == nil {
		return "", false
	}
	if path == PayloadClaim {
		return v.payload, v.payload != ""
	}
	val, ok := lookup(v.claims, path)
	if !ok || val == nil {
		return "", false
	}
	var s string
	switch x := val.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			switch e := e.(type) {
			case string:
				if strings.ContainsRune(e, ',') || e != strings.Trim(e, " \t") {
					// Joined with ",", it would read as several values
					// (["admin,users"] as ["admin", "users"]).
					return "", false
				}
				parts = append(parts, e)
			case json.Number:
				parts = append(parts, e.String())
			case bool:
				parts = append(parts, strconv.FormatBool(e))
			default:
				b, err := json.Marshal(x)
				if err != nil {
					return "", false
				}
				return headerSafe(string(b))
			}
		}
		s = strings.Join(parts, ",")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	return headerSafe(s)
}

func headerSafe(s string) (string, bool) {
	if s != strings.Trim(s, " \t") {
		// Proxies and backends strip surrounding white space (RFC 9110
		// §5.5): " admin " would arrive as "admin".
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", false
		}
	}
	return s, true
}

// lookup finds a claim: an exact name wins, otherwise dots descend.
func lookup(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	for found {
		if v, ok := m[head].(map[string]any); ok {
			if x, ok := lookup(v, rest); ok {
				return x, true
			}
		}
		// A key may itself contain dots ("https://example.com/x.y"): try a
		// longer head.
		var more string
		more, rest, found = strings.Cut(rest, ".")
		head = head + "." + more
	}
	return nil, false
}
