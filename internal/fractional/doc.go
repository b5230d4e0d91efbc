// Package fractional compiles Envoy's FractionalPercent and
// RuntimeFractionalPercent once per snapshot and draws against them on the
// request path without locks or allocations (CORS filter_enabled, fault
// percentage, local_ratelimit filter_enabled/filter_enforced).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/v3/percent.proto#type-v3-fractionalpercent
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/base.proto#config-core-v3-runtimefractionalpercent
//
// It must not import extensions/ nor net/http.
package fractional
