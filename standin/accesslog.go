package standin

// The access log: Envoy's text format command operators that the stand-in
// knows, rendered from one request's stream (its headers, response code,
// timing and dynamic metadata).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// ExtAuthzNamespace is the dynamic metadata namespace under which Envoy's
// ext_authz HTTP filter stores a CheckResponse's dynamic_metadata, for the
// access log (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:sub)%) and
// later filters.
const ExtAuthzNamespace = "envoy.filters.http.ext_authz"

// DefaultAccessLogFormat is the access log format when Config.AccessLog is
// set and Config.AccessLogFormat is not: Envoy's default format without
// the operators the stand-in does not know (%RESPONSE_FLAGS%,
// %BYTES_RECEIVED%, %BYTES_SENT%, %RESP(...)% and %UPSTREAM_HOST%).
const DefaultAccessLogFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %DURATION% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"` + "\n"

// stream is what the access log knows of one request, as Envoy's StreamInfo.
type stream struct {
	start time.Time
	r     *http.Request
	// h is the request's headers as the filters left them (ext_authz's
	// mutations applied); nil when the request was answered before the
	// connection manager's view of it existed.
	h http.Header
	// metadata is the stream's dynamic metadata by namespace.
	metadata map[string]*structpb.Struct
}

// setDynamicMetadata merges m into the namespace ns, key by key, as
// StreamInfo::setDynamicMetadata does.
func (s *stream) setDynamicMetadata(ns string, m *structpb.Struct) {
	if s.metadata == nil {
		s.metadata = map[string]*structpb.Struct{}
	}
	cur := s.metadata[ns]
	if cur == nil {
		cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		s.metadata[ns] = cur
	}
	for k, v := range m.GetFields() {
		cur.Fields[k] = v
	}
}

// header returns the first value of the request header name (pseudo-headers
// included) as the access log sees it.
func (s *stream) header(name string) (string, bool) {
	if s.h != nil {
		key := name
		if !strings.HasPrefix(name, ":") {
			key = http.CanonicalHeaderKey(name)
		}
		vv, ok := s.h[key]
		if !ok || len(vv) == 0 {
			return "", false
		}
		return vv[0], true
	}
	switch name {
	case pseudoMethod:
		return s.r.Method, true
	case pseudoPath:
		return requestTarget(s.r), true
	case pseudoAuthority:
		return s.r.Host, s.r.Host != ""
	case pseudoScheme:
		return "", false
	}
	if vv := s.r.Header.Values(name); len(vv) > 0 {
		return vv[0], true
	}
	return "", false
}

// accessLogFormat is a parsed text format: literal text and operators.
type accessLogFormat []formatPart

type formatPart struct {
	literal string
	op      operatorFunc // nil for literal text
}

// operatorFunc renders one command operator for a stream whose response
// had status and ended at end; false means no value ("-").
type operatorFunc func(s *stream, status int, end time.Time) (string, bool)

// operatorRe is Envoy's command operator syntax (SubstitutionFormatParser):
// %NAME%, %NAME(ARGS)%, optionally followed by :Z before the closing %.
var operatorRe = regexp.MustCompile(`^%([A-Z0-9_]+)(?:\(([^)]*)\))?(?::([0-9]+))?%`)

// parseAccessLogFormat parses a text format into parts. It refuses a "%"
// that starts no operator, and every operator the stand-in cannot render.
func parseAccessLogFormat(format string) (accessLogFormat, error) {
	var out accessLogFormat
	for len(format) > 0 {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			out = append(out, formatPart{literal: format})
			break
		}
		if i > 0 {
			out = append(out, formatPart{literal: format[:i]})
			format = format[i:]
		}
		m := operatorRe.FindStringSubmatch(format)
		if m == nil {
			return nil, fmt.Errorf("standin: access log format: no command operator at %q", format)
		}
		z := 0
		if m[3] != "" {
			var err error
			if z, err = strconv.Atoi(m[3]); err != nil || z <= 0 {
				return nil, fmt.Errorf("standin: access log format: %s: bad length %q", m[0], m[3])
			}
		}
		op, err := operator(m[1], m[2], strings.Contains(m[0], "("), z)
		if err != nil {
			return nil, fmt.Errorf("standin: access log format: %s: %w", m[0], err)
		}
		out = append(out, formatPart{op: op})
		format = format[len(m[0]):]
	}
	return out, nil
}

