package authz

// The decision pipeline: its stages in order, the one place a decision is
// recorded, and the trace hook.

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/extauthz/extauthz/policy"
	"google.golang.org/protobuf/types/known/structpb"
)

// Stage names one step of the decision pipeline. Decide runs them in this
// order; a denial ends the pipeline at the stage that made it.
type Stage string

const (
	// StageRequest: what the transport could read of the request (a
	// forward-auth check whose original-request headers disagree or are
	// missing; a CheckRequest without a path).
	StageRequest Stage = "request"
	// StageRoute: what the rules ask of the path, over every reading of it.
	StageRoute Stage = "route"
	// StageToken: the bearer token, from the Authorization header.
	StageToken Stage = "token"
	// StageVerify: the token's provider, signature and claims, or the
	// cached result of an earlier verification.
	StageVerify Stage = "verify"
	// StageBind: the verified token's sender constraint: a DPoP proof by
	// the key its cnf.jkt names, the client certificate its cnf names.
	StageBind Stage = "bind"
	// StageAuthorize: what the route asks of the verified token (scopes).
	StageAuthorize Stage = "authorize"
	// StageRender: the claim headers to set upstream and the ones to remove.
	StageRender Stage = "render"
)

// Decide makes the decision for one request. It never panics: a panic in any
// stage (or in the observer or logger) is an Internal denial, recorded. It
// allows only when the path is public, or a configured provider's key
// verified the token and every rule the path's readings match held.
func (s *Server) Decide(ctx context.Context, r Request) (d Decision) {
	start := time.Now()
	var f findings
	defer func() {
		if p := recover(); p != nil {
			d = s.recovered(ctx, "check", p, r, time.Since(start))
		}
	}()
	d, f = s.decide(ctx, r)
	s.record(ctx, r, d, f, time.Since(start))
	return d
}

// recovered turns a panic into an Internal denial, logged with its stack
// and recorded as every decision is (where is what panicked). Logging and
// recording are guarded: a panicking logger or observer cannot turn the
// denial into a crash.
func (s *Server) recovered(ctx context.Context, where string, p any, r Request, elapsed time.Duration) Decision {
	d := s.deny(Internal, nil)
	safeLog(func() {
		s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "panic in "+where+"; denied",
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	})
	safeLog(func() { s.record(ctx, r, d, findings{}, elapsed) })
	return d
}

// findings are what the stages found, for the record.
type findings struct {
	v    verified
	bind binding
	rule string // the path of the rule that decided, "" for none
}

