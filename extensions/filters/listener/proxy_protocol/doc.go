// Package proxyprotocol implements envoy.filters.listener.proxy_protocol:
// it reads the HAProxy PROXY protocol header (v1 text or v2 binary) a load
// balancer sends before the client's bytes, consumes it, and sets the
// connection's remote (source) and local (destination) addresses from it,
// so access logs, x-forwarded-for and filter_chain_match see the client.
// The socket peer stays in network.Conn.DirectRemote. rules copy v2 TLVs
// into the connection's dynamic metadata (filter state
// streaminfo.FilterStateDynamicMetadata) and pass_through_tlvs keeps them
// under FilterStateKey (tlv.go).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/proxy_protocol
// Protocol: https://www.haproxy.org/download/1.9/doc/proxy-protocol.txt
//
// It imports internal/ only.
package proxyprotocol
