package authz

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

// errNotOneObject is the verification error of a token whose header or
// payload is not exactly one JSON object with unique member names.
var errNotOneObject = fmt.Errorf("%w: header or payload is not exactly one JSON object with unique member names", jwt.ErrTokenMalformed)

// checkSegments refuses a compact JWS whose protected header or payload is
// anything but exactly one JSON object, in UTF-8, whose members have unique
// names at every depth (RFC 7515 §5.2 step 4, RFC 7519 §7.2 step 10 and
// RFC 7493 §2.3).
//
// The JWT library decodes each segment with a streaming decoder that stops
// after the first value and resolves duplicate names last-wins: a payload
// `{...}{"sub":"admin"}` or `{"sub":"admin","sub":"alice"}` would verify,
// and x-jwt-payload would hand both readings to a backend whose parser may
// take the other one. A token one parser could read two ways is refused
// (malformed) instead. It runs only when a token is verified, never on a
// cache hit; segments the library would not decode either are left to it.
func checkSegments(raw string) error {
	header, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil // not three segments: the parser says malformed
	}
	// One buffer, sized for the larger segment, serves both.
	n := max(base64.RawURLEncoding.DecodedLen(len(header)), base64.RawURLEncoding.DecodedLen(len(payload)))
	buf := make([]byte, 0, n)
	for _, seg := range [2]string{header, payload} {
		b, err := base64.RawURLEncoding.AppendDecode(buf[:0], []byte(seg))
		if err != nil {
			return nil // the parser refuses it too, with its own error
		}
		if !oneObject(b) {
			return errNotOneObject
		}
	}
	return nil
}

// oneObject reports whether b is exactly one JSON object (white space
// around it allowed) that is valid by RFC 7493: UTF-8, escapes that decode
// to Unicode code points, and unique member names in every object.
func oneObject(b []byte) bool {
	v := jsontext.Value(b)
	if k := firstNonSpace(b); k != '{' {
		return false
	}
	return v.IsValid()
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}
