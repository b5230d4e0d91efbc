package snapshot

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/listener"
)

// QUIC listeners: a UDP address with udp_listener_config.quic_options,
// chains secured by envoy.transport_sockets.quic and served by an
// http_connection_manager with codec_type HTTP3
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3).

var (
	udpListenerConfigFields = []string{"quic_options", "downstream_socket_config"}
	// prefer_gro: quic-go uses UDP GRO on its own where the kernel has it,
	// so Envoy's hint (set in its HTTP/3 example config) changes nothing.
	udpSocketConfigFields = []string{"prefer_gro"}
	quicOptionsFields     = []string{"quic_protocol_options", "idle_timeout", "crypto_handshake_timeout"}
	quicProtocolFields    = []string{"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size"}
)

// quicTransportName is the QUIC transport socket's Envoy name.
const quicTransportName = "envoy.transport_sockets.quic"

// hcmConfig is implemented by the built http_connection_manager.
type hcmConfig interface {
	Config() *connmgr.Config
}

// buildQUIC sets cfg up as a QUIC listener when l's address is UDP and
// checks that TCP and UDP listeners each carry only what they can serve.
func buildQUIC(l *listenerv3.Listener, cfg *listener.Config, path string) configerr.List {
	udp := l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP
	var errs configerr.List
	if !udp {
		if l.GetUdpListenerConfig() != nil {
			errs = append(errs, configerr.At(path+".udp_listener_config", "udp_listener_config needs a UDP address (socket_address.protocol: UDP)"))
		}
		forEachChain(l, cfg, path, func(fc *listener.FilterChain, fpath string) {
			if _, ok := fc.Transport.(listener.QUICTransport); ok {
				errs = append(errs, configerr.At(fpath+".transport_socket", "%s needs a QUIC listener (UDP address with udp_listener_config.quic_options)", quicTransportName))
			}
			if h, ok := fc.Terminal.(hcmConfig); ok && h.Config().Codec == connmgr.HTTP3 {
				// Envoy: "HTTP/3 codec configured on non-QUIC listener."
				errs = append(errs, configerr.At(fpath, "HTTP/3 codec configured on non-QUIC listener"))
			}
		})
		return errs
	}
	upath := path + ".udp_listener_config"
	u := l.GetUdpListenerConfig()
	errs = append(errs, configerr.RejectUnlisted(u, upath, nil, udpListenerConfigFields...)...)
	errs = append(errs, configerr.RejectUnlisted(u.GetDownstreamSocketConfig(), upath+".downstream_socket_config", nil, udpSocketConfigFields...)...)
	q := u.GetQuicOptions()
	if q == nil {
		// Without quic_options Envoy runs UDP listener filters (udp_proxy).
		return append(errs, configerr.At(upath+".quic_options", "UDP listeners without quic_options (udp_proxy) are %s", configerr.NotSupported))
	}
	qpath := upath + ".quic_options"
	errs = append(errs, configerr.RejectUnlisted(q, qpath, nil, quicOptionsFields...)...)
	errs = append(errs, configerr.RejectUnlisted(q.GetQuicProtocolOptions(), qpath+".quic_protocol_options", nil, quicProtocolFields...)...)
	if len(l.GetListenerFilters()) > 0 {
		errs = append(errs, configerr.At(path+".listener_filters", "listener filters on QUIC listeners are %s", configerr.NotSupported))
	}
	opts := listener.DefaultQUICOptions()
	if d := q.GetIdleTimeout(); d != nil {
		opts.IdleTimeout = d.AsDuration()
	}
	if d := q.GetCryptoHandshakeTimeout(); d != nil {
		opts.HandshakeTimeout = d.AsDuration()
	}
	po := q.GetQuicProtocolOptions()
	if v := po.GetMaxConcurrentStreams(); v != nil {
		opts.MaxConcurrentStreams = v.GetValue()
	}
	if v := po.GetInitialStreamWindowSize(); v != nil {
		opts.StreamWindow = v.GetValue()
	}
	if v := po.GetInitialConnectionWindowSize(); v != nil {
		opts.ConnectionWindow = v.GetValue()
	}
	cfg.Network = "udp"
	cfg.QUIC = opts
	forEachChain(l, cfg, path, func(fc *listener.FilterChain, fpath string) {
		if _, ok := fc.Transport.(listener.QUICTransport); !ok {
			errs = append(errs, configerr.At(fpath+".transport_socket", "a QUIC listener's filter chain needs transport_socket %s", quicTransportName))
		}
		h, ok := fc.Terminal.(hcmConfig)
		switch {
		case !ok:
			errs = append(errs, configerr.At(fpath+".filters", "a QUIC listener's filter chain must end with envoy.filters.network.http_connection_manager (%s for other terminals)", configerr.NotSupported))
		case h.Config().Codec != connmgr.HTTP3:
			// Envoy: "Non-HTTP/3 codec configured on QUIC listener."
			errs = append(errs, configerr.At(fpath, "Non-HTTP/3 codec configured on QUIC listener (set codec_type: HTTP3)"))
		}
	})
	return errs
}

// forEachChain calls fn for every built chain of cfg with its YAML path.
func forEachChain(l *listenerv3.Listener, cfg *listener.Config, path string, fn func(fc *listener.FilterChain, fpath string)) {
	// cfg.Chains holds the chains that built, in config order; a chain
	// that failed is already an error, so paths are matched by name and
	// position only when every chain built.
	if len(cfg.Chains) == len(l.GetFilterChains()) {
		for i, fc := range cfg.Chains {
			fn(fc, fmt.Sprintf("%s.filter_chains[%d]", path, i))
		}
	}
	if cfg.Default != nil {
		fn(cfg.Default, path+".default_filter_chain")
	}
}
