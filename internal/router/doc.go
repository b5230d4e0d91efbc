// Package router owns compiled route tables and (later) the router engine
// that forwards a matched request upstream. The route-table half turns a
// route.v3.RouteConfiguration into an immutable Table once per snapshot:
// virtual hosts selected by :authority, routes matched first-match-wins, and
// each route's action (cluster, direct_response, redirect) with its rewrites,
// header mutations and typed_per_filter_config. Nothing here parses config
// per request; Match allocates nothing for prefix, path and header routes.
//
// It implements Envoy's HTTP routing
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_routing)
// and route components
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto).
// Fields herald does not implement yet are rejected by name (see
// unsupportedFields in route_table_unsupported.go), never ignored. Two are
// accepted without effect, as in Envoy without the feature they feed:
// Route.decorator (tracing only; herald has no tracer). RouteAction.hash_policy
// is compiled once (hash_policy.go) and evaluated only for clusters whose load
// balancer hashes (ring_hash, maglev), as in Envoy.
//
// The forwarding engine (forward.go, retry_attempt.go) applies the
// cluster's circuit breakers (max_requests, max_pending_requests,
// max_connections, max_retries) and the route's retry policy, per-try
// timeouts and x-envoy-* request header overrides, as Envoy's router
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter).
//
// Request mirroring (request_mirror_policies on the route configuration,
// virtual host or route; mirror.go) sends a fire-and-forget copy of the
// request, body and trailers included, to a shadow cluster through the
// async client (asyncclient.go) with the host suffixed "-shadow", as
// Envoy's router and shadow writer. Route priority (priority.go) selects
// the cluster's DEFAULT or HIGH circuit breakers. hedge_policy's
// hedge_on_per_try_timeout (hedge.go) keeps an attempt open past its
// per-try timeout while a retry races it; the first good response wins.
//
// Matching scans routes in order (first match wins, as Envoy); runs of eight
// or more routes that match on a case-sensitive prefix or path alone are
// indexed by prefix length (route_table_index.go) with the same result.
//
// It must not import extensions/ nor net/http.
package router
