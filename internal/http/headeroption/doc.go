// Package headeroption compiles Envoy core.v3.HeaderValueOption lists
// (header, append_action, the deprecated append, keep_empty_value) once per
// snapshot and applies them to a header map, for the HTTP filters that add
// headers with literal values (header_mutation, local_ratelimit).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/base.proto#config-core-v3-headervalueoption
//
// internal/router keeps its own compiler (headers_mutation.go): route
// headers_to_add expand command operators, reject ":"-prefixed and host
// headers, and apply a level's additions in two passes
// (HeaderParser::evaluateHeaders: every condition sees the headers before
// the level's additions), while this package applies options one after the
// other, as Envoy's Http::HeaderMutations does.
//
// It must not import extensions/ nor net/http.
package headeroption
