package redact

import "strings"

// Mask stands in for a removed secret; it is what (*url.URL).Redacted uses.
const Mask = "xxxxx"

// URL returns raw with its user info replaced by [Mask], for display: in a
// log line, an error, a status page. The request itself is still made with
// raw. It never fails, whether raw parses as a URL or not.
//
// The whole user info goes, the user name with the password, unlike
// (*url.URL).Redacted and net/http's errors, which keep the user name: the
// user name is often the secret itself (https://TOKEN@host,
// https://TOKEN:x-oauth-basic@host, an API key with an empty password), and
// the operator who wrote the URL knows which account it names. What is shown
// is that the URL carries credentials, then its host, port, path and query,
// which are what a failed fetch needs to be understood.
//
// The user info is taken to run from just after "://" (or the start) to the
// last "@", not to the first "/" as a URL parser reads it. A password with an
// unescaped "/", "?" or "#" ends the parsed authority early
// (https://reader:12/ab@host parses as host "reader", port 12, path
// "/ab@host"), and "reader:secret@host" parses as a scheme: both are masked
// here all the same. The price is that an "@" of the path or query masks
// what comes before it too, which costs a JWKS URL nothing but readability.
func URL(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return raw[:start] + Mask + raw[at:]
}
