// Package stats is the process-wide store of counters, gauges and histograms
// under Envoy's stat names, with Envoy's text and Prometheus outputs and tag
// extraction.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/observability/statistics
//
// It imports nothing of herald's.
package stats