// operator returns the renderer of one command operator, whose values are
// truncated to z bytes when z > 0 (the operator's ":Z").
func operator(name, arg string, hasArg bool, z int) (operatorFunc, error) {
	noArg := func(op operatorFunc) (operatorFunc, error) {
		if hasArg {
			return nil, fmt.Errorf("the stand-in supports %s without arguments only", name)
		}
		return truncated(op, z), nil
	}
	switch name {
	case "START_TIME":
		return noArg(func(s *stream, _ int, _ time.Time) (string, bool) {
			// Envoy's default: %Y-%m-%dT%H:%M:%E3SZ in UTC.
			return s.start.UTC().Format("2006-01-02T15:04:05.000Z"), true
		})
	case "PROTOCOL":
		return noArg(func(s *stream, _ int, _ time.Time) (string, bool) {
			p := protocol(s.r)
			return p, p != ""
		})
	case "RESPONSE_CODE":
		return noArg(func(_ *stream, status int, _ time.Time) (string, bool) {
			return strconv.Itoa(status), true
		})
	case "DURATION":
		return noArg(func(s *stream, _ int, end time.Time) (string, bool) {
			return strconv.FormatInt(end.Sub(s.start).Milliseconds(), 10), true
		})
	case "REQ", "REQUEST_HEADER":
		main, alt, _ := strings.Cut(arg, "?")
		if main == "" {
			return nil, fmt.Errorf("%s needs a header name", name)
		}
		main, alt = strings.ToLower(main), strings.ToLower(alt)
		return truncated(func(s *stream, _ int, _ time.Time) (string, bool) {
			if v, ok := s.header(main); ok {
				return v, true
			}
			if alt != "" {
				return s.header(alt)
			}
			return "", false
		}, z), nil
	case "PATH":
		op, err := pathOperator(arg)
		return truncated(op, z), err
	case "DYNAMIC_METADATA":
		ns, key, _ := strings.Cut(arg, ":")
		if ns == "" {
			return nil, fmt.Errorf("%s needs a namespace", name)
		}
		var path []string
		if key != "" {
			path = strings.Split(key, ":")
		}
		return func(s *stream, _ int, _ time.Time) (string, bool) {
			return metadataValue(s.metadata[ns], path, z)
		}, nil
	}
	return nil, fmt.Errorf("the stand-in does not support this command operator (it knows START_TIME, PROTOCOL, RESPONSE_CODE, DURATION, REQ, REQUEST_HEADER, PATH and DYNAMIC_METADATA)")
}

// pathOperator is %PATH(X:Y)%: X is WQ (with the query, the default) or NQ
// (without it); Y is where the path comes from: ORIG (x-envoy-original-path),
// PATH (:path) or ORIG_OR_PATH (the default).
func pathOperator(arg string) (operatorFunc, error) {
	query, source, _ := strings.Cut(arg, ":")
	if query == "" {
		query = "WQ"
	}
	if source == "" {
		source = "ORIG_OR_PATH"
	}
	if query != "WQ" && query != "NQ" {
		return nil, fmt.Errorf("PATH: %q is neither WQ nor NQ", query)
	}
	var headers []string
	switch source {
	case "ORIG":
		headers = []string{"x-envoy-original-path"}
	case "PATH":
		headers = []string{pseudoPath}
	case "ORIG_OR_PATH":
		headers = []string{"x-envoy-original-path", pseudoPath}
	default:
		return nil, fmt.Errorf("PATH: %q is not ORIG, PATH or ORIG_OR_PATH", source)
	}
	return func(s *stream, _ int, _ time.Time) (string, bool) {
		for _, h := range headers {
			if v, ok := s.header(h); ok {
				if query == "NQ" {
					v, _, _ = strings.Cut(v, "?")
				}
				return v, true
			}
		}
		return "", false
	}, nil
}

// truncated cuts op's values to z bytes; z 0 leaves them whole.
func truncated(op operatorFunc, z int) operatorFunc {
	if z <= 0 || op == nil {
		return op
	}
	return func(s *stream, status int, end time.Time) (string, bool) {
		v, ok := op(s, status, end)
		if len(v) > z {
			v = v[:z]
		}
		return v, ok
	}
}

// metadataValue renders the value at path in ns as Envoy's metadata
// formatter does: a string as it is, anything else (the namespace itself
// when path is empty) as JSON; false when there is no such value. Strings,
// numbers, booleans and null are truncated to z bytes when z > 0; structs
// and lists never are.
func metadataValue(ns *structpb.Struct, path []string, z int) (string, bool) {
	if ns == nil {
		return "", false
	}
	v := structpb.NewStructValue(ns)
	for _, k := range path {
		next, ok := v.GetStructValue().GetFields()[k]
		if !ok {
			return "", false
		}
		v = next
	}
	var out string
	switch k := v.GetKind().(type) {
	case nil:
		return "", false
	case *structpb.Value_StringValue:
		out = k.StringValue
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v.AsInterface()); err != nil {
			return "", false
		}
		out = strings.TrimSuffix(b.String(), "\n")
		if _, ok := k.(*structpb.Value_StructValue); ok {
			return out, true
		}
		if _, ok := k.(*structpb.Value_ListValue); ok {
			return out, true
		}
	}
	if z > 0 && len(out) > z {
		out = out[:z]
	}
	return out, true
}

// render formats one access log entry. A missing value is "-", as in Envoy.
func (f accessLogFormat) render(s *stream, status int, end time.Time) []byte {
	var b []byte
	for _, p := range f {
		if p.op == nil {
			b = append(b, p.literal...)
			continue
		}
		if v, ok := p.op(s, status, end); ok {
			b = append(b, v...)
		} else {
			b = append(b, '-')
		}
	}
	return b
}

// statusRecorder remembers the final status written to the client. Unwrap
// lets http.ResponseController (which httputil.ReverseProxy uses to flush
// and to hijack for upgrades) reach the real writer.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	// 1xx answers are interim, except 101, which ends the HTTP exchange.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
