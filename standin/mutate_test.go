package standin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// opt is a HeaderValueOption with append_action set and append unset.
func opt(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
}

// optAppend is a HeaderValueOption with the deprecated append field set. The
// action it also carries must be ignored.
func optAppend(key, value string, appendValue bool, ignoredAction corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	o := opt(key, value, ignoredAction)
	o.Append = wrapperspb.Bool(appendValue) //nolint:staticcheck // Envoy still honours it first.
	return o
}

const (
	appendOrAdd      = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	addIfAbsent      = corev3.HeaderValueOption_ADD_IF_ABSENT
	overwriteOrAdd   = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	overwriteIfExist = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS
)

func TestApplyOK(t *testing.T) {
	base := func() http.Header {
		return http.Header{
			"X-Jwt-Sub":     {"admin"},
			"Authorization": {"Bearer t"},
			"Cookie":        {"a=1"},
			":authority":    {"example.com"},
			":method":       {"GET"},
			":path":         {"/p?b=2&a=1&a=0&c"},
			":scheme":       {"http"},
		}
	}
	tests := []struct {
		name string
		ok   *authv3.OkHttpResponse
		// want lists the keys whose values must be exactly these; nil means absent.
		want map[string][]string
	}{
		{
			name: "append_action APPEND_IF_EXISTS_OR_ADD adds a value beside the existing one",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", appendOrAdd)}},
			want: map[string][]string{"X-Jwt-Sub": {"admin", "alice"}},
		},
		{
			name: "append_action APPEND_IF_EXISTS_OR_ADD adds an absent header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-new", "v", appendOrAdd)}},
			want: map[string][]string{"X-New": {"v"}},
		},
		{
			name: "ADD_IF_ABSENT leaves a present header alone",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", addIfAbsent)}},
			want: map[string][]string{"X-Jwt-Sub": {"admin"}},
		},
		{
			name: "ADD_IF_ABSENT adds an absent header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-new", "v", addIfAbsent)}},
			want: map[string][]string{"X-New": {"v"}},
		},
		{
			name: "OVERWRITE_IF_EXISTS_OR_ADD replaces every value",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("X-JWT-Sub", "alice", overwriteOrAdd)}},
			want: map[string][]string{"X-Jwt-Sub": {"alice"}},
		},
		{
			name: "OVERWRITE_IF_EXISTS_OR_ADD adds an absent header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-new", "v", overwriteOrAdd)}},
			want: map[string][]string{"X-New": {"v"}},
		},
		{
			name: "OVERWRITE_IF_EXISTS replaces a present header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", overwriteIfExist)}},
			want: map[string][]string{"X-Jwt-Sub": {"alice"}},
		},
		{
			name: "OVERWRITE_IF_EXISTS does not add an absent header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-new", "v", overwriteIfExist)}},
			want: map[string][]string{"X-New": nil},
		},
		{
			name: "append false wins over append_action and overwrites",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("x-jwt-sub", "alice", false, appendOrAdd)}},
			want: map[string][]string{"X-Jwt-Sub": {"alice"}},
		},
		{
			name: "append true wins over append_action and joins onto the first value",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("x-jwt-sub", "alice", true, overwriteOrAdd)}},
			want: map[string][]string{"X-Jwt-Sub": {"admin,alice"}},
		},
		{
			name: "append true adds an absent header",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("x-new", "v", true, overwriteIfExist)}},
			want: map[string][]string{"X-New": {"v"}},
		},
		{
			name: "append true joins cookies with a semicolon",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("cookie", "b=2", true, appendOrAdd)}},
			want: map[string][]string{"Cookie": {"a=1; b=2"}},
		},
		{
			name: "headers apply in order",
			ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				opt("x-order", "1", overwriteOrAdd),
				opt("x-order", "2", appendOrAdd),
				opt("x-order", "3", overwriteIfExist),
				opt("x-order", "4", appendOrAdd),
			}},
			want: map[string][]string{"X-Order": {"3", "4"}},
		},
		{
			name: "headers_to_remove runs after headers",
			ok: &authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{opt("x-jwt-email", "a@example.com", overwriteOrAdd)},
				HeadersToRemove: []string{"X-JWT-Email", "authorization"},
			},
			want: map[string][]string{"X-Jwt-Email": nil, "Authorization": nil, "X-Jwt-Sub": {"admin"}},
		},
		{
			name: "headers_to_remove never removes pseudo-headers or host",
			ok:   &authv3.OkHttpResponse{HeadersToRemove: []string{":authority", ":path", ":method", ":scheme", "host", "Host"}},
			want: map[string][]string{":authority": {"example.com"}, ":path": {"/p?b=2&a=1&a=0&c"}, ":method": {"GET"}},
		},
		{
			name: "host sets :authority",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("host", "other.example", overwriteOrAdd)}},
			want: map[string][]string{":authority": {"other.example"}, "Host": nil},
		},
		{
			name: "pseudo-header :path can be overwritten",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":path", "/other", overwriteOrAdd)}},
			want: map[string][]string{":path": {"/other"}},
		},
		{
			name: "query parameters set and removed, rebuilt sorted and raw",
			ok: &authv3.OkHttpResponse{
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "a", Value: "x%20y"}, {Key: "d", Value: "4"}},
				QueryParametersToRemove: []string{"b"},
			},
			want: map[string][]string{":path": {"/p?a=x%20y&c=&d=4"}},
		},
		{
			name: "removing every query parameter drops the question mark",
			ok:   &authv3.OkHttpResponse{QueryParametersToRemove: []string{"a", "b", "c"}},
			want: map[string][]string{":path": {"/p"}},
		},
		{
			name: "response_headers_to_add do not touch the request",
			ok:   &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{opt("x-resp", "1", overwriteOrAdd)}},
			want: map[string][]string{"X-Resp": nil},
		},
		{
			name: "nil response changes nothing",
			ok:   nil,
			want: map[string][]string{"X-Jwt-Sub": {"admin"}, "Authorization": {"Bearer t"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := base()
			if err := ApplyOK(h, tc.ok); err != nil {
				t.Fatalf("ApplyOK: %v", err)
			}
			for k, want := range tc.want {
				if got := h[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestApplyOKInvalid(t *testing.T) {
	tests := []struct {
		name string
		ok   *authv3.OkHttpResponse
	}{
		{name: "bad header name", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x bad", "v", overwriteOrAdd)}}},
		{name: "empty header name", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("", "v", overwriteOrAdd)}}},
		{name: "header value with newline", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-a", "v\r\nx-b: 1", overwriteOrAdd)}}},
		{name: "unknown append_action", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-a", "v", 42)}}},
		{name: "unknown pseudo-header", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":status", "200", overwriteOrAdd)}}},
		{name: "second :path value", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":path", "/b", appendOrAdd)}}},
		{name: "relative :path", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":path", "b", overwriteOrAdd)}}},
		{name: "bad :method", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":method", "GE T", overwriteOrAdd)}}},
		{name: "bad :scheme", ok: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(":scheme", "ftp", overwriteOrAdd)}}},
		{name: "query value not encoded", ok: &authv3.OkHttpResponse{QueryParametersToSet: []*corev3.QueryParameter{{Key: "a", Value: "x&b=1"}}}},
		{name: "query key with bad escape", ok: &authv3.OkHttpResponse{QueryParametersToSet: []*corev3.QueryParameter{{Key: "a%2", Value: "1"}}}},
		{name: "bad response header", ok: &authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{opt("x-a", "\x00", overwriteOrAdd)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"X-A": {"1"}, ":path": {"/p?a=1"}, ":method": {"GET"}, ":scheme": {"http"}}
			want := h.Clone()
			ok := &authv3.OkHttpResponse{
				// A valid mutation first: it must not survive the failure.
				Headers:              append([]*corev3.HeaderValueOption{opt("x-a", "changed", overwriteOrAdd)}, tc.ok.GetHeaders()...),
				HeadersToRemove:      []string{"x-a"},
				QueryParametersToSet: tc.ok.GetQueryParametersToSet(),
				ResponseHeadersToAdd: tc.ok.GetResponseHeadersToAdd(),
			}
			err := ApplyOK(h, ok)
			if !errors.Is(err, ErrInvalidMutation) {
				t.Fatalf("ApplyOK error = %v, want %v", err, ErrInvalidMutation)
			}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("headers after failed ApplyOK = %v, want unchanged %v", h, want)
			}
		})
	}
}

