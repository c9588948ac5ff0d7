package backend

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantBody   string // JSON, compared after decoding
		wantAllow  string
	}{
		{name: "public", method: "GET", path: "/public", wantStatus: 200, wantBody: `{"message":"This is a public message!"}`},
		{name: "public ignores sub", method: "GET", path: "/public", header: http.Header{"X-Jwt-Sub": {"alice"}}, wantStatus: 200, wantBody: `{"message":"This is a public message!"}`},
		{name: "protected with sub", method: "GET", path: "/protected", header: http.Header{"X-Jwt-Sub": {"demo-client"}}, wantStatus: 200, wantBody: `{"message":"This is a protected message!","sub":"demo-client"}`},
		{name: "protected without sub", method: "GET", path: "/protected", wantStatus: 200, wantBody: `{"message":"This is a protected message!","sub":null}`},
		{name: "protected with empty sub", method: "GET", path: "/protected", header: http.Header{"X-Jwt-Sub": {""}}, wantStatus: 200, wantBody: `{"message":"This is a protected message!","sub":""}`},
		{name: "protected with two subs", method: "GET", path: "/protected", header: http.Header{"X-Jwt-Sub": {"admin", "demo-client"}}, wantStatus: 400, wantBody: `{"error":"more than one x-jwt-sub header"}`},
		{name: "admin with sub", method: "GET", path: "/admin", header: http.Header{"X-Jwt-Sub": {"admin-client"}}, wantStatus: 200, wantBody: `{"message":"This is an admin message!","sub":"admin-client"}`},
		{name: "admin with query string", method: "GET", path: "/admin?x=1", header: http.Header{"X-Jwt-Sub": {"admin-client"}}, wantStatus: 200, wantBody: `{"message":"This is an admin message!","sub":"admin-client"}`},
		{name: "custom sub header", cfg: Config{SubHeader: "X-User"}, method: "GET", path: "/protected", header: http.Header{"X-User": {"bob"}, "X-Jwt-Sub": {"mallory"}}, wantStatus: 200, wantBody: `{"message":"This is a protected message!","sub":"bob"}`},
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404, wantBody: `{"error":"not found"}`},
		{name: "trailing slash is another path", method: "GET", path: "/public/", wantStatus: 404, wantBody: `{"error":"not found"}`},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantBody: `{"error":"not found"}`},
		{name: "POST known path", method: "POST", path: "/protected", wantStatus: 405, wantBody: `{"error":"method not allowed"}`, wantAllow: "GET, HEAD"},
		{name: "DELETE headers path", method: "DELETE", path: "/public/headers", wantStatus: 405, wantBody: `{"error":"method not allowed"}`, wantAllow: "GET, HEAD"},
		{name: "POST unknown path", method: "POST", path: "/nope", wantStatus: 404, wantBody: `{"error":"not found"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.cfg)
			r := httptest.NewRequest(tc.method, tc.path, nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := w.Header().Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
			var got, want any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if err := json.Unmarshal([]byte(tc.wantBody), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("body = %s, want %s", w.Body, tc.wantBody)
			}
		})
	}
}

// TestHeadersEcho sends requests over a real connection so that the echo
// shows what net/http hands the handler, including host and repeated
// headers: what spoofing tests rely on.
func TestHeadersEcho(t *testing.T) {
	srv := httptest.NewServer(newTestServer(t, Config{}))
	t.Cleanup(srv.Close)

	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		want   map[string][]string // must be present exactly
		absent []string
	}{
		{
			name: "public headers", method: "GET", path: "/public/headers",
			header: http.Header{"X-Jwt-Sub": {"admin"}, "X-Custom": {"a", "b"}},
			want:   map[string][]string{"x-jwt-sub": {"admin"}, "x-custom": {"a", "b"}, "host": {strings.TrimPrefix(srv.URL, "http://")}},
		},
		{
			name: "protected headers", method: "GET", path: "/protected/headers",
			header: http.Header{"X-Jwt-Payload": {"e30"}},
			want:   map[string][]string{"x-jwt-payload": {"e30"}},
			absent: []string{"x-jwt-sub", "X-Jwt-Payload"},
		},
		{
			name: "bare headers path", method: "GET", path: "/headers",
			header: http.Header{"Authorization": {"Bearer x"}},
			want:   map[string][]string{"authorization": {"Bearer x"}},
		},
		{
			name: "deep headers path", method: "GET", path: "/a/b/headers",
			want: map[string][]string{"user-agent": {"echo-test"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tc.header.Clone()
			if req.Header == nil {
				req.Header = http.Header{}
			}
			req.Header.Set("User-Agent", "echo-test")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			body, _ := io.ReadAll(resp.Body)
			var got map[string][]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			for k, v := range tc.want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s = %q, want %q (body %s)", k, got[k], v, body)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present, want absent", k)
				}
			}
			for k := range got {
				if k != strings.ToLower(k) {
					t.Errorf("key %q is not lower-case", k)
				}
			}
		})
	}
}

func TestHEAD(t *testing.T) {
	srv := httptest.NewServer(newTestServer(t, Config{}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, srv.URL+"/public", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /public = %d with %d body bytes, want 200 with none", resp.StatusCode, len(body))
	}
}

func TestNewRejectsBadHeaderName(t *testing.T) {
	for _, h := range []string{"x jwt", "x-jwt:", "é", "a\nb"} {
		if _, err := New(Config{SubHeader: h}); err == nil {
			t.Errorf("New(SubHeader %q) = nil error, want an error", h)
		}
	}
}
