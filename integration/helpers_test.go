package integration_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// tokenResponse is the issuer's token endpoint answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// token runs the guide's step 1 against the issuer: the client credentials
// grant with the guide's JSON body.
func (s *stack) token(ctx context.Context, clientID, secret string) (tokenResponse, error) {
	body := fmt.Sprintf(`{"client_id": %q, "client_secret": %q, "audience": %q, "grant_type": "client_credentials"}`,
		clientID, secret, audience)
	var tr tokenResponse
	status, raw, err := post(ctx, s.idpURL+"/oauth2/m2m/token", "application/json", body)
	if err != nil {
		return tr, err
	}
	if status != http.StatusOK {
		return tr, fmt.Errorf("token for %s: status %d: %s", clientID, status, raw)
	}
	if err := json.Unmarshal(raw, &tr); err != nil {
		return tr, fmt.Errorf("token for %s: %w", clientID, err)
	}
	return tr, nil
}

// demoAndAdmin fetches a token for the demo client and one for the admin
// client (which holds the admin scope), failing the test on an error.
func (s *stack) demoAndAdmin(t *testing.T, ctx context.Context) (demo, admin tokenResponse) {
	t.Helper()
	var err error
	if demo, err = s.token(ctx, "demo-client", "demo-secret"); err != nil {
		t.Fatal(err)
	}
	if admin, err = s.token(ctx, "admin-client", "admin-secret"); err != nil {
		t.Fatal(err)
	}
	return demo, admin
}

// rotate asks the issuer to rotate its key and returns the new kid.
func (s *stack) rotate(ctx context.Context) (string, error) {
	status, raw, err := post(ctx, s.idpAdminURL+"/rotate", "", "")
	if err != nil {
		return "", err
	}
	var info struct {
		KID string `json:"kid"`
	}
	if status != http.StatusOK || json.Unmarshal(raw, &info) != nil || info.KID == "" {
		return "", fmt.Errorf("POST /rotate: status %d: %s", status, raw)
	}
	return info.KID, nil
}

func post(ctx context.Context, target, contentType, body string) (int, []byte, error) {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return postWith(ctx, client, target, h, body)
}

// postWith posts body to target with header (nil for none) through c.
func postWith(ctx context.Context, c *http.Client, target string, header http.Header, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if header != nil {
		req.Header = header.Clone()
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, err
}

// jwtPart decodes part i (0 header, 1 payload) of a compact JWT.
func jwtPart(tok string, i int) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a compact JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func kidOf(tok string) string {
	h, err := jwtPart(tok, 0)
	if err != nil {
		return ""
	}
	kid, _ := h["kid"].(string)
	return kid
}

// expOf returns a token's exp claim.
func expOf(tok string) (time.Time, error) {
	p, err := jwtPart(tok, 1)
	if err != nil {
		return time.Time{}, err
	}
	exp, ok := p["exp"].(float64)
	if !ok {
		return time.Time{}, fmt.Errorf("no exp claim")
	}
	return time.Unix(int64(exp), 0), nil
}

// tamper changes one character in the middle of the signature, so the
// token is well formed but its signature does not verify.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + (len(tok)-strings.LastIndexByte(tok, '.'))/2
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(a []byte, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// claimHeaders are the ext_authz server's claim headers in these tests (its
// defaults: no claim_headers in the config).
var claimHeaders = []string{"x-jwt-sub", "x-jwt-payload"}

// claimProblems lists what is wrong with the claim headers a backend
// received (keys in any case): with wantSub "" there must be none at all;
// otherwise exactly one x-jwt-sub with wantSub and one x-jwt-payload whose
// verified payload names wantSub and the demo issuer. A look-alike spelling
// (x_jwt_sub, which CGI-style backends read as x-jwt-sub) is always a
// problem.
func claimProblems(h map[string][]string, wantSub string) []string {
	var probs []string
	got := map[string][]string{}
	for k, v := range h {
		lk := strings.ToLower(k)
		if !slices.Contains(claimHeaders, strings.ReplaceAll(lk, "_", "-")) {
			continue
		}
		if strings.Contains(lk, "_") {
			probs = append(probs, fmt.Sprintf("look-alike header %s: %q arrived", k, v))
			continue
		}
		got[lk] = append(got[lk], v...)
	}
	for k, v := range got {
		switch k {
		case "x-jwt-sub":
			if wantSub == "" || len(v) != 1 || v[0] != wantSub {
				probs = append(probs, fmt.Sprintf("x-jwt-sub = %q, want %s", v, wantOnly(wantSub)))
			}
		case "x-jwt-payload":
			if wantSub == "" || len(v) != 1 {
				probs = append(probs, fmt.Sprintf("x-jwt-payload = %q, want %s", v, wantOnly(wantSub)))
				continue
			}
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v[0], "="))
			var p map[string]any
			if err == nil {
				err = json.Unmarshal(raw, &p)
			}
			if err != nil || p["sub"] != wantSub || p["iss"] != issuer || p["aud"] != audience {
				probs = append(probs, fmt.Sprintf("x-jwt-payload %q is not the verified payload of %s (%v)", v[0], wantSub, err))
			}
		}
	}
	if wantSub != "" {
		for _, k := range claimHeaders {
			if _, ok := got[k]; !ok {
				probs = append(probs, k+" is missing")
			}
		}
	}
	return probs
}

func wantOnly(sub string) string {
	if sub == "" {
		return "none"
	}
	return fmt.Sprintf("only %q", sub)
}

// forgedPayload is what a client would put in X-Jwt-Payload to pose as
// admin.
func forgedPayload() string {
	b, _ := json.Marshal(map[string]any{"iss": issuer, "aud": audience, "sub": "admin", "scope": "read:messages admin"})
	return base64.RawURLEncoding.EncodeToString(b)
}

// spoofHeaders are claim headers a client forges, in the spellings a front
// or a backend might treat as the real ones. Keys are sent verbatim.
func spoofHeaders() http.Header {
	forged := forgedPayload()
	return http.Header{
		"X-Jwt-Sub":     {"admin"},
		"x-jwt-sub":     {"admin"},
		"X-JWT-SUB":     {"admin"},
		"x_jwt_sub":     {"admin"},
		"X_Jwt_Sub":     {"admin"},
		"X-Jwt-Payload": {forged},
		"x_jwt_payload": {forged},
		"X_JWT_PAYLOAD": {forged},
	}
}

// merge returns the union of headers, for one request.
func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

// snippet shortens a body for a failure message.
func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
