package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout is how long Main waits for watched goroutines to end when
// Goroutines.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// Goroutines says which goroutines must not outlive a package's tests, by
// substrings of their stack traces.
type Goroutines struct {
	// Watch lists substrings (usually "<import path>." or
	// "<import path>.(*Type).method") marking a goroutine that must end
	// before the tests do.
	Watch []string
	// Ignore lists substrings of goroutines that are never leaks, even when
	// they match Watch (e.g. a test server's own goroutines).
	Ignore []string
	// Timeout is how long Main waits for watched goroutines to end; 0 is
	// DefaultTimeout.
	Timeout time.Duration
}

// Main runs m's tests and, when they pass, fails the run (exit status 1,
// stacks on stderr) if a watched goroutine is still running after the
// timeout. It does not return: call it last in TestMain.
func Main(m *testing.M, g Goroutines) {
	code := m.Run()
	if code == 0 {
		timeout := g.Timeout
		if timeout == 0 {
			timeout = DefaultTimeout
		}
		if leaked := g.Wait(timeout); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Wait polls Leaked until it is "" or timeout has passed, and returns its
// last result.
func (g Goroutines) Wait(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := g.Leaked()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		<-tick.C
	}
}

// Leaked returns the stacks of the running goroutines, other than the
// caller's, that match Watch and not Ignore, separated by blank lines; ""
// when there are none.
func (g Goroutines) Leaked() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// runtime.Stack puts the calling goroutine first.
	stacks := strings.Split(string(buf), "\n\n")[1:]
	var out []string
	for _, s := range stacks {
		if containsAny(s, g.Watch) && !containsAny(s, g.Ignore) {
			out = append(out, s)
		}
	}
	return strings.Join(out, "\n\n")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
