package authz

// The vocabulary of one decision: the request as a transport read it, the
// decision, and the event every decision is recorded as.

// Request is what a decision needs of one HTTP request.
type Request struct {
	// Method is the HTTP method, for logs.
	Method string
	// Path is the request target as received (path, and maybe a query).
	Path string
	// Authorization holds every Authorization header value.
	Authorization []string
	// HeaderNames are the lower-cased names of the request's headers, when
	// the transport can strip headers upstream (Envoy). Look-alike spellings
	// of claim headers among them are removed on allow.
	HeaderNames []string
}

// Header is one header to set upstream.
type Header struct {
	Name  string
	Value string
}

// Decision is the answer to one Request.
type Decision struct {
	Reason   Reason
	Provider string // name of the provider that issued the token, if known
	// On allow: the claim headers to set upstream (overwriting any client
	// value), sorted by name, and the headers to remove from the upstream
	// request. A name is never in both.
	Headers []Header
	Remove  []string
	// On deny: the RFC 6750 challenge ("" for none) and the JSON body.
	WWWAuthenticate string
	Body            string
}

// Allowed reports whether the decision lets the request through.
func (d Decision) Allowed() bool { return d.Reason.Allow() }

// Status is the HTTP status for the decision.
func (d Decision) Status() int { return d.Reason.Status() }
