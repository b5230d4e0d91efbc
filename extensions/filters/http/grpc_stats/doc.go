// Package grpcstats implements envoy.filters.http.grpc_stats: telemetry of
// gRPC calls under cluster.<cluster>.grpc. — success, failure, total and
// per-grpc-status counters, request and response message counts (gRPC frame
// boundaries are tracked across DATA chunks) and, with
// enable_upstream_stats, the upstream_rq_time histogram; optionally
// prefixed with <service>.<method>. for every method or an allowlist.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/grpc_stats_filter
// (source/extensions/filters/http/grpc_stats/grpc_stats_filter.cc and
// source/common/grpc/context_impl.cc for the stat names).
//
// It imports internal/ only, never another extension nor net/http.
package grpcstats
