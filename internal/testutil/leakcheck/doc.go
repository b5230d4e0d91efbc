// Package leakcheck is for tests only: a TestMain helper that fails a
// package's test run when goroutines the package must stop (health
// checkers, detectors, codec loops) outlive its tests, grpc-go's leakcheck
// idea. It is a package of its own, on the standard library only, so that
// low-level packages can use it without importing internal/testutil.
//
// It must not import anything outside the standard library.
package leakcheck
