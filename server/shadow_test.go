package server_test

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/config"
)

// TestShadowRollout: a rule with enforce: false lets its denials through
// the running server, and they are counted as shadow_deny with their reason
// and logged with shadow:true; an enforced rule still denies.
func TestShadowRollout(t *testing.T) {
	k := signer{key(0), "k0"}
	js := newJWKS(t, k)
	cfg := testConfig(js)
	cfg.Rules = []config.Rule{{Path: "/new", Scopes: []string{"admin"}, Shadow: true}, {Path: "/admin", Scopes: []string{"admin"}}}
	h := start(t, cfg)
	h.waitReady()
	tok := mint(t, k, claims("alice"))
	check := func(path string) *authv3.CheckResponse {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		resp, err := h.authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: map[string]string{"authorization": "Bearer " + tok}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := check("/new/x"); r.GetOkResponse() == nil {
		t.Errorf("shadow rule denied: %v", r.GetStatus())
	}
	if r := check("/admin"); r.GetDeniedResponse() == nil {
		t.Errorf("enforced rule allowed")
	}
	_, metrics := h.get("/metrics")
	if !strings.Contains(metrics, `reason="insufficient_scope",result="shadow_deny"`) {
		t.Errorf("no shadow_deny series in /metrics")
	}
	if !strings.Contains(h.logs.String(), `"shadow":true`) {
		t.Errorf("the shadow decision was not logged with shadow:true")
	}
}
