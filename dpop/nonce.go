package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Nonces issues and checks stateless server nonces (RFC 9449 §8): a nonce
// is a time step and an HMAC of it, valid during its step and the next, so
// that any replica with the same key accepts it and none keeps state.
type Nonces struct {
	key  []byte
	step time.Duration
}

// NewNonces returns nonces keyed by key (at least 32 bytes; a file's or a
// random one generated at start), each valid one to two steps.
func NewNonces(key []byte, step time.Duration) *Nonces {
	return &Nonces{key: key, step: step}
}

// Issue returns the nonce of now's step.
func (n *Nonces) Issue(now time.Time) string {
	return n.nonce(uint64(now.UnixNano() / int64(n.step)))
}

func (n *Nonces) nonce(step uint64) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], step)
	mac := hmac.New(sha256.New, n.key)
	mac.Write(b[:8])
	copy(b[8:], mac.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether nonce was issued for now's step or the one before.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	cur := uint64(now.UnixNano() / int64(n.step))
	for _, step := range []uint64{cur, cur - 1} {
		if hmac.Equal([]byte(nonce), []byte(n.nonce(step))) {
			return true
		}
	}
	return false
}
