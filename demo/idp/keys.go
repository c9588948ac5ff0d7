package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/MicahParks/jwkset"
)

// KeyState is where a key is in its life.
type KeyState string

// Key states, in order.
const (
	// KeyPending: listed in the JWKS, not signing yet.
	KeyPending KeyState = "pending"
	// KeySigning: listed and signing new tokens.
	KeySigning KeyState = "signing"
	// KeyRetiring: listed, no longer signing; dropped at RetireAfter.
	KeyRetiring KeyState = "retiring"
)

// KeyInfo describes a published key. It holds no key material.
type KeyInfo struct {
	KID   string   `json:"kid"`
	State KeyState `json:"state"`
	// PublishedAt is when the key was first listed in the JWKS.
	PublishedAt time.Time `json:"published_at"`
	// SigningFrom is when the key starts (or started) signing tokens.
	SigningFrom time.Time `json:"signing_from"`
	// RetireAfter is when a retiring key leaves the JWKS; zero otherwise.
	RetireAfter time.Time `json:"retire_after,omitzero"`
}

// signingKey is one key of the ring. Its fields other than lastExpiry and
// announced are immutable after creation.
type signingKey struct {
	kid         string
	priv        *rsa.PrivateKey
	jwk         jwkset.JWKMarshal // public parts only
	publishedAt time.Time
	signingFrom time.Time
	// lastExpiry is the latest exp of any token signed with the key; zero
	// if it has signed none. Guarded by Server.mu.
	lastExpiry time.Time
	// announced records that "now signing" was logged. Guarded by Server.mu.
	announced bool
}

// newSigningKey generates an RSA key and describes it as a JWK. The kid is
// the RFC 7638 thumbprint of the public key, so it is stable for the key,
// unique in practice, and anyone can recompute it from the JWKS.
func newSigningKey(bits int, publishedAt, signingFrom time.Time) (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("idp: generate key: %w", err)
	}
	kid := thumbprint(&priv.PublicKey)
	// Built from the public key alone, so the private exponent can never
	// reach the JWKS whatever the marshal options.
	jwk, err := jwkset.NewJWKFromKey(&priv.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.AlgRS256, KID: kid, USE: jwkset.UseSig},
	})
	if err != nil {
		return nil, fmt.Errorf("idp: describe key: %w", err)
	}
	return &signingKey{
		kid:         kid,
		priv:        priv,
		jwk:         jwk.Marshal(),
		publishedAt: publishedAt,
		signingFrom: signingFrom,
	}, nil
}

// thumbprint is the base64url SHA-256 JWK thumbprint (RFC 7638 §3) of an
// RSA public key: the hash of {"e":...,"kty":"RSA","n":...} with the
// members in that order and no whitespace.
func thumbprint(pub *rsa.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	e := b64(big.NewInt(int64(pub.E)).Bytes())
	n := b64(pub.N.Bytes())
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return b64(sum[:])
}

// keyEvent is a state change found by advance, logged after the lock is
// released.
type keyEvent struct {
	msg string
	kid string
}

// advance brings the ring up to now and returns the key that signs at now.
// The signer is the newest key whose signingFrom has passed. Every other key
// stays listed only while it is pending, or while a token it signed may
// still be accepted (lastExpiry + margin); a superseded key that never
// signed anything is dropped at once. Caller holds s.mu.
func (s *Server) advance(now time.Time) (*signingKey, []keyEvent) {
	signer := s.signerIndex(now)
	var events []keyEvent
	kept := s.keys[:0]
	var cur *signingKey
	for i, k := range s.keys {
		switch {
		case i == signer:
			cur = k
			if !k.announced {
				k.announced = true
				events = append(events, keyEvent{msg: "key now signing", kid: k.kid})
			}
		case k.signingFrom.After(now):
			// pending
		case !k.lastExpiry.IsZero() && now.Before(k.lastExpiry.Add(s.retireMargin)):
			// retiring: its tokens may still be in use
		default:
			events = append(events, keyEvent{msg: "key removed from jwks", kid: k.kid})
			continue
		}
		kept = append(kept, k)
	}
	clear(s.keys[len(kept):]) // drop references to private keys
	s.keys = kept
	return cur, events
}

func (s *Server) logEvents(ctx context.Context, events []keyEvent) {
	for _, e := range events {
		s.log.LogAttrs(ctx, slog.LevelInfo, e.msg, slog.String("kid", e.kid))
	}
}

// Rotate generates a new key and publishes it in the JWKS at once. The
// current key keeps signing for Config.RotationPublishDelay, then the new
// key takes over; the old key stays listed until every token it signed has
// expired plus Config.RetireMargin. Rotate may be called again before a
// previous rotation has completed; each new key takes over in turn.
//
// Key generation is CPU-bound and cannot be interrupted; ctx is checked
// before and after it, and a rotation whose ctx ended meanwhile is discarded.
func (s *Server) Rotate(ctx context.Context) (KeyInfo, error) {
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, fmt.Errorf("idp: rotate: %w", err)
	}
	now := s.now()
	k, err := newSigningKey(s.keyBits, now, now.Add(s.publishDelay))
	if err != nil {
		return KeyInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return KeyInfo{}, fmt.Errorf("idp: rotate: %w", err)
	}
	s.mu.Lock()
	// Publication time is taken again under the lock so that keys stay
	// ordered by signingFrom even if two rotations race.
	now = s.now()
	k.publishedAt, k.signingFrom = now, now.Add(s.publishDelay)
	s.keys = append(s.keys, k)
	_, events := s.advance(now)
	info := s.infoLocked(k, now)
	s.mu.Unlock()

	s.log.LogAttrs(ctx, slog.LevelInfo, "key published",
		slog.String("kid", k.kid), slog.Time("signing_from", k.signingFrom))
	s.logEvents(ctx, events)
	return info, nil
}

// Keys lists the keys currently published in the JWKS, oldest first.
func (s *Server) Keys() []KeyInfo {
	s.mu.Lock()
	now := s.now()
	_, events := s.advance(now)
	infos := make([]KeyInfo, 0, len(s.keys))
	for _, k := range s.keys {
		infos = append(infos, s.infoLocked(k, now))
	}
	s.mu.Unlock()
	s.logEvents(context.Background(), events)
	return infos
}

// infoLocked describes k at now, which must be the time of the last
// advance. Caller holds s.mu.
func (s *Server) infoLocked(k *signingKey, now time.Time) KeyInfo {
	info := KeyInfo{KID: k.kid, PublishedAt: k.publishedAt, SigningFrom: k.signingFrom}
	switch {
	case k == s.keys[s.signerIndex(now)]:
		info.State = KeySigning
	case k.signingFrom.After(now):
		info.State = KeyPending
	default:
		info.State = KeyRetiring
		info.RetireAfter = k.lastExpiry.Add(s.retireMargin)
	}
	return info
}

// signerIndex returns the index of the newest key whose signingFrom has
// passed. If none has (only possible when an injected clock goes back), the
// oldest key signs. Caller holds s.mu.
func (s *Server) signerIndex(now time.Time) int {
	signer := 0
	for i, k := range s.keys {
		if !k.signingFrom.After(now) {
			signer = i
		}
	}
	return signer
}

// jwksJSON returns the public JWKS document.
func (s *Server) jwksJSON(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	_, events := s.advance(s.now())
	set := jwkset.JWKSMarshal{Keys: make([]jwkset.JWKMarshal, 0, len(s.keys))}
	for _, k := range s.keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	s.mu.Unlock()
	s.logEvents(ctx, events)
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("idp: marshal jwks: %w", err)
	}
	return b, nil
}
