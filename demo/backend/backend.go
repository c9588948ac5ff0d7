package backend

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// DefaultSubHeader is the header the authorization service fills with the
// verified sub claim by default.
const DefaultSubHeader = "x-jwt-sub"

// Config configures a [Server]. The zero value reads x-jwt-sub.
type Config struct {
	// SubHeader names the request header that carries the verified subject
	// (case-insensitive). Defaults to DefaultSubHeader.
	SubHeader string
	// Logger receives one debug line per request (method, path, status;
	// never headers, which may carry credentials). Nil means slog.Default().
	Logger *slog.Logger
}

// Server is the sample upstream, an [http.Handler]. See the package
// documentation for the routes and for why it must not be reachable except
// through the proxy.
type Server struct {
	subHeader string
	log       *slog.Logger
}

var _ http.Handler = (*Server)(nil)

// New validates cfg. It does no I/O.
func New(cfg Config) (*Server, error) {
	h := cfg.SubHeader
	if h == "" {
		h = DefaultSubHeader
	}
	if !isToken(h) {
		return nil, fmt.Errorf("backend: sub header %q is not a valid header name", h)
	}
	s := &Server{subHeader: http.CanonicalHeaderKey(h), log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// message is the body of the public route.
type message struct {
	Message string `json:"message"`
}

// subMessage is the body of the protected routes. Sub is a pointer so that
// a missing header encodes as null, as the Flask app's payload.get("sub")
// would.
type subMessage struct {
	Message string  `json:"message"`
	Sub     *string `json:"sub"`
}

// ServeHTTP routes a request. Path matching comes first, as in Flask: an
// unknown path is 404 whatever the method.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := s.serve(w, r)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) int {
	var handle func() (int, any)
	switch p := r.URL.Path; {
	case p == "/public":
		handle = func() (int, any) { return http.StatusOK, message{Message: "This is a public message!"} }
	case p == "/protected":
		handle = func() (int, any) { return s.withSub(r, "This is a protected message!") }
	case p == "/admin":
		handle = func() (int, any) { return s.withSub(r, "This is an admin message!") }
	case p == "/headers" || strings.HasSuffix(p, "/headers"):
		handle = func() (int, any) { return http.StatusOK, receivedHeaders(r) }
	default:
		return writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
	}
	status, body := handle()
	return writeJSON(w, status, body)
}

// withSub answers a protected route. The response always has a sub member:
// the header's value, or null without the header. Two or more values are
// refused rather than guessed between: the proxy is supposed to overwrite
// the header, so several copies mean a client-sent one slipped through.
func (s *Server) withSub(r *http.Request, msg string) (int, any) {
	vals := r.Header.Values(s.subHeader)
	switch len(vals) {
	case 0:
		return http.StatusOK, subMessage{Message: msg}
	case 1:
		return http.StatusOK, subMessage{Message: msg, Sub: &vals[0]}
	default:
		return http.StatusBadRequest, errorBody{Error: "more than one " + strings.ToLower(s.subHeader) + " header"}
	}
}

// receivedHeaders returns the request headers keyed by lower-case name,
// including host, which net/http moves out of Header.
func receivedHeaders(r *http.Request) map[string][]string {
	out := make(map[string][]string, len(r.Header)+1)
	for k, v := range r.Header {
		k = strings.ToLower(k)
		out[k] = append(out[k], v...)
	}
	if r.Host != "" {
		out["host"] = append(out["host"], r.Host)
	}
	return out
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return status
}

// isToken reports whether s is an RFC 9110 token (a valid field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