// decide runs the stages.
func (s *Server) decide(ctx context.Context, r Request) (Decision, findings) {
	tr := r.Trace
	var f findings

	// request
	if r.problem != "" || r.Path == "" {
		d := s.denyWith(r.problem, r.problemMsg, nil)
		if r.problem == "" {
			// No request target at all (Envoy always sends one): judging
			// it as "/" would apply the root rule alone, a default more
			// permissive than the request's real path.
			d = s.denyWith(InvalidRequest, msgNoPath, nil)
		}
		if tr != nil {
			tr.add(StageRequest, "request", false, "%s", d.Body)
		}
		return d, f
	}

	// route
	rt, bad := s.routeOf(ctx, r)
	f.rule = rt.rule
	if bad.reason != "" {
		if tr != nil {
			tr.add(StageRoute, "request", false, "%s", bad.message)
		}
		return s.denyWith(bad.reason, bad.message, nil), f
	}
	if tr != nil {
		s.traceRoute(tr, r, rt)
	}
	if rt.tooLong {
		return s.deny(PathTooLong, nil), f
	}
	if rt.deny {
		// A deny rule denies every request, with a token or without; in
		// shadow mode the request goes on anonymously, every claim header
		// (and a client's copy or look-alike) removed as on any allow.
		d := s.shadowed(s.deny(PolicyDenied, nil), rt, verified{})
		if d.Allowed() {
			d.Headers, d.Remove = s.claimHeadersFor(verified{}, r.HeaderNames, len(r.Authorization) > 0)
		}
		return d, f
	}

	// token, verify
	tok, reason := s.tokenOf(r)
	if tr != nil {
		where := "the Authorization header"
		if !s.defaultSources && reason == "" {
			where = s.sources[tok.source].String()
		}
		tr.add(StageToken, "bearer", reason == "", "%s (%s)", tokenStep(reason), where)
	}
	if reason == "" {
		f.v = s.verify(ctx, tok.token)
		if tr != nil {
			s.traceVerify(tr, tok.token, f.v)
		}
		if f.v.reason == Allowed && !s.acceptsSource(f.v.issuer, tok.source) {
			// The token's provider (named by its iss) does not take
			// tokens from where this one was found.
			f.v = verified{reason: MissingToken, provider: f.v.provider,
				err: fmt.Errorf("a token in %s, which provider %s does not accept", s.sources[tok.source], f.v.provider)}
		}
		// bind
		if f.v.reason == Allowed {
			f.bind = s.bind(r, tok, &f.v)
			if tr != nil {
				s.traceBind(tr, tok, f.v, f.bind)
			}
			if f.bind.reason != "" {
				f.v.reason, f.v.err = f.bind.reason, f.bind.err
			}
		}
	} else {
		f.v.reason = reason
	}

	// authorize
	var d Decision
	switch {
	case f.v.reason == Allowed && !hasScopes(f.v.scopes, rt.scopes):
		d = s.deny(InsufficientScope, rt.scopes)
	case f.v.reason == Allowed:
		d = s.authorize(ctx, r, &rt, &f)
	case rt.public:
		// Public: an absent or bad token is ignored, and the request goes
		// on anonymously, with every claim header removed.
		d = Decision{Reason: Public}
	case f.bind.reason != "":
		d = s.bindDenial(f.bind)
	default:
		d = s.deny(f.v.reason, rt.scopes)
	}
	if tok.dpop && f.v.reason == Allowed && !d.Allowed() {
		d = s.dpopScheme(d, f.bind.p) // a DPoP request's 403 speaks DPoP (RFC 9449 §7.1)
	}
	d.Provider = f.v.provider
	if tr != nil {
		if f.v.reason == Allowed {
			tr.add(StageAuthorize, "scopes", hasScopes(f.v.scopes, rt.scopes), "required %q, granted %q", rt.scopes, f.v.scopes)
		}
		tr.add(StageAuthorize, "decision", d.Allowed(), "%s", d.Reason)
	}
	d = s.shadowed(d, rt, f.v)

	// render
	if d.Allowed() {
		v := f.v
		if v.reason != Allowed {
			v = verified{} // anonymous: public, or a shadow-allowed denial
		}
		d.Headers, d.Remove = s.claimHeadersFor(v, r.HeaderNames, len(r.Authorization) > 0)
		d.Metadata = v.metadata
		if v.reason == Allowed && f.bind.nonce != "" {
			d.ResponseHeaders = []Header{{Name: "dpop-nonce", Value: f.bind.nonce}}
		}
		if reason == "" && !s.defaultSources && s.sources[tok.source].Query != "" {
			d.RemoveQuery = []string{s.sources[tok.source].Query} // never to the upstream
		}
		if tr != nil {
			names := make([]string, len(d.Headers))
			for i, h := range d.Headers {
				names[i] = h.Name
			}
			tr.add(StageRender, "headers", true, "set %q, remove %q", names, d.Remove)
		}
	}
	return d, f
}

// shadowed turns a denial into a shadow allow when it is not enforced: the
// server runs with enforcement off, or every rule the route met says
// enforce: false. The denial is still recorded (reason, result shadow_deny).
// An internal error is never shadowed.
func (s *Server) shadowed(d Decision, rt route, v verified) Decision {
	if d.Allowed() || d.Reason == Internal || s.enforce && !rt.shadow {
		return d
	}
	return Decision{Reason: d.Reason, Shadow: true, Provider: d.Provider}
}

// problem is a denial found before any rule applies.
type problem struct {
	reason  Reason
	message string
}

// routeOf finds what the rules ask of r: the named policy Envoy's route
// chose, or the path rules over every reading. It refuses a request whose
// method or host a rule needs but the transport could not tell, and a
// policy name the server does not have.
func (s *Server) routeOf(ctx context.Context, r Request) (route, problem) {
	if name := r.ContextExtensions["policy"]; name != "" {
		p := s.rules.policies[name]
		if p == nil {
			s.warnUnknownPolicy(ctx, name)
			return route{}, problem{UnknownPolicy, UnknownPolicy.Message()}
		}
		return s.rules.named(p, r.Path, r.Method, r.Host), problem{}
	}
	if s.rules.methods && r.Method == "" {
		return route{}, problem{InvalidRequest, msgNoMethod}
	}
	if s.rules.hosts && r.Host == "" {
		return route{}, problem{InvalidRequest, msgNoHost}
	}
	return s.rules.routeFor(r.Path, r.Method, r.Host), problem{}
}

