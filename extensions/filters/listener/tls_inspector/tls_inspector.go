package tlsinspector

import (
	"errors"
	"strings"

	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.tls_inspector"

// defaultMaxClientHello is Envoy's limit: "If not defined, defaults to
// 16KiB" (tls_inspector.proto, max_client_hello_size).
const defaultMaxClientHello = 16 << 10

func init() {
	listenerfilter.Register(listenerfilter.Extension[*tlsinspectorv3.TlsInspector]{
		Name:   Name,
		Config: &tlsinspectorv3.TlsInspector{},
		Build:  build,
	})
}

// Filter is a built tls_inspector. Immutable.
type Filter struct {
	max        int
	closeOnErr bool
	// ja3: enable_ja3_fingerprinting (default false) records the client's
	// JA3 fingerprint on the connection.
	ja3   bool
	stats filterStats
}

var _ listenerfilter.Filter = (*Filter)(nil)

// filterStats are Envoy's tls_inspector.* stats
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/tls_inspector#statistics).
type filterStats struct {
	clientHelloTooLarge, tlsFound, tlsNotFound *stats.Counter
	alpnFound, alpnNotFound                    *stats.Counter
	sniFound, sniNotFound                      *stats.Counter
	bytesProcessed                             *stats.Histogram
}

func build(cfg *tlsinspectorv3.TlsInspector, ctx listenerfilter.BuildContext) (listenerfilter.Filter, error) {
	errs := configerr.CheckFields(cfg, ctx.Path, "initial_read_buffer_size", "close_connection_on_client_hello_parsing_errors", "max_client_hello_size",
		"enable_ja3_fingerprinting", "enable_ja4_fingerprinting")
	if cfg.GetEnableJa4Fingerprinting().GetValue() {
		errs = append(errs, configerr.At(ctx.Path+".enable_ja4_fingerprinting", "%s", configerr.NotSupported))
	}
	f := &Filter{
		max:        defaultMaxClientHello,
		closeOnErr: cfg.GetCloseConnectionOnClientHelloParsingErrors(),
		ja3:        cfg.GetEnableJa3Fingerprinting().GetValue(),
	}
	if v := cfg.GetMaxClientHelloSize(); v != nil {
		f.max = int(v.GetValue())
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	sc := ctx.Stats.Scope("tls_inspector.")
	f.stats = filterStats{
		clientHelloTooLarge: sc.Counter("client_hello_too_large"),
		tlsFound:            sc.Counter("tls_found"),
		tlsNotFound:         sc.Counter("tls_not_found"),
		alpnFound:           sc.Counter("alpn_found"),
		alpnNotFound:        sc.Counter("alpn_not_found"),
		sniFound:            sc.Counter("sni_found"),
		sniNotFound:         sc.Counter("sni_not_found"),
		bytesProcessed:      sc.Histogram("bytes_processed", stats.Unspecified),
	}
	return f, nil
}

// MaxReadBytes implements listenerfilter.Filter: the ClientHello limit plus
// its record headers.
func (f *Filter) MaxReadBytes() int { return f.max }

// OnData implements listenerfilter.Filter.
func (f *Filter) OnData(c *network.Conn, data []byte) listenerfilter.Status {
	h, complete, err := parseClientHello(data)
	switch {
	case errors.Is(err, errNotTLS), errors.Is(err, errMalformed):
		f.stats.tlsNotFound.Inc()
		f.stats.bytesProcessed.Record(uint64(len(data)))
		if f.closeOnErr {
			return listenerfilter.Close
		}
		return listenerfilter.Continue
	case !complete:
		if len(data) >= f.max {
			f.stats.clientHelloTooLarge.Inc()
			if f.closeOnErr {
				return listenerfilter.Close
			}
			return listenerfilter.Continue
		}
		return listenerfilter.NeedMoreData
	}
	f.stats.bytesProcessed.Record(uint64(len(data)))
	f.stats.tlsFound.Inc()
	c.TransportProtocol = "tls"
	if h.serverName != "" {
		f.stats.sniFound.Inc()
		// Envoy compares server names lowercase.
		c.ServerName = strings.ToLower(h.serverName)
	} else {
		f.stats.sniNotFound.Inc()
	}
	if len(h.alpn) > 0 {
		f.stats.alpnFound.Inc()
		c.RequestedALPN = h.alpn
	} else {
		f.stats.alpnNotFound.Inc()
	}
	if f.ja3 {
		if hash, ok := ja3(h.body); ok {
			c.JA3Hash = hash
		}
	}
	return listenerfilter.Continue
}
