// Package stats is the process-wide store of counters, gauges and histograms
// under Envoy's stat names, with Envoy's tag extraction and Envoy's /stats
// (text, JSON) and /stats/prometheus outputs.
//
// Envoy pages it implements:
//   - https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/observability/statistics
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto
//     (stats_config.stats_tags, use_all_default_tags: TagSpec, NewTagExtractor)
//   - https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats
//     (WriteText, WriteJSON) and #get--stats-prometheus (WritePrometheus)
//
// Default tags are Envoy's well_known_names.cc (regex and tokenized
// extractors, same order, same prefix dispatch). Tags are extracted once,
// when a stat is created, and stored on it with its Prometheus name and
// labels; a scrape only sorts and writes. Updates (Inc, Add, Set, Record)
// are lock-free and allocation-free.
//
// Known simplifications: histograms keep counts per DefaultBuckets bound
// rather than Envoy's circllhist, so quantiles are interpolated inside those
// buckets; "interval" quantiles cover the span between the last two
// Store.MergeHistograms calls while "cumulative" ones are live; text
// readouts, custom stat namespaces, hidden stats, histogram_buckets= and
// histogram_emit_mode= are not implemented.
//
// It imports nothing of herald's and must not import net/http.
package stats
