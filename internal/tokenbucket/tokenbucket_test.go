package tokenbucket

import (
	"sync"
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	const s = int64(time.Second)
	tests := []struct {
		name      string
		max, fill uint32
		interval  time.Duration
		// steps: consume at these offsets from the start; want the results.
		at   []int64
		want []bool
	}{
		{
			name: "starts full then empties", max: 2, fill: 1, interval: time.Second,
			at:   []int64{0, 0, 0},
			want: []bool{true, true, false},
		},
		{
			// One token per second: after half a second there is none yet.
			name: "refills continuously", max: 1, fill: 1, interval: time.Second,
			at:   []int64{0, s / 2, s, s + s/2, 2 * s},
			want: []bool{true, false, true, false, true},
		},
		{
			// Idle time beyond a full refill does not store more than max_tokens.
			name: "capped at max_tokens", max: 2, fill: 2, interval: time.Second,
			at:   []int64{100 * s, 100 * s, 100 * s},
			want: []bool{true, true, false},
		},
		{
			name: "tokens_per_fill divides the interval", max: 4, fill: 4, interval: time.Second,
			at:   []int64{0, 0, 0, 0, 0, s / 4},
			want: []bool{true, true, true, true, false, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const start = int64(1e12)
			b := New(tc.max, tc.fill, tc.interval, start)
			for i, at := range tc.at {
				if got := b.Consume(start + at); got != tc.want[i] {
					t.Errorf("consume #%d at +%v = %v, want %v", i, time.Duration(at), got, tc.want[i])
				}
			}
		})
	}
}

func TestTokenBucketHeaders(t *testing.T) {
	const start = int64(1e12)
	b := New(3, 1, 2*time.Second, start)
	if got := b.Remaining(start); got != 3 {
		t.Errorf("remaining when full = %d, want 3", got)
	}
	b.Consume(start)
	if got, want := b.Remaining(start), uint64(2); got != want {
		t.Errorf("remaining = %d, want %d", got, want)
	}
	if got := b.ResetSeconds(start); got != 0 {
		t.Errorf("resetSeconds with tokens left = %d, want 0", got)
	}
	b.Consume(start)
	b.Consume(start)
	if got := b.ResetSeconds(start); got != 2 {
		t.Errorf("resetSeconds when empty = %d, want 2 (one token takes 2s)", got)
	}
	if got := b.UntilNext(start + int64(500*time.Millisecond)); got != 1500*time.Millisecond {
		t.Errorf("untilNext = %v, want 1.5s", got)
	}
}

// TestTokenBucketConcurrent: goroutines racing for tokens take exactly
// max_tokens of them (run with -race).
func TestTokenBucketConcurrent(t *testing.T) {
	const start = int64(1e12)
	b := New(1000, 1, time.Hour, start)
	var wg sync.WaitGroup
	var mu sync.Mutex
	took := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for i := 0; i < 500; i++ {
				if b.Consume(start) {
					n++
				}
			}
			mu.Lock()
			took += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if took != 1000 {
		t.Errorf("goroutines took %d tokens, want 1000", took)
	}
}
