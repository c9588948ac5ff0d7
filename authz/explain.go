package authz

// What the stages show when a decision is traced (Request.Trace): the token
// as decoded, the provider, key and claims it was checked against, every
// reading of the path and the rule it met. Only a traced decision pays for
// any of it; the judgement itself is the pipeline's, never recomputed here.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Trace collects the steps of one decision, for explaining it. Set
// Request.Trace to collect; a nil Trace collects nothing and costs a nil
// check per stage.
type Trace struct {
	Steps []Step
	// Header and Claims are the token's, decoded without verification
	// (never the signature); Verified says whether they then verified.
	Header   map[string]any
	Claims   map[string]any
	Verified bool
}

// Step is one check a stage made.
type Step struct {
	Stage  Stage  `json:"stage"`
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

func (t *Trace) add(stage Stage, check string, ok bool, format string, args ...any) {
	t.Steps = append(t.Steps, Step{Stage: stage, Check: check, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// traceRoute records every reading of the request and the rule it met.
func (s *Server) traceRoute(tr *Trace, r Request, rt route) {
	if r.ContextExtensions["policy"] != "" {
		tr.add(StageRoute, "policy", !rt.deny, "Envoy's route chose policy %q: public %v, scopes %q", r.ContextExtensions["policy"], rt.public, rt.scopes)
		return
	}
	vs, ok := variants(r.Path, nil)
	if vs == nil {
		tr.add(StageRoute, "path", false, "%q is over %d bytes and needs several readings", pathOnly(r.Path), MaxSlowPathBytes)
		return
	}
	fs, sane := folds(vs, nil)
	if !ok || !sane {
		tr.add(StageRoute, "path", true, "%q is in doubt (no leading slash, a control character, a broken or repeated escape): never public", pathOnly(r.Path))
	}
	methods := []string{r.Method}
	if u := strings.ToUpper(r.Method); u != r.Method && s.rules.methods {
		methods = append(methods, u)
	}
	show := func(p string, folded bool) {
		for _, m := range methods {
			kind := "reading"
			if folded {
				kind = "folded reading"
			}
			if ru := s.rules.first(p, folded, m, r.Host); ru != nil {
				tr.add(StageRoute, kind, !ru.deny, "%s %s on %q meets rule %s: %s", m, p, r.Host, ru.path, describeRule(ru))
			} else {
				tr.add(StageRoute, kind, true, "%s %s on %q meets no rule: a valid token is needed", m, p, r.Host)
			}
		}
	}
	for _, v := range vs {
		show(v, false)
	}
	for _, f := range fs {
		show(f, true)
	}
	tr.add(StageRoute, "merged", !rt.deny, "public %v, deny %v, scopes %q (the strictest of every reading)", rt.public, rt.deny, rt.scopes)
}

func describeRule(r *rule) string {
	var parts []string
	switch {
	case r.public:
		parts = append(parts, "public")
	case r.deny:
		parts = append(parts, "deny")
	}
	if len(r.scopes) > 0 {
		parts = append(parts, fmt.Sprintf("scopes %q", r.scopes))
	}
	if r.c.NeedsClaims {
		parts = append(parts, "claims or a condition")
	}
	if r.shadow {
		parts = append(parts, "not enforced (shadow)")
	}
	if len(parts) == 0 {
		return "a valid token"
	}
	return strings.Join(parts, ", ")
}

// traceVerify records what the token was checked against: it decodes the
// token again, without verifying it, to show its header and claims next to
// the verification's outcome v.
func (s *Server) traceVerify(tr *Trace, raw string, v verified) {
	tr.Verified = v.reason == Allowed
	claims := jwt.MapClaims{}
	t, _, err := jwt.NewParser(jwt.WithJSONNumber()).ParseUnverified(raw, claims)
	if err != nil || t == nil {
		tr.add(StageVerify, "decode", false, "not a compact JWS with JSON header and claims: %v", err)
		return
	}
	tr.Header, tr.Claims = t.Header, claims
	if err := checkSegments(raw); err != nil {
		tr.add(StageVerify, "json", false, "%v", err)
	}
	iss, _ := claims["iss"].(string)
	p := s.providers[iss]
	if p == nil {
		issuers := make([]string, 0, len(s.providers))
		for i := range s.providers {
			issuers = append(issuers, i)
		}
		slices.Sort(issuers)
		tr.add(StageVerify, "issuer", false, "iss %q names no configured provider (configured: %q)", iss, issuers)
		return
	}
	tr.add(StageVerify, "issuer", true, "iss %q is provider %q", iss, p.name)
	alg := algOf(t)
	tr.add(StageVerify, "algorithm", slices.Contains(p.algs, alg), "alg %q; the provider accepts %q", alg, p.algs)
	kid, _ := t.Header["kid"].(string)
	switch v.reason {
	case UnknownKID, KeysUnavailable:
		tr.add(StageVerify, "key", false, "kid %q: %v", kid, v.err)
		return
	case BadAlgorithm, UnknownIssuer, Malformed:
		return
	}
	tr.add(StageVerify, "key", true, "kid %q found in the provider's key set", kid)
	sigOK := v.reason != BadSignature
	tr.add(StageVerify, "signature", sigOK, "%s", map[bool]string{true: "verifies with that key", false: "does not verify with that key"}[sigOK])
	if !sigOK {
		return
	}
	now := s.now()
	for _, c := range []struct {
		name string
		get  func() (*jwt.NumericDate, error)
		past bool // the claim must be in the past (nbf, iat) or the future (exp)
	}{{"exp", claims.GetExpirationTime, false}, {"nbf", claims.GetNotBefore, true}, {"iat", claims.GetIssuedAt, true}} {
		d, err := c.get()
		switch {
		case err != nil:
			tr.add(StageVerify, c.name, false, "%s is not a number: %v", c.name, err)
		case d == nil && c.name == "exp":
			tr.add(StageVerify, c.name, false, "exp is missing (required)")
		case d == nil:
		case c.past:
			tr.add(StageVerify, c.name, !d.After(now.Add(s.skew)), "%s %s; now %s, skew %s", c.name, d.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.skew)
		default:
			tr.add(StageVerify, c.name, d.Add(s.skew).After(now), "%s %s; now %s, skew %s", c.name, d.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), s.skew)
		}
	}
	aud, _ := claims.GetAudience()
	tr.add(StageVerify, "aud", slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(p.audiences, a) }),
		"aud %q; the provider accepts %q", []string(aud), p.audiences)
	tr.add(StageVerify, "result", v.reason == Allowed, "%s", v.reason)
}

// traceBind records what the bind stage found of a verified token.
func (s *Server) traceBind(tr *Trace, tok found, v verified, b binding) {
	scheme := "Bearer"
	if tok.dpop {
		scheme = "DPoP"
	}
	what := "a bearer token (no cnf)"
	switch {
	case v.jkt != "" && v.x5t != "":
		what = "bound to a DPoP key (cnf.jkt) and a client certificate (cnf x5t#S256)"
	case v.jkt != "":
		what = "bound to a DPoP key (cnf.jkt " + v.jkt + ")"
	case v.x5t != "":
		what = "bound to a client certificate (cnf x5t#S256 " + v.x5t + ")"
	}
	constraint := ""
	if b.p != nil {
		constraint = b.p.sender.constraint
	}
	if b.reason != "" {
		tr.add(StageBind, "sender", false, "%s, presented with the %s scheme, sender_constraint %s: %s (%v)", what, scheme, constraint, b.reason, b.err)
		return
	}
	tr.add(StageBind, "sender", true, "%s, presented with the %s scheme, sender_constraint %s", what, scheme, constraint)
}
