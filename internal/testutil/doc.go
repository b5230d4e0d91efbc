// Package testutil is for tests only: it builds and runs the real herald
// binary on loopback, starts backends, and polls with deadlines (tests
// never sleep to wait). It may import net/http: it is never linked into
// herald.
package testutil
