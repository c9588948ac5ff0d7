package integration_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// soakWant is what the server must answer for a reason: the status Envoy
// or the forward-auth client gets, the gRPC code of the CheckResponse, and
// the deny body's error (README's troubleshooting table).
type soakWant struct {
	status int
	code   codes.Code
	msg    string
}

var soakWants = map[string]soakWant{
	"allowed":            {http.StatusOK, codes.OK, ""},
	"missing_token":      {http.StatusUnauthorized, codes.Unauthenticated, "Missing or invalid Authorization header"},
	"bad_algorithm":      {http.StatusUnauthorized, codes.Unauthenticated, "The specified alg value is not allowed"},
	"bad_signature":      {http.StatusUnauthorized, codes.Unauthenticated, "Signature verification failed"},
	"unknown_kid":        {http.StatusUnauthorized, codes.Unauthenticated, "Unable to find matching public key"},
	"wrong_audience":     {http.StatusUnauthorized, codes.Unauthenticated, "Invalid audience"},
	"expired":            {http.StatusUnauthorized, codes.Unauthenticated, "Token has expired"},
	"insufficient_scope": {http.StatusForbidden, codes.PermissionDenied, "Insufficient scope"},
}

// soakCase is one request a worker can make, with the one right answer.
type soakCase struct {
	kind   string // valid, valid-prev, admin, no-scope, expired, wrong-aud, forged, alg-none, unknown-kid, withdrawn, missing, fresh
	token  string // "" for missing and fresh
	path   string
	reason string // the expected reason (a soakWants key)
	sub    string // the x-jwt-sub an allow must carry
}

// soakKind is a weighted group of cases of one kind.
type soakKind struct {
	weight int
	cases  []soakCase
}

// soakPhase is what the workers send while the key sets the server may
// hold do not change any expectation: every case's answer is the same
// under each of them.
type soakPhase struct {
	name   string
	kinds  []soakKind
	total  int
	signer *soakKey // signs fresh tokens
}

func (p *soakPhase) pick(r *rand.Rand) soakCase {
	n := r.IntN(p.total)
	for _, k := range p.kinds {
		if n < k.weight {
			return k.cases[r.IntN(len(k.cases))]
		}
		n -= k.weight
	}
	panic("unreachable")
}

// keyTokens are the pooled tokens of one key, minted when it was made.
type keyTokens struct {
	key                                                    *soakKey
	valid, admin, noScope, expired, wrongAud, forged, none []soakCase
}

const (
	soakAPIPath   = "/api/items"
	soakAdminPath = "/admin/panel"
)

// mintPool mints k's tokens: valid ones (several, so the verified-token
// cache holds several), admin-scoped ones, ones lacking the admin scope,
// expired ones, ones for another audience, forgeries under k's kid signed
// by forger (a key never published), and alg "none" ones under k's kid.
func mintPool(k, forger *soakKey, now time.Time) (*keyTokens, error) {
	kt := &keyTokens{key: k}
	for _, b := range []struct {
		dst    *[]soakCase
		n      int
		kind   string
		signer *soakKey
		path   string
		reason string
		edit   func(*soakClaims) // from a valid read-scoped token
	}{
		{dst: &kt.valid, n: 6, kind: "valid", signer: k, path: soakAPIPath, reason: "allowed"},
		{dst: &kt.admin, n: 2, kind: "admin", signer: k, path: soakAdminPath, reason: "allowed",
			edit: func(c *soakClaims) { c.scope = "read admin" }},
		{dst: &kt.noScope, n: 2, kind: "no-scope", signer: k, path: soakAdminPath, reason: "insufficient_scope"},
		{dst: &kt.expired, n: 2, kind: "expired", signer: k, path: soakAPIPath, reason: "expired",
			edit: func(c *soakClaims) { c.iat, c.exp = now.Add(-2*time.Hour), now.Add(-time.Hour) }},
		{dst: &kt.wrongAud, n: 2, kind: "wrong-aud", signer: k, path: soakAPIPath, reason: "wrong_audience",
			edit: func(c *soakClaims) { c.aud = "https://another-api.example.test" }},
		{dst: &kt.forged, n: 3, kind: "forged", signer: forger, path: soakAdminPath, reason: "bad_signature",
			edit: func(c *soakClaims) { c.scope = "read admin" }},
	} {
		for i := range b.n {
			c := soakClaims{sub: fmt.Sprintf("%s-%s-%d", b.kind, k.kid, i), aud: soakAudience, scope: "read", iat: now, exp: now.Add(soakTokenTTL)}
			if b.edit != nil {
				b.edit(&c)
			}
			tok, err := b.signer.mint(k.kid, c)
			if err != nil {
				return nil, err
			}
			*b.dst = append(*b.dst, soakCase{kind: b.kind, token: tok, path: b.path, reason: b.reason, sub: c.sub})
		}
	}
	// alg "none": a valid token's header and payload with no signature.
	for _, v := range kt.valid[:2] {
		parts := strings.Split(v.token, ".")
		h, err := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": k.kid})
		if err != nil {
			return nil, err
		}
		tok := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1] + "."
		kt.none = append(kt.none, soakCase{kind: "alg-none", token: tok, path: soakAdminPath, reason: "bad_algorithm"})
	}
	return kt, nil
}

