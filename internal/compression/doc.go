// Package compression holds the compressor and decompressor libraries the
// compressor and decompressor HTTP filters use (Envoy's
// envoy.compression.{gzip,brotli,zstd}.{compressor,decompressor}
// extensions), registered by type URL and name, and the streaming
// Compressor and Decompressor they build.
//
// The libraries live here rather than as extension folders because an
// extension may not import another one: the filters look them up in this
// registry.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/compression/gzip/compressor/v3/gzip.proto
// (and the brotli and zstd pages next to it).
//
// It must not import extensions/ nor net/http.
package compression
