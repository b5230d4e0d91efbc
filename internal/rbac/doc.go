// Package rbac is the policy engine shared by envoy.filters.http.rbac and
// envoy.filters.network.rbac: it compiles an envoy.config.rbac.v3.RBAC
// (policies of permission and principal trees) once per snapshot into an
// Engine, and decides a Request (headers, when there are any, plus the
// connection's addresses, SNI and TLS peer certificate, and the stream's
// dynamic metadata for metadata rules) without
// allocating. It is Envoy's source/extensions/filters/common/rbac.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/rbac/v3/rbac.proto
//
// It must not import extensions/ nor net/http.
package rbac