// asWithdrawn re-labels cases of a withdrawn key: unknown kid, whatever
// they were.
func asWithdrawn(cs ...[]soakCase) []soakCase {
	var out []soakCase
	for _, c := range slices.Concat(cs...) {
		c.kind, c.reason, c.sub = "withdrawn", "unknown_kid", ""
		out = append(out, c)
	}
	return out
}

// buildPhase assembles a phase: cur signs (and is listed for the whole
// phase), prev (if any) is listed for the whole phase too (rotation
// overlap), withdrawn (if any) is listed in none of the key sets the server
// may hold during the phase.
func buildPhase(name string, cur, prev, withdrawn *keyTokens, unknown []soakCase) *soakPhase {
	p := &soakPhase{name: name, signer: cur.key}
	add := func(w int, cs ...[]soakCase) {
		all := slices.Concat(cs...)
		if len(all) > 0 && w > 0 {
			p.kinds = append(p.kinds, soakKind{weight: w, cases: all})
			p.total += w
		}
	}
	listed := []*keyTokens{cur}
	if prev != nil {
		listed = append(listed, prev)
		var prevValid []soakCase
		for _, c := range prev.valid {
			c.kind = "valid-prev"
			prevValid = append(prevValid, c)
		}
		add(8, prevValid)
	}
	add(24, cur.valid)
	for _, kt := range listed {
		add(2, kt.admin)
		add(2, kt.noScope)
		add(4, kt.expired)
		add(2, kt.wrongAud)
		add(6, kt.forged)
		add(1, kt.none)
	}
	add(14, unknown)
	if withdrawn != nil {
		add(8, asWithdrawn(withdrawn.valid, withdrawn.admin, withdrawn.forged))
	}
	add(4, []soakCase{{kind: "missing", path: soakAPIPath, reason: "missing_token"}})
	add(2, []soakCase{{kind: "fresh", path: soakAPIPath, reason: "allowed"}})
	return p
}

// soakAnswer is a decision as the client saw it.
type soakAnswer struct {
	allow  bool
	status int
	code   codes.Code // gRPC only
	msg    string
	sub    string
}

// soakStats is what workers counted; each worker has its own, merged at
// the end.
type soakStats struct {
	checks, grpc, http int
	byKind             map[string]int
	byReason           map[string]int // expected reasons of answered checks
	wrong              int
	allowedBad         int // allowed where a denial was due
	transportErrs      int
	duringFault        [numFaults]int // correct allows while each fault was on
	examples           []string
}

func newSoakStats() *soakStats {
	return &soakStats{byKind: map[string]int{}, byReason: map[string]int{}}
}

func (s *soakStats) example(format string, args ...any) {
	if len(s.examples) < 20 {
		s.examples = append(s.examples, fmt.Sprintf(format, args...))
	}
}

func (s *soakStats) merge(o *soakStats) {
	s.checks += o.checks
	s.grpc += o.grpc
	s.http += o.http
	for k, v := range o.byKind {
		s.byKind[k] += v
	}
	for k, v := range o.byReason {
		s.byReason[k] += v
	}
	s.wrong += o.wrong
	s.allowedBad += o.allowedBad
	s.transportErrs += o.transportErrs
	for i, v := range o.duringFault {
		s.duringFault[i] += v
	}
	for _, e := range o.examples {
		s.example("%s", e)
	}
}

