package dpop

import (
	"errors"
	"net/url"
	"strings"

	"github.com/extauthz/extauthz/internal/uripath"
)

// NormalizeURI returns the form in which htu and the request's URI are
// compared (RFC 9449 §4.3 point 9, with RFC 3986 §6.2.2 and §6.2.3): scheme
// and host in lower case, the scheme's default port dropped, an empty path
// as "/", percent-encodings of unreserved characters decoded and the others
// in upper case, dot segments removed; the query and fragment dropped. Only
// http and https URIs with a host are accepted.
func NormalizeURI(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an absolute http(s) URI with a host")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6 literal
	}
	if port != "" {
		host += ":" + port
	}
	path, err := normalizePath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + path, nil
}

// normalizePath applies percent-encoding normalization and removes dot
// segments.
func normalizePath(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", errors.New("a broken percent-encoding in the path")
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if unreserved(d) {
			b.WriteByte(d)
		} else {
			b.WriteString("%" + strings.ToUpper(p[i+1:i+3]))
		}
		i += 2
	}
	out := b.String()
	if out != "" {
		out = uripath.RemoveDots(out)
	}
	if out == "" {
		out = "/"
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
