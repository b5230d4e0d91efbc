// Package grpchttp1bridge implements envoy.filters.http.grpc_http1_bridge:
// HTTP/1.1 clients that cannot read trailers call gRPC upstreams. The gRPC
// response is buffered until its trailers, whose grpc-status and
// grpc-message become response headers (any non-zero grpc-status turns the
// HTTP status into 503) with a content-length. With
// upgrade_protobuf_to_grpc, application/x-protobuf requests are framed as
// gRPC and the frame header is stripped from the response.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/grpc_http1_bridge_filter
// (source/extensions/filters/http/grpc_http1_bridge/http1_bridge_filter.cc).
//
// It imports internal/ only, never another extension nor net/http.
package grpchttp1bridge