// check makes one check over gRPC (as Envoy) or HTTP (as nginx's
// auth_request, or as Envoy's HTTP mode).
func (r *soakRun) check(ctx context.Context, viaHTTP, nginxStyle bool, path, token string) (soakAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if viaHTTP {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		target := "http://" + r.httpAddr + path
		if nginxStyle {
			target = "http://" + r.httpAddr + "/_extauthz"
			h.Set("X-Original-URI", path)
			h.Set("X-Original-Method", http.MethodGet)
		}
		resp, err := send(ctx, http.MethodGet, target, h)
		if err != nil {
			return soakAnswer{}, err
		}
		a := soakAnswer{allow: resp.status == http.StatusOK, status: resp.status, sub: resp.header.Get("X-Jwt-Sub")}
		if !a.allow {
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(resp.body, &body); err != nil {
				return a, fmt.Errorf("deny body %q: %w", snippet(resp.body), err)
			}
			a.msg = body.Error
		}
		return a, nil
	}
	headers := map[string]string{":method": http.MethodGet, ":path": path, ":authority": "api.soak.test"}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	resp, err := r.checker.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: http.MethodGet, Path: path, Host: "api.soak.test", Scheme: "https", Headers: headers,
		}},
	}})
	if err != nil {
		return soakAnswer{}, err
	}
	a := soakAnswer{code: codes.Code(resp.GetStatus().GetCode())}
	if ok := resp.GetOkResponse(); ok != nil && a.code == codes.OK {
		a.allow, a.status = true, http.StatusOK
		for _, o := range ok.GetHeaders() {
			if strings.EqualFold(o.GetHeader().GetKey(), "x-jwt-sub") {
				a.sub = o.GetHeader().GetValue()
			}
		}
		return a, nil
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		return a, fmt.Errorf("CheckResponse with code %v has no denied response", a.code)
	}
	a.status = int(d.GetStatus().GetCode())
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		return a, fmt.Errorf("deny body %q: %w", d.GetBody(), err)
	}
	a.msg = body.Error
	return a, nil
}

// wrongness says what is wrong with answer a to case c ("" if nothing).
func wrongness(c soakCase, a soakAnswer, viaHTTP bool) string {
	w := soakWants[c.reason]
	switch {
	case a.allow != (c.reason == "allowed"):
		return fmt.Sprintf("allow=%v, want %s", a.allow, c.reason)
	case a.allow && a.sub != c.sub:
		return fmt.Sprintf("allowed with x-jwt-sub %q, want %q", a.sub, c.sub)
	case a.status != w.status:
		return fmt.Sprintf("status %d (%q), want %d (%s)", a.status, a.msg, w.status, c.reason)
	case !viaHTTP && a.code != w.code:
		return fmt.Sprintf("gRPC code %v, want %v (%s)", a.code, w.code, c.reason)
	case !a.allow && a.msg != w.msg:
		return fmt.Sprintf("error %q, want %q (%s)", a.msg, w.msg, c.reason)
	}
	return ""
}

// work runs one worker until stop is closed or ctx ends.
func (r *soakRun) work(ctx context.Context, seed uint64, stop <-chan struct{}) *soakStats {
	st := newSoakStats()
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	for {
		select {
		case <-stop:
			return st
		case <-ctx.Done():
			return st
		default:
		}
		r.phaseMu.RLock()
		ph := r.phase
		c := ph.pick(rng)
		fault := jwksFault(r.fault.Load())
		viaHTTP := rng.IntN(4) == 0
		nginxStyle := rng.IntN(2) == 0
		if c.kind == "fresh" {
			now := time.Now()
			c.sub = fmt.Sprintf("fresh-%d-%d", seed, st.checks)
			tok, err := ph.signer.mint(ph.signer.kid, soakClaims{sub: c.sub, aud: soakAudience, scope: "read", iat: now, exp: now.Add(soakFreshTTL)})
			if err != nil {
				r.phaseMu.RUnlock()
				st.transportErrs++
				st.example("mint: %v", err)
				continue
			}
			c.token = tok
		}
		a, err := r.check(ctx, viaHTTP, nginxStyle, c.path, c.token)
		r.phaseMu.RUnlock()
		transport := "grpc"
		if viaHTTP {
			transport = "http"
		}
		if err != nil {
			if ctx.Err() != nil {
				return st
			}
			st.transportErrs++
			st.example("%s %s %s (%s): %v", ph.name, transport, c.kind, c.path, err)
			continue
		}
		st.checks++
		st.byKind[c.kind]++
		st.byReason[c.reason]++
		if viaHTTP {
			st.http++
		} else {
			st.grpc++
		}
		if w := wrongness(c, a, viaHTTP); w != "" {
			st.wrong++
			if a.allow {
				st.allowedBad++
			}
			st.example("%s: %s %s %s (fault %s): %s", ph.name, transport, c.kind, c.path, fault, w)
			continue
		}
		if a.allow && fault != faultNone {
			st.duringFault[fault]++
		}
	}
}
