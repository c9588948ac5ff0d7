package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
)

// KeyInfo describes one key of the set in force, for status pages: never the
// key material.
type KeyInfo struct {
	KID  string `json:"kid"`
	Alg  string `json:"alg,omitempty"`
	Type string `json:"kty"`
	// Bits is the RSA modulus or the curve size.
	Bits int `json:"bits"`
	// FirstSeen is when this cache first loaded a set holding the kid.
	FirstSeen time.Time `json:"first_seen"`
}

// Keys describes the keys of the set in force, by kid.
func (c *Cache) Keys() []KeyInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.keyInfo)
}

// noteKeys records the keys of a set put in force at now: each kid keeps the
// time it was first seen.
func (c *Cache) noteKeys(keys []jwkset.JWK, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstSeen == nil {
		c.firstSeen = map[string]time.Time{}
	}
	info := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		m := k.Marshal()
		seen, ok := c.firstSeen[m.KID]
		if !ok {
			seen = now
			c.firstSeen[m.KID] = now
		}
		ki := KeyInfo{KID: m.KID, Alg: string(m.ALG), Type: string(m.KTY), FirstSeen: seen}
		switch pk := k.Key().(type) {
		case *rsa.PublicKey:
			ki.Bits = pk.N.BitLen()
		case *ecdsa.PublicKey:
			ki.Bits = pk.Curve.Params().BitSize
		case ed25519.PublicKey:
			ki.Bits = 256
		}
		info = append(info, ki)
	}
	slices.SortFunc(info, func(a, b KeyInfo) int { return strings.Compare(a.KID, b.KID) })
	c.keyInfo = info
	// Forget the first sightings of kids the set no longer holds, so that
	// the map stays as small as the set.
	for kid := range c.firstSeen {
		if !slices.ContainsFunc(info, func(k KeyInfo) bool { return k.KID == kid }) {
			delete(c.firstSeen, kid)
		}
	}
}
