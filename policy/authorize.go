package policy

import "slices"

// Input is what a rule's requirements read of one request.
type Input struct {
	// Claims are the verified claims, normalised ([Normalize]); nil
	// without a verified token.
	Claims map[string]any
	// Scopes are the granted scopes.
	Scopes  []string
	Request Request
	Source  Source
	// Context holds Envoy's context_extensions of the route.
	Context map[string]string
}

// Request is the checked request as CEL sees it.
type Request struct {
	Method, Path, Host, Scheme string
	// Headers has lower-case names; a repeated header's values joined
	// with ",".
	Headers map[string]string
}

// Source is the calling peer.
type Source struct {
	Address string
	// Principal is the peer's identity as the mesh proves it (Istio's
	// SPIFFE ID), "" elsewhere.
	Principal string
}

// Verdict is the answer of a rule's requirements.
type Verdict int

const (
	// Satisfied: every requirement holds.
	Satisfied Verdict = iota
	// MissingScope: a required scope is not granted.
	MissingScope
	// Refused: a deny rule, a claim that does not hold, a condition that is
	// false.
	Refused
	// Failed: a condition could not be evaluated (an error, the cost limit,
	// not a bool). It denies.
	Failed
)

// Authorize evaluates the rule's requirements for a request with a verified
// token (in.Claims not nil when the rule NeedsClaims). err explains Failed.
func (c *Compiled) Authorize(in *Input) (Verdict, error) {
	if c.Deny {
		return Refused, nil
	}
	for _, s := range c.Scopes {
		if !slices.Contains(in.Scopes, s) {
			return MissingScope, nil
		}
	}
	for _, r := range c.claims {
		if !r.holds(in.Claims) {
			return Refused, nil
		}
	}
	if c.when != nil {
		ok, err := c.when.eval(in)
		if err != nil {
			return Failed, err
		}
		if !ok {
			return Refused, nil
		}
	}
	return Satisfied, nil
}
