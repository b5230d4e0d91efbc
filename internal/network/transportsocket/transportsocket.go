package transportsocket

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
)

// RawBufferName is Envoy's plaintext transport socket, herald's default.
const RawBufferName = "envoy.transport_sockets.raw_buffer"

// Downstream is a built downstream transport socket, one per filter chain,
// shared by its connections. Immutable.
type Downstream interface {
	// ForListener returns the socket a listener uses, counting its stats
	// under scope ("listener.<address>."). Called once when the listener
	// starts, never per connection.
	ForListener(scope stats.Scope) DownstreamSocket
}

// DownstreamSocket secures accepted connections of one listener.
type DownstreamSocket interface {
	// Handshake secures c (the accepted socket, with any bytes listener
	// filters read replayed first) before deadline (zero: none). On
	// success it returns the connection network filters read and what was
	// negotiated; on failure the caller closes c.
	Handshake(c net.Conn, deadline time.Time) (net.Conn, Negotiated, error)
}

// Negotiated is what a handshake settled.
type Negotiated struct {
	// ServerName is the SNI the client sent ("" when none).
	ServerName string
	// ALPN is the negotiated application protocol ("" when none).
	ALPN string
	// LocalCertificate is the leaf certificate presented to the client,
	// nil when the socket does not report it.
	LocalCertificate *x509.Certificate
}

// Upstream is a built upstream transport socket, one per cluster, shared
// by the connections to its hosts. Immutable.
type Upstream interface {
	// Handshake secures a dialed connection until ctx ends (the cluster's
	// connect_timeout). On failure the caller closes c.
	Handshake(ctx context.Context, c net.Conn) (net.Conn, error)
}

// BuildContext is what a transport socket may use when built, once per
// snapshot.
type BuildContext struct {
	// Path is the YAML path of the socket's typed_config, for errors.
	Path string
	// Stats is the store; Scope is where an upstream socket counts its
	// stats ("cluster.<name>."). Downstream sockets get their scope from
	// ForListener.
	Stats *stats.Store
	Scope stats.Scope
	// DefaultALPN is what an upstream socket offers when alpn_protocols is
	// empty: the cluster's protocol ("h2" or "http/1.1"), or nil.
	DefaultALPN []string
	// Secrets is the server's secret manager (static secrets and SDS
	// providers); nil refuses SDS secret references.
	Secrets *secret.Manager
}

// DownstreamExtension is one downstream transport socket kind.
type DownstreamExtension[C proto.Message] struct {
	Name   string
	Config C
	Build  func(cfg C, ctx BuildContext) (Downstream, error)
}

// UpstreamExtension is one upstream transport socket kind.
type UpstreamExtension[C proto.Message] struct {
	Name   string
	Config C
	Build  func(cfg C, ctx BuildContext) (Upstream, error)
}

// DownstreamEntry is a registered downstream socket with its config type
// erased.
type DownstreamEntry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Downstream, error)
}

// UpstreamEntry is a registered upstream socket with its config type erased.
type UpstreamEntry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Upstream, error)
}

// DownstreamRegistry and UpstreamRegistry hold every transport socket.
var (
	DownstreamRegistry = registry.New[*DownstreamEntry]("downstream transport socket")
	UpstreamRegistry   = registry.New[*UpstreamEntry]("upstream transport socket")
)

// RegisterDownstream adds a downstream transport socket; call it from the
// extension's init.
func RegisterDownstream[C proto.Message](e DownstreamExtension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("transportsocket: %s registered without Build", e.Name))
	}
	DownstreamRegistry.Register(e.Name, e.Config, &DownstreamEntry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Downstream, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
	})
}

// RegisterUpstream adds an upstream transport socket; call it from the
// extension's init.
func RegisterUpstream[C proto.Message](e UpstreamExtension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("transportsocket: %s registered without Build", e.Name))
	}
	UpstreamRegistry.Register(e.Name, e.Config, &UpstreamEntry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Upstream, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
	})
}
