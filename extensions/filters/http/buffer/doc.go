// Package buffer implements envoy.filters.http.buffer: it holds the whole
// request body before passing the request on, answering 413 when the body
// exceeds max_request_bytes, and sets content-length on the buffered
// request. It buffers through httpfilter.Callbacks.BufferRequestBody.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/buffer_filter
//
// It imports internal/ only, never another extension nor net/http.
package buffer
