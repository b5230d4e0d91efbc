// Package fault implements envoy.filters.http.fault: it delays and aborts
// requests (HTTP or gRPC status), for a configured percentage of them or as
// the x-envoy-fault-* request headers ask, to test how services cope.
//
// A delay blocks only the stream's goroutine and ends early when the stream
// is aborted (Callbacks.Context).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/fault_filter
//
// It imports internal/ only, never another extension nor net/http.
package fault
