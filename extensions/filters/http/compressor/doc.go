// Package compressor implements envoy.filters.http.compressor: responses
// (and, with request_direction_config, requests) are compressed with the
// configured compressor library (gzip, brotli, zstd from
// internal/compression) when the client's accept-encoding, the content
// type, the length and the etag allow it. The body is compressed chunk by
// chunk and flushed per DATA frame, never buffered whole.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/compressor_filter
//
// It imports internal/ only, never another extension nor net/http.
package compressor
