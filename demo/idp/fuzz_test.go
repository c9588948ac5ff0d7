package idp

import (
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzTokenRequest feeds arbitrary content types, Authorization headers and
// bodies to the token endpoint of two servers that differ only in
// fuzz-client's secret. Invariants: no panic; every answer is a JSON token
// or a known error code; a token is issued only to fuzz-client (never to
// locked-client, whose secret is random) and it verifies; and no input gets
// a token from both servers, which would mean a token was issued without
// the right secret (one request carries at most one secret: repeated form
// parameters and Basic-plus-body credentials are refused).
func FuzzTokenRequest(f *testing.F) {
	seeds := []struct {
		contentType, authorization, body string
	}{
		{ctJSON, "", `{"client_id":"fuzz-client","client_secret":"fuzz-secret","audience":"https://api.example.com","grant_type":"client_credentials"}`},
		{ctJSON, "", `{"client_id":"fuzz-client","client_secret":"other-secret","grant_type":"client_credentials"}`},
		{ctJSON, "", `{"client_id":"fuzz-client","client_secret":"x","client_secret":"fuzz-secret","grant_type":"client_credentials"}`},
		{ctJSON, "", `{"CLIENT_ID":"fuzz-client","Client_Secret":"fuzz-secret","grant_type":"client_credentials"}`},
		{ctForm, "", "grant_type=client_credentials&client_id=fuzz-client&client_secret=fuzz-secret&scope=read%3Amessages"},
		{ctForm, "", "grant_type=client_credentials&client_id=locked-client&client_secret="},
		{ctForm, basicAuth("fuzz-client", "fuzz-secret").Get("Authorization"), "grant_type=client_credentials"},
		{ctForm, "Basic ZnV6ei1jbGllbnQ6", "grant_type=client_credentials"},
		{ctForm, "Basic %%%", "grant_type=client_credentials&client_id=fuzz-client"},
		{"application/json; charset=utf-8", "", `{"grant_type":"client_credentials","client_id":"fuzz-client","client_secret":"fuzz-secret","resource":"https://api.example.com"}`},
		{ctJSON, "", `null`},
		{ctJSON, "", `{"client_id":["fuzz-client"]}`},
		{"text/plain", "", "client_id=fuzz-client"},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.contentType, s.authorization, []byte(s.body))
	}

	newServer := func(secret string) *Server {
		s, err := New(Config{
			Clients: []Client{
				{ID: "fuzz-client", Secret: secret, Scopes: []string{"read:messages"}},
				{ID: "locked-client", Secret: rand.Text(), Scopes: []string{"admin"}},
			},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	a, b := newServer("fuzz-secret"), newServer("other-secret")
	jwksA, jwksB := fetchJWKS(f, a), fetchJWKS(f, b)
	known := map[string]bool{
		ErrCodeInvalidRequest: true, ErrCodeInvalidClient: true, ErrCodeUnsupportedGrantType: true,
		ErrCodeInvalidScope: true, ErrCodeInvalidTarget: true,
	}

	f.Fuzz(func(t *testing.T, contentType, authorization string, body []byte) {
		send := func(s *Server) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, TokenPath, strings.NewReader(string(body)))
			if contentType != "" {
				r.Header.Set("Content-Type", contentType)
			}
			if authorization != "" {
				r.Header.Set("Authorization", authorization)
			}
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			return w
		}
		wa, wb := send(a), send(b)
		if wa.Code == http.StatusOK && wb.Code == http.StatusOK {
			t.Fatalf("both secrets were accepted for the same request")
		}
		for _, w := range []*httptest.ResponseRecorder{wa, wb} {
			var resp map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("status %d with non-JSON body %q", w.Code, w.Body)
			}
			if w.Code != http.StatusOK {
				if code, _ := resp["error"].(string); !known[code] {
					t.Fatalf("status %d with unknown error %q", w.Code, code)
				}
				if _, ok := resp["access_token"]; ok {
					t.Fatalf("status %d carries an access_token", w.Code)
				}
			}
		}
		for _, x := range []struct {
			s    *Server
			jwks []byte
			w    *httptest.ResponseRecorder
		}{{a, jwksA, wa}, {b, jwksB, wb}} {
			if x.w.Code != http.StatusOK {
				continue
			}
			var resp tokenResponse
			if err := json.Unmarshal(x.w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			tok, err := verifyWith(x.jwks, resp.AccessToken, DefaultIssuer, DefaultAudience, x.s.now)
			if err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
			if sub := tok.Claims.(jwt.MapClaims)["sub"]; sub != "fuzz-client" {
				t.Fatalf("token issued to %v, want fuzz-client", sub)
			}
		}
	})
}
