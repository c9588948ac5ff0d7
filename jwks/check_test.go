package jwks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/jwks"
)

// TestChecks pins the rules New applies and config reuses, so that a
// setting config.Load accepts is one New accepts.
func TestChecks(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{name: "https URL", err: jwks.CheckURL("https://idp.example.com/jwks")},
		{name: "http URL", err: jwks.CheckURL("http://127.0.0.1:9000/jwks")},
		{name: "file URL", err: jwks.CheckURL("file:///etc/jwks.json"), wantErr: true},
		{name: "relative URL", err: jwks.CheckURL("/keys"), wantErr: true},
		{name: "URL without host", err: jwks.CheckURL("https:///keys"), wantErr: true},
		{name: "RS256", err: jwks.CheckAlgorithm("RS256")},
		{name: "EdDSA", err: jwks.CheckAlgorithm("EdDSA")},
		{name: "HS256", err: jwks.CheckAlgorithm("HS256"), wantErr: true},
		{name: "none", err: jwks.CheckAlgorithm("none"), wantErr: true},
		{name: "default intervals", err: jwks.CheckRefreshIntervals(jwks.DefaultRefreshInterval, jwks.DefaultMinRefreshInterval)},
		{name: "equal intervals", err: jwks.CheckRefreshIntervals(time.Minute, time.Minute)},
		{name: "min above refresh", err: jwks.CheckRefreshIntervals(time.Minute, 2*time.Minute), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err != nil; got != tc.wantErr {
				t.Errorf("got error %v, want error %v", tc.err, tc.wantErr)
			}
		})
	}
	// The URL may carry credentials: the error masks them.
	if err := jwks.CheckURL("ftp://reader:s3cret@idp.example.com/jwks"); err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "reader") {
		t.Errorf("CheckURL(ftp with user info) = %v, want an error without the user info", err)
	}
}
