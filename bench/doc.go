// Package bench is herald's side-by-side load harness (issue #3): it writes
// equivalent reverse-proxy configurations for herald (Envoy v3 YAML), nginx
// and HAProxy, parses the output of the load generators (wrk, h2load) and of
// /proc, summarises rounds (median, min, max) and renders BENCHMARKS.md and a
// PNG chart. The command that drives real processes is bench/cmd/loadbench;
// this package itself starts nothing, so its unit tests run in `go test ./...`
// without the Debian packages.
//
// It is a tool outside the proxy: it must not import herald's internal
// packages (the proxy is measured as a black box, built from ./cmd/herald).
package bench
