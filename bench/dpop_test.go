package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/extauthz/extauthz/authz"
)

func dpopClientForTest(t *testing.T) *dpopClient {
	t.Helper()
	c, err := newDPoPClient(tokensForTest(t).key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDPoPClient: the bound token names the signer's key in cnf.jkt, and
// the requests' attributes make the URI the proofs name (the server builds
// htu from the CheckRequest's scheme, host and path).
func TestDPoPClient(t *testing.T) {
	c := dpopClientForTest(t)
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(c.token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string            `json:"iss"`
		Cnf map[string]string `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != issuer || claims.Cnf["jkt"] != c.signer.JKT() {
		t.Errorf("iss %q, cnf %v; want %q and jkt %q", claims.Iss, claims.Cnf, issuer, c.signer.JKT())
	}
	h := c.request("proof", false).GetAttributes().GetRequest().GetHttp()
	if got := h.GetScheme() + "://" + h.GetHost() + h.GetPath(); got != benchURI {
		t.Errorf("the request's URI is %q, want %q", got, benchURI)
	}
	if got := h.GetHeaders(); got["authorization"] != "DPoP "+c.token || got["dpop"] != "proof" {
		t.Errorf("headers %v, want the DPoP scheme and the proof", got)
	}
	if got := c.request("", true).GetAttributes().GetRequest().GetHttp().GetHeaders(); got["authorization"] != "Bearer "+c.token || got["dpop"] != "" {
		t.Errorf("bearer request's headers %v, want the Bearer scheme and no proof", got)
	}
}

// allowAll is an ext_authz server that allows every request.
type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &statuspb.Status{}}, nil
}

// serveCheck serves srv's Check on loopback and returns an instance
// connected to it.
func serveCheck(t *testing.T, srv authv3.AuthorizationServer) *instance {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &instance{conn: conn, grpcAddr: lis.Addr().String()}
}

// TestDPoPProbe: the probe passes against the server's own decision with
// the default sender constraint, and fails against a server that lets DPoP
// pass unchecked (one that allows everything, one that ignores cnf).
func TestDPoPProbe(t *testing.T) {
	ts := tokensForTest(t)
	server := func(constraint string) authv3.AuthorizationServer {
		srv, err := authz.New(authz.Config{
			Providers: []authz.Provider{{Name: "bench", Issuer: issuer, Audiences: []string{audience}, Keys: benchKeys{&ts.key.PublicKey}, SenderConstraint: constraint}},
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	tests := []struct {
		name    string
		srv     authv3.AuthorizationServer
		wantErr bool
	}{
		{name: "extauthz, defaults", srv: server("")},
		{name: "allows everything", srv: allowAll{}, wantErr: true},
		{name: "sender constraint off", srv: server(authz.SenderOff), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{dpop: dpopClientForTest(t)}
			answers, err := h.dpopProbe(t.Context(), serveCheck(t, tc.srv))
			if (err != nil) != tc.wantErr {
				t.Fatalf("dpopProbe() = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(answers) != 5 || answers[0].Code != "OK" {
				t.Fatalf("answers %+v, want 5, the first OK", answers)
			}
			if !strings.Contains(answers[1].Body, "replayed") {
				t.Errorf("the replay's answer %+v, want a denial for a replay", answers[1])
			}
		})
	}
}

// TestMeasureReplayMemory: the cache holds every proof verified, and the
// heap it holds is measured at each point.
func TestMeasureReplayMemory(t *testing.T) {
	const n = 80
	m, err := measureReplayMemory(dpopClientForTest(t), n)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Points) != 5 || m.Points[0].Entries != n/8 || m.Points[4].Entries != n {
		t.Fatalf("points %+v, want 5 from %d to %d entries", m.Points, n/8, n)
	}
	for _, pt := range m.Points {
		if pt.Heap <= 0 || pt.PerEntry <= 0 {
			t.Errorf("point %+v: want the heap grown", pt)
		}
	}
	if m.Size != authz.DefaultDPoPReplayCacheSize || m.Window != authz.DefaultDPoPMaxAge+authz.DefaultDPoPMaxAhead {
		t.Errorf("size %d, window %s; want the server's defaults", m.Size, m.Window)
	}
}
