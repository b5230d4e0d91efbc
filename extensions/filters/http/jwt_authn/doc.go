// Package jwtauthn implements envoy.filters.http.jwt_authn: it verifies
// the JSON Web Tokens of requests (signature against a provider's JWKS,
// issuer, audiences, exp/nbf) under the requirement of the first matching
// rule or of the route's PerRouteConfig, refusing a request that fails
// with Envoy's 401 (403 for audiences) and forwarding what a verified
// token carries (payload header, claims as headers, dynamic metadata).
// JWKS come from the config (local_jwks) or from a cluster (remote_jwks,
// fetched through internal/router's AsyncClient and cached per config);
// signatures are checked with github.com/go-jose/go-jose/v4.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/jwt_authn_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto)
//
// It imports internal/ only, never another extension nor net/http.
package jwtauthn
