// Package extauthz implements envoy.filters.http.ext_authz: every request
// (optionally with its buffered body) is checked with an external
// authorization service, over gRPC (envoy.service.auth.v3.Authorization) or
// plain HTTP through a cluster, before the filters after it see it. An
// allowed request continues with the service's header mutations; a denied
// one gets the service's status, headers and body; a failed check is a 403
// (status_on_error) unless failure_mode_allow.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/ext_authz_filter
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto,
// service: https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/auth/v3/external_auth.proto)
//
// The check runs on the stream's goroutine and blocks only that stream.
// It imports internal/ only, never another extension nor net/http.
package extauthz
