// Package headertometadata implements envoy.filters.http.header_to_metadata:
// request and response rules that copy a header's or a cookie's value (or a
// fixed value when it is missing) into the stream's dynamic metadata, where
// later filters (rbac's metadata matcher, ext_authz) and the access log
// (%DYNAMIC_METADATA(ns:key)%) read it. Rules are compiled once per
// snapshot; a filter or a route's typed_per_filter_config supplies them.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/header_to_metadata_filter
// (source/extensions/filters/http/header_to_metadata/header_to_metadata_filter.cc).
//
// It imports internal/ only, never another extension nor net/http.
package headertometadata
