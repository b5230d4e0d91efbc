package upstream

import (
	"context"
	"net"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network/sockio"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/registry"
)

// rawBufferTypeURL is the raw_buffer transport socket's config type.
const rawBufferTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"

// parseTransportSocket builds the cluster's transport_socket
// (UpstreamTlsContext through the transport socket registry); raw_buffer
// or none leaves c.transport nil, plaintext. It needs c.http (the ALPN a
// TLS socket offers by default follows the cluster's protocol, as Envoy's
// connection pools set it).
func (c *Cluster) parseTransportSocket(cfg *clusterv3.Cluster, path string, env buildEnv) configerr.List {
	ts := cfg.GetTransportSocket()
	if ts == nil || ts.GetTypedConfig().GetTypeUrl() == rawBufferTypeURL ||
		ts.GetTypedConfig() == nil && ts.GetName() == transportsocket.RawBufferName {
		return nil
	}
	p := path + ".transport_socket"
	entry, tcfg, ferr := registry.Resolve(transportsocket.UpstreamRegistry, func(e *transportsocket.UpstreamEntry) proto.Message { return e.NewConfig() },
		ts.GetName(), ts.GetTypedConfig(), p)
	if ferr != nil {
		return configerr.List{ferr}
	}
	alpn := c.http.defaultALPN() // upstream_protocol.go
	t, err := entry.Build(tcfg, transportsocket.BuildContext{
		Path:        p + ".typed_config",
		Stats:       env.store,
		Scope:       env.store.Scope("cluster." + c.observabilityName + "."),
		DefaultALPN: alpn,
		Secrets:     env.secrets,
	})
	if err != nil {
		return configerr.Collect(err, p+".typed_config", nil)
	}
	c.transport = t
	return nil
}

// secure runs the transport socket's handshake on a dialed connection
// within ctx (the connect timeout): Envoy raises the connection's
// Connected event only after the TLS handshake, so a failed handshake
// counts as a failed connect. TCP options are set on the socket first.
func (c *Cluster) secure(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		if c.keepAlive != nil {
			_ = tc.SetKeepAliveConfig(*c.keepAlive)
		}
	}
	sc, err := c.transport.Handshake(ctx, sockio.Wrap(conn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sc, nil
}
