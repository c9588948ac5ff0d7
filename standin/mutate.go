package standin

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
)

// ErrInvalidMutation reports a CheckResponse that Envoy with
// validate_mutations: true rejects (Filter::rejectResponse): a header name or
// value that is not valid HTTP, an unknown append_action, a pseudo-header
// given a bad value, or a query parameter that is not URL-encoded. The
// stand-in answers such a response with 500 and never contacts the upstream.
var ErrInvalidMutation = errors.New("standin: invalid mutation from ext_authz server")

// ApplyOK applies the request mutations of ok to h the way Envoy's ext_authz
// filter does before it forwards a request upstream:
//
//  1. ok.Headers, one after another in order. A set deprecated append field
//     wins: true appends the value to the first existing value with ","
//     (adds the header when absent), false overwrites. Otherwise
//     append_action decides: APPEND_IF_EXISTS_OR_ADD (the zero value) adds
//     one more value, so a header the client sent survives next to the new
//     one; ADD_IF_ABSENT adds only when absent; OVERWRITE_IF_EXISTS_OR_ADD
//     replaces every value or adds; OVERWRITE_IF_EXISTS replaces only when
//     present.
//  2. ok.HeadersToRemove, ignoring pseudo-headers and host, which Envoy
//     never lets ext_authz remove.
//  3. ok.QueryParametersToSet (each replaces every value of its key) and
//     ok.QueryParametersToRemove, rewriting the query of h's :path, if h
//     has one, as Envoy does: raw (not decoded) parameters, sorted by key.
//
// h is keyed like any http.Header; it may also carry the pseudo-headers
// ":authority", ":method", ":path" and ":scheme" (as bare keys), which
// mutations of those names then change; a mutation of "host" changes
// ":authority" when h has one. ok.ResponseHeadersToAdd are validated but
// not applied: they belong on the response (see [Proxy]).
//
// On an invalid mutation ApplyOK returns an error wrapping
// [ErrInvalidMutation] and leaves h unchanged. A nil ok changes nothing.
// h must not be nil.
func ApplyOK(h http.Header, ok *authv3.OkHttpResponse) error {
	if ok == nil {
		return nil
	}
	for _, o := range ok.GetResponseHeadersToAdd() {
		if err := applyResponseOption(http.Header{}, o); err != nil {
			return fmt.Errorf("response_headers_to_add: %w", err)
		}
	}

	work := h.Clone()
	if work == nil {
		work = http.Header{}
	}
	for _, o := range ok.GetHeaders() {
		if err := applyRequestOption(work, o); err != nil {
			return fmt.Errorf("headers: %w", err)
		}
	}
	for _, key := range ok.GetHeadersToRemove() {
		lk := strings.ToLower(key)
		// Removing a pseudo-header or host would make the request malformed
		// (HeaderUtility::isRemovableHeader); an invalid name names nothing.
		if lk == "" || lk[0] == ':' || lk == "host" || !httpguts.ValidHeaderFieldName(lk) {
			continue
		}
		delete(work, http.CanonicalHeaderKey(lk))
	}
	if err := applyQuery(work, ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove()); err != nil {
		return err
	}
	for _, k := range []string{pseudoAuthority, pseudoMethod, pseudoPath, pseudoScheme} {
		if _, present := work[k]; !present {
			continue
		}
		if err := checkPseudo(k, work[k]); err != nil {
			return err
		}
	}

	clear(h)
	maps.Copy(h, work)
	return nil
}

// ApplyDenied writes the local reply Envoy sends for a denial
// (Utility::prepareLocalReply): status d.Status (403 when unset, or when not
// a final HTTP status 200-599), d.Headers applied in order to an empty header
// set (a set append field wins: true adds, false overwrites; otherwise
// append_action, whose zero value adds), then content-type: text/plain when
// the body is not empty and no content-type was given, and d.Body. An empty
// body drops any content-type. Hop-by-hop headers and content-length from d
// are ignored; net/http frames the body.
//
// If d carries an invalid header, ApplyDenied writes an empty 500 instead,
// as Envoy with validate_mutations does, and returns an error wrapping
// [ErrInvalidMutation]. A nil d is a plain 403.
func ApplyDenied(w http.ResponseWriter, d *authv3.DeniedHttpResponse) error {
	status := http.StatusForbidden
	if c := int(d.GetStatus().GetCode()); c > 0 && validFinalStatus(c) {
		status = c
	}
	return writeLocalReply(w, status, d.GetHeaders(), d.GetBody())
}

