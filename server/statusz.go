package server

// /statusz: what the running server is, for an operator: its build, its
// configuration, each provider's key set, the token cache and the rules.
// Nothing secret: no token, no claim value, no credential.

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/internal/redact"
	"github.com/extauthz/extauthz/jwks"
)

// statusPage is /statusz's document. Its field names are stable and
// documented in the README.
type statusPage struct {
	Version       string           `json:"version"`
	GoVersion     string           `json:"go_version"`
	Revision      string           `json:"revision,omitempty"`
	StartedAt     time.Time        `json:"started_at"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Config        statusConfig     `json:"config"`
	Providers     []statusProvider `json:"providers"`
	TokenCache    statusCache      `json:"token_cache"`
	Rules         statusRules      `json:"rules"`
}

type statusConfig struct {
	// Source is the config file, or "flags and environment".
	Source string `json:"source"`
	// SHA256 is the digest of the file as loaded ("" without a file).
	SHA256 string `json:"sha256,omitempty"`
	// Generation counts the configurations loaded: 1 at start, +1 per
	// accepted reload.
	Generation int64     `json:"generation"`
	LoadedAt   time.Time `json:"loaded_at"`
}

type statusProvider struct {
	Name   string `json:"name"`
	Issuer string `json:"issuer"`
	// KeySetURL has its user info masked.
	KeySetURL   string         `json:"key_set_url"`
	Ready       bool           `json:"ready"`
	Source      string         `json:"source,omitempty"` // fetch or disk
	Keys        []jwks.KeyInfo `json:"keys"`
	LastSuccess *time.Time     `json:"last_success,omitempty"`
	LastError   string         `json:"last_error,omitempty"`
	AgeSeconds  float64        `json:"age_seconds,omitempty"`
	NextRefresh *time.Time     `json:"next_refresh,omitempty"`
	RetryAfter  *time.Time     `json:"retry_after,omitempty"`
	// SenderConstraint is optional, required or off; DPoPNonce: proofs
	// need server nonces.
	SenderConstraint string `json:"sender_constraint"`
	DPoPNonce        bool   `json:"dpop_nonce"`
}

type statusCache struct {
	Entries int `json:"entries"`
	// HitRatio is hits (positive and negative) over lookups since start.
	HitRatio float64 `json:"hit_ratio"`
	Hits     uint64  `json:"hits"`
	Misses   uint64  `json:"misses"`
}

type statusRules struct {
	Count    int      `json:"count"`
	Paths    []string `json:"paths"`
	Policies []string `json:"policies"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// serveStatus writes /statusz.
func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	g := s.gen.Load()
	now := s.opts.Now()
	var p statusPage
	bi := ReadBuildInfo()
	p.Version, p.GoVersion, p.Revision = bi.Version, bi.GoVersion, bi.Revision
	p.StartedAt, p.UptimeSeconds = s.started, now.Sub(s.started).Seconds()
	p.Config = statusConfig{Source: "flags and environment", Generation: g.number, LoadedAt: g.loadedAt}
	if g.cfg.File != "" {
		p.Config.Source, p.Config.SHA256 = g.cfg.File, g.cfg.FileSHA256
	}
	issuers := map[string]string{} // cache name -> issuer
	senders := map[string]config.Provider{}
	for _, pr := range g.cfg.Providers {
		issuers[pr.Name] = pr.Issuer
		senders[pr.Name] = pr
	}
	for _, c := range g.caches {
		st := c.Status()
		sp := statusProvider{Name: c.Name(), Issuer: issuers[c.Name()], KeySetURL: redact.URL(st.KeySetURL), Ready: st.Loaded,
			Source: string(st.Source), Keys: c.Keys(), LastSuccess: timePtr(st.LastSuccess), AgeSeconds: st.Age.Seconds(),
			NextRefresh: timePtr(st.NextRefresh), RetryAfter: timePtr(st.RetryAfter)}
		if sp.Keys == nil {
			sp.Keys = []jwks.KeyInfo{}
		}
		pr := senders[c.Name()]
		sp.SenderConstraint = cmp.Or(pr.SenderConstraint, authz.SenderOptional)
		sp.DPoPNonce = pr.DPoP.Nonce
		if st.LastError != nil {
			sp.LastError = st.LastError.Error()
		}
		p.Providers = append(p.Providers, sp)
	}
	st := s.tokenCacheStats()
	p.TokenCache = statusCache{Entries: st.Entries, Hits: st.Hits + st.NegativeHits, Misses: st.Misses}
	if n := st.Hits + st.NegativeHits + st.Misses; n > 0 {
		p.TokenCache.HitRatio = float64(st.Hits+st.NegativeHits) / float64(n)
	}
	p.Rules.Paths = []string{}
	for _, r := range g.cfg.Rules {
		p.Rules.Paths = append(p.Rules.Paths, r.Path)
	}
	p.Rules.Count = len(p.Rules.Paths)
	p.Rules.Policies = []string{}
	for name := range g.cfg.Policies {
		p.Rules.Policies = append(p.Rules.Policies, name)
	}
	slices.Sort(p.Rules.Policies)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
}
