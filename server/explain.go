package server

// The operators' tools: explaining one decision and validating a
// configuration, both with the very server the process would run (New), its
// key caches and its decision, never a second implementation.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/jwks"
)

// ExplainRequest is the request to explain.
type ExplainRequest struct {
	Method, Path, Host string
	// Headers are extra request headers (lower-case names), for
	// conditions and look-alike removal; a "dpop" header is the token's
	// DPoP proof (the token then goes with the DPoP scheme).
	Headers map[string]string
	// Token is the bearer token, "" for a request without one.
	Token string
	// ContextExtensions are Envoy's per-route context_extensions.
	ContextExtensions map[string]string
	// Certificate is the client certificate presented to the proxy, as
	// Envoy's attributes.source.certificate (URL-encoded PEM), for a
	// certificate-bound token.
	Certificate string
}

// ToolOptions are how Explain and Validate reach the key sets.
type ToolOptions struct {
	// JWKSFile, when set, is the key set of every provider, read from this
	// file (served on a loopback listener for the run, so that the same
	// jwks code reads it): for offline use.
	JWKSFile string
	// Timeout bounds waiting for every key set (default 10s).
	Timeout time.Duration
	// Logger gets the key caches' logs (default: discarded).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Explanation is one explained decision. Its JSON field names are stable.
type Explanation struct {
	Request struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Host   string `json:"host,omitempty"`
	} `json:"request"`
	Token *struct {
		Header   map[string]any `json:"header"`
		Claims   map[string]any `json:"claims"`
		Verified bool           `json:"verified"`
	} `json:"token,omitempty"`
	Steps   []authz.Step `json:"steps"`
	Outcome struct {
		Allowed   bool           `json:"allowed"`
		Shadow    bool           `json:"shadow,omitempty"`
		Status    int            `json:"status"`
		Reason    string         `json:"reason"`
		Challenge string         `json:"www_authenticate,omitempty"`
		Body      string         `json:"body,omitempty"`
		Set       []authz.Header `json:"set,omitempty"`
		Remove    []string       `json:"remove,omitempty"`
	} `json:"outcome"`
}

// Explain makes the decision the server built from cfg would make for req,
// with every step recorded. It fetches the key sets (or serves
// opts.JWKSFile) and waits for them, at most opts.Timeout.
func Explain(ctx context.Context, cfg *config.Config, req ExplainRequest, opts ToolOptions) (*Explanation, error) {
	s, stop, err := startTool(ctx, cfg, opts)
	var pending *keysPending
	if err != nil && !errors.As(err, &pending) {
		return nil, err // a provider whose keys did not load is explained as jwks_unavailable
	}
	defer stop()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	r := authz.Request{Method: method, Path: req.Path, Host: req.Host, Scheme: "https",
		Headers: req.Headers, ContextExtensions: req.ContextExtensions, Certificate: req.Certificate, Trace: &authz.Trace{}}
	for k := range req.Headers {
		r.HeaderNames = append(r.HeaderNames, k)
	}
	if req.Token != "" {
		r.Authorization = []string{"Bearer " + req.Token}
		if proof := req.Headers["dpop"]; proof != "" {
			// A DPoP proof given as a header: the token goes with the
			// DPoP scheme, as its client sends it.
			r.Authorization, r.DPoP = []string{"DPoP " + req.Token}, []string{proof}
		}
	}
	d := s.Authz().Decide(ctx, r)

	e := &Explanation{Steps: r.Trace.Steps}
	e.Request.Method, e.Request.Path, e.Request.Host = method, req.Path, req.Host
	if r.Trace.Header != nil {
		e.Token = &struct {
			Header   map[string]any `json:"header"`
			Claims   map[string]any `json:"claims"`
			Verified bool           `json:"verified"`
		}{r.Trace.Header, r.Trace.Claims, r.Trace.Verified}
	}
	o := &e.Outcome
	o.Allowed, o.Shadow, o.Status, o.Reason = d.Allowed(), d.Shadow, d.Status(), string(d.Reason)
	o.Challenge, o.Body, o.Set, o.Remove = d.WWWAuthenticate, d.Body, d.Headers, d.Remove
	return e, nil
}

// ProviderKeys is what Validate found of one provider's key set.
type ProviderKeys struct {
	Name  string `json:"name"`
	Keys  int    `json:"keys"`
	Error string `json:"error,omitempty"`
}

// Validate builds the server cfg describes exactly as the process would at
// start (every rule, policy and condition compiled, every key cache made),
// and with fetch also fetches every key set once. A nil error means the
// server would start.
func Validate(ctx context.Context, cfg *config.Config, fetch bool, opts ToolOptions) ([]ProviderKeys, error) {
	if !fetch {
		_, err := New(cfg, Options{Logger: discard(opts.Logger)})
		return nil, err
	}
	s, stop, err := startTool(ctx, cfg, opts)
	if err != nil {
		var pending *keysPending
		if !errors.As(err, &pending) {
			return nil, err
		}
		return pending.providers, err
	}
	defer stop()
	return providerKeys(s), nil
}

// keysPending is the error of a run whose key sets did not all load.
type keysPending struct{ providers []ProviderKeys }

func (k *keysPending) Error() string {
	var failed []string
	for _, p := range k.providers {
		if p.Error != "" || p.Keys == 0 {
			failed = append(failed, p.Name+": "+cmpOr(p.Error, "no key set yet"))
		}
	}
	return "key sets not loaded: " + strings.Join(failed, "; ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func providerKeys(s *Server) []ProviderKeys {
	var out []ProviderKeys
	for _, c := range s.gen.Load().caches {
		st := c.Status()
		p := ProviderKeys{Name: c.Name(), Keys: st.Keys}
		if st.LastError != nil {
			p.Error = st.LastError.Error()
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func discard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// startTool builds the server for cfg, runs its key caches (from
// opts.JWKSFile on a loopback listener when set) until every set is loaded,
// and returns it with the function that stops the caches.
func startTool(ctx context.Context, cfg *config.Config, opts ToolOptions) (*Server, func(), error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	var closeFile func()
	if opts.JWKSFile != "" {
		url, done, err := serveFile(opts.JWKSFile)
		if err != nil {
			return nil, nil, err
		}
		closeFile = done
		c := *cfg
		c.Providers = append([]config.Provider(nil), cfg.Providers...)
		for i := range c.Providers {
			c.Providers[i].JWKSURL = url
		}
		cfg = &c
	}
	s, err := New(cfg, Options{Logger: discard(opts.Logger), Now: opts.Now})
	if err != nil {
		if closeFile != nil {
			closeFile()
		}
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	r := cacheRunner{stop: map[*jwks.Cache]context.CancelFunc{}}
	for _, c := range s.gen.Load().caches {
		r.start(runCtx, c)
	}
	stop := func() {
		cancel()
		r.wait()
		if closeFile != nil {
			closeFile()
		}
	}
	deadline := time.NewTimer(opts.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !s.Ready() {
		select {
		case <-ctx.Done():
			stop()
			return nil, nil, ctx.Err()
		case <-deadline.C:
			pending := &keysPending{providers: providerKeys(s)}
			// Explain goes on: a provider without keys is a decision too
			// (jwks_unavailable); Validate reports it.
			return s, stop, pending
		case <-tick.C:
		}
	}
	return s, stop, nil
}

// serveFile serves the key-set file at a loopback URL until done is called.
func serveFile(path string) (url string, done func(), err error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("--jwks-file: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: readHeaderTimeout}
	go func() { _ = srv.Serve(lis) }()
	return "http://" + lis.Addr().String() + "/jwks.json", func() { _ = srv.Close() }, nil
}
