// Package grpcweb implements envoy.filters.http.grpc_web: gRPC-Web clients
// (application/grpc-web, application/grpc-web+proto and the base64 text
// variants application/grpc-web-text[+proto]) reach gRPC upstreams. The
// request becomes application/grpc with te: trailers (text bodies are
// base64-decoded as they stream); the response's trailers become a gRPC-Web
// trailer frame at the end of the body, and a response that is not gRPC (a
// local reply, an HTTP error) becomes grpc-status and grpc-message headers.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/grpc_web_filter
// (source/extensions/filters/http/grpc_web/grpc_web_filter.cc).
//
// It imports internal/ only, never another extension nor net/http.
package grpcweb
