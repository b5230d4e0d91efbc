// Package outlier is herald's outlier detection: it interprets a cluster's
// outlier_detection (config.go), keeps per-host passive counters that the
// request path feeds with atomic adds only (monitor.go), and runs Envoy's
// detector (detector.go): consecutive 5xx, consecutive gateway failure and
// consecutive local-origin failure ejections as they happen; success rate
// and failure percentage ejections, un-ejection after the (growing, capped,
// jittered) ejection time, and the ejection time back-off decay on every
// interval.
//
// The cluster owns a Detector: it hands it one Monitor per host (each
// wrapping a Host whose /failed_outlier_check flag the detector sets and
// clears), and the detector reports ejection changes through
// Options.OnChange so the cluster can rebuild its host set. Host flags live
// behind the Host interface, so this package needs nothing from
// internal/upstream.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/outlier_detection.proto;
// behaviour follows source/common/upstream/outlier_detection_impl.{h,cc} of
// envoyproxy/envoy. Stats:
// https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats#outlier-detection-statistics
//
// It must not import internal/upstream, extensions/, nor net/http.
package outlier
