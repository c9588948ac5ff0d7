package jwks

import (
	"context"
	"fmt"
)

// DefaultFetchConcurrency is a bound for [NewFetchLimiter] that lets a
// hundred providers load in a few round trips without opening a hundred
// connections at once.
const DefaultFetchConcurrency = 16

// FetchLimiter bounds how many refreshes run at once across the caches that
// share it (through [Config.FetchLimiter]): a program with many providers
// starts, and refreshes, without a burst of connections. A refresh holds one
// slot from its first request to its last (the discovery document and the
// key set), and waits for one under Run's context only: the time spent
// waiting does not count against [Config.FetchTimeout]. It is safe for
// concurrent use.
type FetchLimiter struct {
	slots chan struct{}
}

// NewFetchLimiter returns a limiter of n concurrent refreshes; n below 1
// means 1.
func NewFetchLimiter(n int) *FetchLimiter {
	return &FetchLimiter{slots: make(chan struct{}, max(n, 1))}
}

// acquire waits for a slot and returns its release. A nil limiter never
// waits.
func (l *FetchLimiter) acquire(ctx context.Context) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return func() { <-l.slots }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a fetch slot: %w", ctx.Err())
	}
}
