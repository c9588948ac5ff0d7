package authz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// FuzzCheck drives the gRPC adapter with an arbitrary path, Authorization
// value and extra header, in the headers map or the header_map form. The
// invariants: Check never panics and never fails with anything but
// InvalidArgument; an OK answer carries an OkHttpResponse, other answers a
// DeniedHttpResponse with a 4xx/5xx status; an OK answer on a non-public path
// only for a token that verifies; no header is both set and removed.
func FuzzCheck(f *testing.F) {
	valid := mint(f, tokenSpec{})
	for _, s := range [][4]string{
		{"/protected", "Bearer " + valid, "x-jwt-sub", "admin"},
		{"/public", "", "X_JWT_SUB", "admin"},
		{"/admin", "Bearer " + valid, "x-jwt-payload", "forged"},
		{"/public/%2e%2e/admin", "bearer " + valid, "", ""},
		{"", "Bearer ", ":path", "/public"},
		{"/protected", "DPoP " + valid, "dpop", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.c2ln"},
		{"/protected", "DPoP " + valid, "x-forwarded-client-cert", "Hash=00"},
	} {
		f.Add(s[0], s[1], s[2], s[3], false)
		f.Add(s[0], s[1], s[2], s[3], true)
	}
	w := newWorld(f, nil)
	f.Fuzz(func(t *testing.T, path, auth, hk, hv string, raw bool) {
		h := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path}
		if raw {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "authorization", RawValue: []byte(auth)}, {Key: hk, RawValue: []byte(hv)}}}
		} else {
			h.Headers = map[string]string{"authorization": auth, hk: hv}
		}
		resp, err := w.srv.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: h}}})
		if err != nil {
			t.Fatalf("Check error %v; only decisions are expected for a request with HTTP attributes", err)
		}
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatal("OK without an OkHttpResponse")
			}
			for _, o := range ok.GetHeaders() {
				for _, r := range ok.GetHeadersToRemove() {
					if strings.EqualFold(o.GetHeader().GetKey(), r) {
						t.Fatalf("%q both set and removed", r)
					}
				}
			}
			eff := path
			if eff == "" && strings.EqualFold(hk, ":path") {
				eff = hv // Envoy's :path header stands in for an empty path
			}
			if pol := policyFor(w.srv.rules, eff); !pol.public {
				if _, verified := oracleVerify(auth); !verified {
					t.Fatalf("allowed %q on non-public %q", auth, path)
				}
			}
			return
		}
		if st := resp.GetDeniedResponse().GetStatus().GetCode(); st < 400 || st > 599 {
			t.Fatalf("denial with HTTP status %d", st)
		}
	})
}

// FuzzServeHTTP drives the forward-auth adapter with arbitrary original-URI
// headers and an Authorization value. The invariants: it never panics; it
// answers 200 only for a public path or a token that verifies, and otherwise
// a 4xx/5xx with a JSON body.
func FuzzServeHTTP(f *testing.F) {
	valid := mint(f, tokenSpec{})
	for _, s := range [][3]string{
		{"/protected", "/public", "Bearer " + valid},
		{"/public", "/admin", ""},
		{"", "/public/..%2Fadmin", "Bearer " + valid},
		{"/public", "", "Bearer x.y.z"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	w := newWorld(f, nil)
	f.Fuzz(func(t *testing.T, original, forwarded, auth string) {
		r := httptest.NewRequest(http.MethodGet, "/check", nil)
		if original != "" {
			r.Header["X-Original-Uri"] = []string{original}
		}
		if forwarded != "" {
			r.Header["X-Forwarded-Uri"] = []string{forwarded}
		}
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		rec := httptest.NewRecorder()
		w.srv.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			o, bad := w.srv.original(r)
			uri := o.uri
			if bad != "" {
				t.Fatalf("200 for ambiguous original-request headers %q / %q", original, forwarded)
			}
			if pol := policyFor(w.srv.rules, uri); !pol.public {
				if _, verified := oracleVerify(auth); !verified {
					t.Fatalf("200 for %q on non-public %q", auth, uri)
				}
			}
			return
		}
		if rec.Code < 400 || rec.Code > 599 || !strings.HasPrefix(rec.Body.String(), `{"error":`) {
			t.Fatalf("answer %d %q is neither an allow nor a JSON denial", rec.Code, rec.Body.String())
		}
	})
}