// authorize checks the requirements beyond scopes of every rule the route
// met, for a verified token: claims and conditions.
func (s *Server) authorize(ctx context.Context, r Request, rt *route, f *findings) Decision {
	d := Decision{Reason: Allowed}
	if rt.public {
		d.Reason = Public
	}
	var in *policy.Input
	rt.rules(func(ru *rule) bool {
		if !ru.c.NeedsClaims {
			return true
		}
		if in == nil {
			in = s.policyInput(r, rt.path, f.v)
		}
		switch verdict, err := ru.c.Authorize(in); verdict {
		case policy.Satisfied:
			return true
		case policy.Failed:
			f.v.err = fmt.Errorf("rule %s: condition: %w", ru.path, err)
			d = s.deny(PolicyError, nil)
		default:
			d = s.deny(PolicyDenied, nil)
		}
		f.rule = ru.path
		return false
	})
	return d
}

// policyInput is what conditions read of r and its verified token.
// path is the strict reading of the request's path, the one the rules
// matched.
func (s *Server) policyInput(r Request, path string, v verified) *policy.Input {
	return &policy.Input{
		Claims:  v.norm,
		Scopes:  v.scopes,
		Request: policy.Request{Method: r.Method, Path: path, Host: r.Host, Scheme: r.Scheme, Headers: r.Headers},
		Source:  policy.Source{Address: r.SourceAddress, Principal: r.SourcePrincipal},
		Context: r.ContextExtensions,
	}
}

// warnUnknownPolicy logs, at most once a minute, that Envoy's route names a
// policy the server does not have: a configuration error between proxy and
// server that denies every request of the route.
func (s *Server) warnUnknownPolicy(ctx context.Context, name string) {
	name = bound(name)
	limit, ok := s.unknownPolicies.Load(name)
	if !ok {
		if s.unknownPolicyNames.Add(1) > maxUnknownPolicyNames {
			limit = &s.unknownPolicy // beyond the bound, one rate for all
		} else {
			limit, _ = s.unknownPolicies.LoadOrStore(name, new(everyMinute))
		}
	}
	if !limit.(*everyMinute).allow(s.now()) {
		return
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelError,
		"the route names a policy this server does not have; denied (check context_extensions policy against the policies in the config file)",
		slog.String("policy", bound(name)))
}

// maxUnknownPolicyNames bounds the unknown policy names remembered for
// rate-limiting their log lines (names come from the proxy's configuration,
// but are not trusted to be few).
const maxUnknownPolicyNames = 256

// denyMetadata is the dynamic_metadata of each denial: its reason.
var denyMetadata = func() map[Reason]*structpb.Struct {
	m := make(map[Reason]*structpb.Struct)
	for _, r := range Reasons() {
		if !r.Allow() {
			m[r] = &structpb.Struct{Fields: map[string]*structpb.Value{"reason": structpb.NewStringValue(string(r))}}
		}
	}
	return m
}()

func tokenStep(reason Reason) string {
	if reason == "" {
		return "a bearer token"
	}
	return string(reason)
}

// record logs and observes a decision: the one place every decision,
// adapter-found problems and panics included, becomes a metric, a span
// attribute and a log line. Tokens never reach the log: only the reason, the
// provider, the kid (bounded) and the path (bounded, without its query).
func (s *Server) record(ctx context.Context, r Request, d Decision, f findings, elapsed time.Duration) {
	e := Event{
		Reason:   d.Reason,
		Provider: d.Provider,
		Rule:     f.rule,
		Method:   bound(r.Method),
		Path:     bound(pathOnly(r.Path)),
		KID:      bound(f.v.kid),
		Duration: elapsed,
		Shadow:   d.Shadow,
	}
	if d.Reason == Public && f.v.reason != Allowed && f.v.reason != MissingToken && f.v.reason != "" {
		e.TokenIgnored = f.v.reason
	}
	if !d.Reason.Allow() {
		e.Err = f.v.err
	}
	if s.obs != nil {
		s.obs.ObserveCheck(ctx, e)
	}
	level := slog.LevelInfo
	msg := "check denied"
	if d.Reason.Allow() {
		level, msg = slog.LevelDebug, "check allowed"
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", string(e.Reason)),
		slog.Int("status", d.Status()),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Duration("duration", e.Duration),
	}
	if e.Provider != "" {
		attrs = append(attrs, slog.String("provider", e.Provider))
	}
	if e.KID != "" {
		attrs = append(attrs, slog.String("kid", e.KID))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", bound(e.Err.Error())))
	}
	if e.TokenIgnored != "" {
		attrs = append(attrs, slog.String("token_ignored", string(e.TokenIgnored)))
	}
	if e.Shadow {
		attrs = append(attrs, slog.Bool("shadow", true))
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), level, msg, attrs...)
}

// pathOnly drops the query and fragment, which may hold tokens
// (access_token=..., RFC 6750 §2.3) or other secrets.
func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}

func bound(s string) string {
	const max = 256
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
