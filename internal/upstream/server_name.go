package upstream

// FilterStateUpstreamServerName is the downstream connection's filter
// state key whose string value is the SNI of the upstream TLS connections
// made for it (tcp_proxy), in place of UpstreamTlsContext.sni: Envoy's
// well-known envoy.network.upstream_server_name
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/well_known_filter_state),
// which becomes the transport socket options' serverNameOverride, and
// ClientContextImpl::newSsl prefers that override to the context's sni
// (source/common/tls/context_impl.cc). Set by
// envoy.filters.network.set_filter_state; pass it to DialTLS as
// TLSOptions.ServerName.
const FilterStateUpstreamServerName = "envoy.network.upstream_server_name"