// TestApplyOKSpoofedClaimHeader is the property the authz package relies on:
// a claim header the client sent is replaced when the server sets it, and
// gone when the server removes it; only a server that leaves append_action
// at its zero value lets the spoofed value through.
func TestApplyOKSpoofedClaimHeader(t *testing.T) {
	tests := []struct {
		name string
		ok   *authv3.OkHttpResponse
		want []string
	}{
		{
			name: "OVERWRITE_IF_EXISTS_OR_ADD replaces the spoofed value",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", overwriteOrAdd)}},
			want: []string{"alice"},
		},
		{
			name: "append false replaces the spoofed value",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{optAppend("x-jwt-sub", "alice", false, appendOrAdd)}},
			want: []string{"alice"},
		},
		{
			name: "headers_to_remove drops a claim the token lacks",
			ok:   &authv3.OkHttpResponse{HeadersToRemove: []string{"x-jwt-sub"}},
			want: nil,
		},
		{
			name: "zero append_action keeps the spoofed value beside the real one",
			ok:   &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt("x-jwt-sub", "alice", appendOrAdd)}},
			want: []string{"admin", "alice"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"X-Jwt-Sub": {"admin"}}
			if err := ApplyOK(h, tc.ok); err != nil {
				t.Fatalf("ApplyOK: %v", err)
			}
			if got := h.Values("x-jwt-sub"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("x-jwt-sub = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestApplyDenied(t *testing.T) {
	tests := []struct {
		name       string
		denied     *authv3.DeniedHttpResponse
		wantStatus int
		wantHeader http.Header // exact, after dropping Date
		wantBody   string
		wantErr    error
	}{
		{
			name:       "nil is a bare 403",
			denied:     nil,
			wantStatus: http.StatusForbidden,
			wantHeader: http.Header{},
		},
		{
			name:       "unset status is 403",
			denied:     &authv3.DeniedHttpResponse{Body: "no"},
			wantStatus: http.StatusForbidden,
			wantHeader: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"2"}},
			wantBody:   "no",
		},
		{
			name: "401 with www-authenticate and a JSON body",
			denied: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					opt("www-authenticate", `Bearer error="invalid_token"`, overwriteOrAdd),
					opt("content-type", "application/json", overwriteOrAdd),
				},
				Body: `{"error":"expired"}`,
			},
			wantStatus: http.StatusUnauthorized,
			wantHeader: http.Header{
				"Www-Authenticate": {`Bearer error="invalid_token"`},
				"Content-Type":     {"application/json"},
				"Content-Length":   {"19"},
			},
			wantBody: `{"error":"expired"}`,
		},
		{
			name: "zero append_action adds, so set-cookie can repeat",
			denied: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Found},
				Headers: []*corev3.HeaderValueOption{
					opt("set-cookie", "a=1", appendOrAdd),
					opt("set-cookie", "b=2", appendOrAdd),
					opt("location", "/login", appendOrAdd),
				},
			},
			wantStatus: http.StatusFound,
			wantHeader: http.Header{"Set-Cookie": {"a=1", "b=2"}, "Location": {"/login"}},
		},
		{
			name: "empty body drops content-type; hop-by-hop and content-length ignored",
			denied: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
				Headers: []*corev3.HeaderValueOption{
					opt("content-type", "application/json", overwriteOrAdd),
					opt("content-length", "99", overwriteOrAdd),
					opt("connection", "close", overwriteOrAdd),
					opt("retry-after", "5", overwriteOrAdd),
				},
			},
			wantStatus: http.StatusServiceUnavailable,
			wantHeader: http.Header{"Retry-After": {"5"}},
		},
		{
			name:       "a status that is not a final HTTP status is 403",
			denied:     &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Continue}},
			wantStatus: http.StatusForbidden,
			wantHeader: http.Header{},
		},
		{
			name: "invalid header is a bare 500",
			denied: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{opt("www-authenticate", "a\nb", overwriteOrAdd)},
				Body:    "x",
			},
			wantStatus: http.StatusInternalServerError,
			wantHeader: http.Header{},
			wantErr:    ErrInvalidMutation,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := ApplyDenied(rec, tc.denied)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ApplyDenied error = %v, want %v", err, tc.wantErr)
			}
			res := rec.Result()
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if got := rec.Header(); !reflect.DeepEqual(got, tc.wantHeader) {
				t.Errorf("headers = %v, want %v", got, tc.wantHeader)
			}
			if got := rec.Body.String(); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
		})
	}
}
