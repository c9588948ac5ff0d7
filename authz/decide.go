package authz

// The decision pipeline: its stages in order, the one place a decision is
// recorded, and the trace hook.

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Decide makes the decision for one request. It never panics on any input,
// and it allows only when the path is public or a configured provider's key
// verified the token and every claim rule held.
func (s *Server) Decide(ctx context.Context, r Request) Decision {
	start := time.Now()
	if r.Path == "" {
		// No request target at all (Envoy always sends one): judging it as
		// "/" would apply the root rule alone, a default more permissive
		// than the request's real path.
		d := s.denyWith(InvalidRequest, msgNoPath, nil)
		s.record(ctx, r, d, verified{}, time.Since(start))
		return d
	}
	pol := policyFor(s.rules, r.Path)
	if pol.tooLong {
		d := s.deny(PathTooLong, nil)
		s.record(ctx, r, d, verified{}, time.Since(start))
		return d
	}
	v := s.verifyRequest(ctx, r)

	var d Decision
	switch {
	case v.reason == Allowed && !hasScopes(v.scopes, pol.scopes):
		d = s.deny(InsufficientScope, pol.scopes)
	case v.reason == Allowed:
		d = Decision{Reason: Allowed}
		if pol.public {
			d.Reason = Public
		}
		d.Headers, d.Remove = s.claimHeadersFor(v, r.HeaderNames)
	case pol.public:
		// Public: an absent or bad token is ignored, and the request goes on
		// anonymously, with every claim header removed.
		d = Decision{Reason: Public}
		d.Headers, d.Remove = s.claimHeadersFor(verified{}, r.HeaderNames)
	default:
		d = s.deny(v.reason, pol.scopes)
	}
	d.Provider = v.provider
	s.record(ctx, r, d, v, time.Since(start))
	return d
}

// record logs and observes a decision. Tokens never reach the log: only the
// reason, the provider, the kid (bounded) and the path (bounded).
func (s *Server) record(ctx context.Context, r Request, d Decision, v verified, elapsed time.Duration) {
	if s.obs != nil {
		s.obs.ObserveCheck(ctx, d.Provider, d.Reason, elapsed)
	}
	level := slog.LevelInfo
	msg := "check denied"
	if d.Allowed() {
		level, msg = slog.LevelDebug, "check allowed"
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", string(d.Reason)),
		slog.Int("status", d.Status()),
		slog.String("method", bound(r.Method)),
		slog.String("path", bound(pathOnly(r.Path))),
		slog.Duration("duration", elapsed),
	}
	if d.Provider != "" {
		attrs = append(attrs, slog.String("provider", d.Provider))
	}
	if v.kid != "" {
		attrs = append(attrs, slog.String("kid", bound(v.kid)))
	}
	if v.err != nil && !d.Allowed() {
		attrs = append(attrs, slog.String("error", bound(v.err.Error())))
	}
	if d.Reason == Public && v.reason != Allowed && v.reason != MissingToken {
		attrs = append(attrs, slog.String("token_ignored", string(v.reason)))
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
