package redact_test

import (
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/redact"
)

// TestURL: the user info of a URL, or of a string meant as one, never shows;
// the rest does.
func TestURL(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{name: "no user info", raw: "https://idp.example.com:8443/.well-known/jwks.json?x=1", want: "https://idp.example.com:8443/.well-known/jwks.json?x=1"},
		{name: "no user info, kept as written", raw: "https://IDP.example.com/a%2Fb", want: "https://IDP.example.com/a%2Fb"},
		{name: "user and password", raw: "https://reader:secret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "user only", raw: "https://token@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "empty password", raw: "https://apikey:@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "token with x-oauth-basic", raw: "https://token:x-oauth-basic@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "escaped password", raw: "https://reader:se%2Fc%40ret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "@ in the password", raw: "https://reader:se@cret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "@ in the path is taken for user info", raw: "https://idp.example.com/keys@v1", want: "https://xxxxx@v1"},
		{name: "slash in the password", raw: "https://reader:12/secret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "question mark in the password", raw: "https://reader:12?secret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "hash in the password", raw: "https://reader:12#secret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "user info and @ in the path", raw: "https://reader:secret@idp.example.com/secret@v1", want: "https://xxxxx@v1"},
		{name: "not http", raw: "ftp://reader:secret@idp.example.com/jwks", want: "ftp://xxxxx@idp.example.com/jwks"},
		{name: "unparsable: space in the password", raw: "https://reader:sec ret@idp.example.com/jwks", want: "https://xxxxx@idp.example.com/jwks"},
		{name: "unparsable: slash in the password", raw: "https://reader:sec/ret@idp.example.com/%zz", want: "https://xxxxx@idp.example.com/%zz"},
		{name: "no scheme", raw: "reader:secret@idp.example.com/jwks", want: "xxxxx@idp.example.com/jwks"},
		{name: "unparsable, no user info", raw: "https://idp.example.com/%zz", want: "https://idp.example.com/%zz"},
		{name: "scheme-relative", raw: "//reader:secret@idp.example.com/jwks", want: "xxxxx@idp.example.com/jwks"},
		{name: "a URL in the query", raw: "https://reader:secret@idp.example.com/jwks?next=https://x.example.com/", want: "https://xxxxx@idp.example.com/jwks?next=https://x.example.com/"},
		{name: "empty", raw: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := redact.URL(tc.raw)
			if got != tc.want {
				t.Errorf("URL(%q): got %q, want %q", tc.raw, got, tc.want)
			}
			if again := redact.URL(got); again != got {
				t.Errorf("URL(URL(%q)): got %q, want %q unchanged", tc.raw, again, got)
			}
			for _, secret := range []string{"reader", "secret", "sec", "token", "apikey"} {
				if strings.Contains(got, secret) {
					t.Errorf("URL(%q) = %q shows %q", tc.raw, got, secret)
				}
			}
		})
	}
}
