// Package setfilterstate implements envoy.filters.network.set_filter_state:
// when a connection is accepted it sets filter state keys from
// substitution format strings (access-log command operators), e.g.
// envoy.network.upstream_server_name from %REQUESTED_SERVER_NAME% so that
// tcp_proxy's upstream TLS keeps the client's SNI.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/set_filter_state
// (API: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/set_filter_state/v3/set_filter_state.proto;
// keys: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/well_known_filter_state).
//
// It imports internal/ only, never another extension nor net/http.
package setfilterstate
