// Package decompressor implements envoy.filters.http.decompressor: request
// and response bodies whose content-encoding names the configured
// decompressor library (gzip, brotli, zstd from internal/compression) are
// decompressed chunk by chunk and passed on (InjectDecodedData for
// requests, Callbacks.EncodeData for responses), never buffered whole; the
// request advertises the encoding in accept-encoding.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/decompressor_filter
//
// It imports internal/ only, never another extension nor net/http.
package decompressor
