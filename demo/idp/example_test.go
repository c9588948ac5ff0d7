package idp_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/extauthz/extauthz/demo/idp"
)

// The guide's token request, answered in-process.
func Example() {
	s, err := idp.New(idp.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	body := `{"client_id":"demo-client","client_secret":"demo-secret",` +
		`"audience":"https://api.example.com","grant_type":"client_credentials"}`
	r := httptest.NewRequest(http.MethodPost, idp.TokenPath, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)

	var resp struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		panic(err)
	}
	fmt.Println(w.Code, resp.TokenType, resp.ExpiresIn, resp.Scope, strings.Count(resp.AccessToken, "."))
	// Output: 200 Bearer 3600 read:messages 2
}

// An expired token signed by the real issuer key, for a test of the
// verifier's expiry handling.
func ExampleServer_MintForTest() {
	s, err := idp.New(idp.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	claims := s.DefaultClaims("demo-client", idp.DefaultAudience, "read:messages")
	claims["exp"] = time.Now().Add(-time.Minute).Unix()
	tok, err := s.MintForTest(claims)
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.Count(tok, ".") == 2)
	// Output: true
}
