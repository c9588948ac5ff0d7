package dpop

import (
	"crypto/sha256"
	"sync"
	"time"
)

// replayShards spreads the replay cache over independent locks: a check
// locks one shard, never the whole cache.
const replayShards = 64

// replayKey identifies one proof: 16 bytes of SHA-256 over its key's
// thumbprint and its jti (a collision would need 2^64 proofs).
type replayKey [16]byte

// ReplayCache remembers the proofs seen within the acceptance window, so
// that each is used once. It is bounded: when a shard is full of proofs
// still inside the window, a new proof is refused (fail closed) rather than
// another forgotten. Memory is about 30 bytes an entry (16-byte key, the
// map's overhead), twice the entries of one window at most.
type ReplayCache struct {
	window   time.Duration
	perShard int
	shards   [replayShards]replayShard
}

// replayShard keeps two generations: a proof is remembered in cur until the
// generation rotates, then in prev for one more window, so every proof is
// remembered for at least one window after it was seen.
type replayShard struct {
	mu        sync.Mutex
	cur, prev map[replayKey]struct{}
	since     time.Time // when cur started
}

// NewReplayCache returns a cache remembering proofs for window, holding at
// most size proofs per window.
func NewReplayCache(window time.Duration, size int) *ReplayCache {
	per := max(size/replayShards, 1)
	return &ReplayCache{window: window, perShard: per}
}

// seen records the proof and reports whether it was already there; full
// reports a proof that could not be recorded (the shard is full).
func (c *ReplayCache) seen(jkt, jti string, now time.Time) (replayed, full bool) {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [sha256.Size]byte
	var k replayKey
	copy(k[:], h.Sum(sum[:0]))
	s := &c.shards[k[0]%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil || now.Sub(s.since) >= c.window {
		// Rotate: cur becomes prev (what prev held is a window old); a cur
		// older than two windows holds nothing to remember.
		prev := s.cur
		if now.Sub(s.since) >= 2*c.window {
			prev = nil
		}
		s.prev, s.cur, s.since = prev, make(map[replayKey]struct{}, min(c.perShard, 1024)), now
	}
	if _, ok := s.cur[k]; ok {
		return true, false
	}
	if _, ok := s.prev[k]; ok {
		return true, false
	}
	if len(s.cur) >= c.perShard {
		return false, true
	}
	s.cur[k] = struct{}{}
	return false, false
}

// Len is the number of proofs remembered now.
func (c *ReplayCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}