func writeLocalReply(w http.ResponseWriter, status int, opts []*corev3.HeaderValueOption, body string) error {
	h := http.Header{}
	for _, o := range opts {
		if err := applyResponseOption(h, o); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return err
		}
	}
	for _, k := range hopByHopHeaders {
		delete(h, k)
	}
	delete(h, "Content-Length")
	if body == "" {
		delete(h, "Content-Type")
	} else if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = []string{"text/plain"}
	}

	dst := w.Header()
	maps.Copy(dst, h)
	if body != "" {
		dst.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // The client may have gone; nothing to do then.
	return nil
}

// hopByHopHeaders never belong in a local reply.
var hopByHopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer",
}

func validFinalStatus(code int) bool { return code >= 200 && code <= 599 }

// appendAction resolves a HeaderValueOption the way ext_authz_grpc_impl.cc
// does: a set deprecated append wins (true is APPEND_IF_EXISTS_OR_ADD marked
// as coming from append, false is OVERWRITE_IF_EXISTS_OR_ADD); otherwise
// append_action.
func appendAction(o *corev3.HeaderValueOption) (action corev3.HeaderValueOption_HeaderAppendAction, fromAppend bool) {
	//nolint:staticcheck // The deprecated field is what Envoy reads first.
	if a := o.GetAppend(); a != nil {
		if a.GetValue() {
			return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, true
		}
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, true
	}
	return o.GetAppendAction(), false
}

