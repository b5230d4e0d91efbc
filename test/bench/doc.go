// Package bench holds Go benchmarks of herald's proxied request path. It
// has no code of its own: every benchmark lives in a _test.go file and runs
// herald in-process (bootstrap.Load → upstream.Manager.Apply →
// snapshot.Build → listener.Start, as internal/server does) so that
// testing.B's allocation counters see herald's allocations.
//
// The backends and clients are raw TCP code written for the benchmarks
// (no net/http), so nearly every allocation counted is herald's. A
// BenchmarkDirect baseline measures the client and backend alone.
//
// See README.md for how to run them and the figures measured.
//
// It must not be imported; it may import internal/ and extensions/all
// from its tests only.
package bench
