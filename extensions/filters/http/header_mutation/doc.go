// Package headermutation implements envoy.filters.http.header_mutation:
// request and response (and trailer) header mutations from the filter
// config and from every level's typed_per_filter_config.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/header_mutation_filter
//
// It imports internal/ only, never another extension nor net/http.
// Appended headers are compiled by internal/http/headeroption (literal
// values only).
package headermutation