// applyRequestOption applies one OkHttpResponse.headers entry to the request
// header set h.
func applyRequestOption(h http.Header, o *corev3.HeaderValueOption) error {
	name, value := o.GetHeader().GetKey(), o.GetHeader().GetValue()
	key, err := requestKey(h, name)
	if err != nil {
		return err
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return fmt.Errorf("%w: value of header %q", ErrInvalidMutation, name)
	}

	action, fromAppend := appendAction(o)
	switch action {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		if vv := h[key]; fromAppend && len(vv) > 0 {
			// HeaderMapImpl::appendCopy: join onto the first value.
			vv[0] += appendDelimiter(key) + value
		} else {
			// HeaderMapImpl::addCopy: one more header line.
			h[key] = append(h[key], value)
		}
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if len(h[key]) == 0 {
			h[key] = []string{value}
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h[key] = []string{value}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if len(h[key]) > 0 {
			h[key] = []string{value}
		}
	default:
		return fmt.Errorf("%w: append_action %d of header %q", ErrInvalidMutation, action, name)
	}
	return nil
}

// applyResponseOption applies one response header option (OK
// response_headers_to_add, or denied/error headers on a local reply): a set
// append field true adds a value, false overwrites; otherwise append_action.
func applyResponseOption(h http.Header, o *corev3.HeaderValueOption) error {
	name, value := o.GetHeader().GetKey(), o.GetHeader().GetValue()
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("%w: header name %q", ErrInvalidMutation, name)
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return fmt.Errorf("%w: value of header %q", ErrInvalidMutation, name)
	}
	key := http.CanonicalHeaderKey(name)

	action, _ := appendAction(o)
	switch action {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h[key] = append(h[key], value)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if len(h[key]) == 0 {
			h[key] = []string{value}
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h[key] = []string{value}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if len(h[key]) > 0 {
			h[key] = []string{value}
		}
	default:
		return fmt.Errorf("%w: append_action %d of header %q", ErrInvalidMutation, action, name)
	}
	return nil
}

// requestKey validates a request header name from the ext_authz server and
// returns the key it has in h.
func requestKey(h http.Header, name string) (string, error) {
	lk := strings.ToLower(name)
	if lk == "host" {
		if _, ok := h[pseudoAuthority]; ok {
			return pseudoAuthority, nil
		}
	}
	if strings.HasPrefix(lk, ":") {
		switch lk {
		case pseudoAuthority, pseudoMethod, pseudoPath, pseudoScheme:
			return lk, nil
		}
		return "", fmt.Errorf("%w: pseudo-header %q", ErrInvalidMutation, name)
	}
	if !httpguts.ValidHeaderFieldName(lk) {
		return "", fmt.Errorf("%w: header name %q", ErrInvalidMutation, name)
	}
	return http.CanonicalHeaderKey(lk), nil
}

// appendDelimiter is HeaderMapImpl's delimiterByHeader.
func appendDelimiter(key string) string {
	if key == "Cookie" {
		return "; "
	}
	return ","
}

// checkPseudo makes sure a mutated pseudo-header is still something net/http
// can send: exactly one value, and a sensible one.
func checkPseudo(key string, vv []string) error {
	if len(vv) != 1 {
		return fmt.Errorf("%w: %s would have %d values", ErrInvalidMutation, key, len(vv))
	}
	v := vv[0]
	ok := true
	switch key {
	case pseudoMethod:
		ok = v != "" && !strings.ContainsFunc(v, func(r rune) bool { return !httpguts.IsTokenRune(r) })
	case pseudoPath:
		ok = (strings.HasPrefix(v, "/") || v == "*") && !strings.ContainsFunc(v, notInTarget)
	case pseudoAuthority:
		ok = httpguts.ValidHostHeader(v)
	case pseudoScheme:
		ok = v == "http" || v == "https"
	}
	if !ok {
		return fmt.Errorf("%w: %s value %q", ErrInvalidMutation, key, v)
	}
	return nil
}

// notInTarget reports the runes that cannot appear in a request target.
func notInTarget(r rune) bool { return r <= ' ' || r >= 0x7f || r == '#' }

// applyQuery rewrites the query of h's :path like Envoy's
// Utility::QueryParamsMulti: parse without decoding, overwrite, remove,
// rebuild sorted by key.
func applyQuery(h http.Header, set []*corev3.QueryParameter, remove []string) error {
	if len(set) == 0 && len(remove) == 0 {
		return nil
	}
	for _, q := range set {
		if !isURLEncoded(q.GetKey()) || !isURLEncoded(q.GetValue()) {
			return fmt.Errorf("%w: query parameter %q", ErrInvalidMutation, q.GetKey())
		}
	}
	vv := h[pseudoPath]
	if len(vv) != 1 {
		return nil // No request target to rewrite.
	}
	path, rawQuery, hasQuery := strings.Cut(vv[0], "?")

	params := map[string][]string{}
	if hasQuery {
		for start := 0; start < len(rawQuery); {
			end := strings.IndexByte(rawQuery[start:], '&')
			if end < 0 {
				end = len(rawQuery)
			} else {
				end += start
			}
			k, v, _ := strings.Cut(rawQuery[start:end], "=")
			params[k] = append(params[k], v)
			start = end + 1
		}
	}
	for _, q := range set {
		params[q.GetKey()] = []string{q.GetValue()}
	}
	for _, k := range remove {
		delete(params, k)
	}

	if len(params) == 0 {
		h[pseudoPath] = []string{path}
		return nil
	}
	var b strings.Builder
	b.WriteString(path)
	sep := byte('?')
	for _, k := range slices.Sorted(maps.Keys(params)) {
		for _, v := range params[k] {
			b.WriteByte(sep)
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
			sep = '&'
		}
	}
	h[pseudoPath] = []string{b.String()}
	return nil
}

// isURLEncoded reports whether s can stand as a query parameter key or value
// as it is: no byte that would end or break the parameter, only
// percent-escapes of two hex digits.
func isURLEncoded(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		case c == '&' || c == '=' || c == '#' || c <= ' ' || c >= 0x7f:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
