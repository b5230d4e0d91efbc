package tokenbucket

import (
	"math"
	"sync/atomic"
	"time"
)

// epoch anchors Now; time.Since reads the monotonic clock.
var epoch = time.Now()

// Now is nanoseconds on the monotonic clock since the process started.
func Now() int64 { return int64(time.Since(epoch)) }

// Bucket is Envoy's AtomicTokenBucketImpl semantics (continuous refill
// at tokens_per_fill per fill_interval up to max_tokens, starting full),
// kept in one atomic word: empty is the instant at which the bucket held
// (or would hold) no token, so that at now it holds
// min(max_tokens, (now-empty)/cost) tokens. Taking a token moves empty one
// cost later with a compare-and-swap; nothing refills it but time.
//
// Immutable after New except empty; safe for concurrent use.
type Bucket struct {
	maxTokens uint64
	cost      int64 // nanoseconds per token: fill_interval / tokens_per_fill
	window    int64 // maxTokens * cost: the time a full refill takes
	empty     atomic.Int64
}

// New returns a full bucket of maxTokens refilled by tokensPerFill every
// fillInterval (continuously), created at now (a Now reading).
func New(maxTokens, tokensPerFill uint32, fillInterval time.Duration, now int64) *Bucket {
	if tokensPerFill == 0 {
		tokensPerFill = 1
	}
	cost := int64(fillInterval) / int64(tokensPerFill)
	if cost < 1 {
		cost = 1
	}
	window := int64(math.MaxInt64 / 4)
	if int64(maxTokens) < window/cost {
		window = int64(maxTokens) * cost
	}
	b := &Bucket{maxTokens: uint64(maxTokens), cost: cost, window: window}
	b.empty.Store(now - window)
	return b
}

// Consume takes one token at now and reports whether there was one.
func (b *Bucket) Consume(now int64) bool {
	for {
		e := b.empty.Load()
		base := e
		if now-base > b.window {
			base = now - b.window // full: tokens beyond max_tokens are lost
		}
		if now-base < b.cost {
			return false
		}
		if b.empty.CompareAndSwap(e, base+b.cost) {
			return true
		}
	}
}

// Remaining is the number of whole tokens at now.
func (b *Bucket) Remaining(now int64) uint64 {
	d := now - b.empty.Load()
	if d <= 0 {
		return 0
	}
	if d > b.window {
		d = b.window
	}
	return uint64(d / b.cost)
}

// UntilNext is how long until the next whole token is available (0 when
// one is).
func (b *Bucket) UntilNext(now int64) time.Duration {
	d := now - b.empty.Load()
	if d >= b.cost {
		return 0
	}
	return time.Duration(b.cost - d)
}

// ResetSeconds is Envoy's RateLimitTokenBucket::resetSeconds for the
// x-ratelimit-reset header: 0 while a token is available, else the time one
// token takes to refill, ceil'd to milliseconds and then divided by 1000 in
// integers (Envoy's std::ceil(ms / 1000) over integers truncates).
func (b *Bucket) ResetSeconds(now int64) uint64 {
	if b.Remaining(now) >= 1 {
		return 0
	}
	ms := (b.cost + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	return uint64(ms / 1000)
}
