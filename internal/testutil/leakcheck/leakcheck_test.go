package leakcheck_test

import (
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// parkedWorker blocks until stop is closed; its name marks its stack.
func parkedWorker(started chan<- struct{}, stop <-chan struct{}) {
	close(started)
	<-stop
}

// ignoredWorker is parkedWorker under another name.
func ignoredWorker(started chan<- struct{}, stop <-chan struct{}) {
	parkedWorker(started, stop)
}

func TestLeaked(t *testing.T) {
	const watched = "leakcheck_test.parkedWorker"
	tests := []struct {
		name       string
		g          leakcheck.Goroutines
		run        func(started chan<- struct{}, stop <-chan struct{})
		wantLeaked bool
	}{
		{
			name:       "watched goroutine is a leak",
			g:          leakcheck.Goroutines{Watch: []string{watched}},
			run:        parkedWorker,
			wantLeaked: true,
		},
		{
			name: "ignored goroutine is not",
			g:    leakcheck.Goroutines{Watch: []string{watched}, Ignore: []string{"leakcheck_test.ignoredWorker"}},
			run:  ignoredWorker,
		},
		{
			name: "unwatched goroutine is not",
			g:    leakcheck.Goroutines{Watch: []string{"no/such/package."}},
			run:  parkedWorker,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started, stop := make(chan struct{}), make(chan struct{})
			go tc.run(started, stop)
			<-started
			got := tc.g.Leaked()
			close(stop)
			if (got != "") != tc.wantLeaked {
				t.Fatalf("Leaked() = %q, want a leak: %v", got, tc.wantLeaked)
			}
			if tc.wantLeaked && !strings.Contains(got, watched) {
				t.Errorf("Leaked() = %q, want it to contain %q", got, watched)
			}
			// Once stopped, the goroutine is gone within the deadline.
			if left := tc.g.Wait(5 * time.Second); left != "" {
				t.Errorf("Wait after stop = %q, want none", left)
			}
		})
	}
}

// leakedFrom calls g.Leaked; its name marks the caller's stack.
func leakedFrom(g leakcheck.Goroutines) string { return g.Leaked() }

// TestLeakedSkipsCaller checks that the calling goroutine (TestMain's, in
// Main) is never reported, though it matches Watch.
func TestLeakedSkipsCaller(t *testing.T) {
	g := leakcheck.Goroutines{Watch: []string{"leakcheck_test.leakedFrom"}}
	if got := leakedFrom(g); got != "" {
		t.Fatalf("Leaked() = %q, want the caller left out", got)
	}
}

func TestWaitTimesOut(t *testing.T) {
	started, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go parkedWorker(started, stop)
	<-started
	g := leakcheck.Goroutines{Watch: []string{"leakcheck_test.parkedWorker"}}
	if got := g.Wait(50 * time.Millisecond); got == "" {
		t.Fatal("Wait returned no leak while the goroutine still runs")
	}
}
