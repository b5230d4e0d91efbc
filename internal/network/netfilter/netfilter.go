// Package netfilter is what a network filter implements and how it
// registers. A listener's filter chain runs its filters' OnNewConnection in
// order, then hands the connection to the terminal filter's ServeConn
// (http_connection_manager, tcp_proxy), which owns it until it closes.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/network_filters
//
// It must not import extensions/ nor net/http.
package netfilter

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

// Filter is a built network filter, shared by every connection of its
// filter chain; it keeps no per-connection state of its own.
type Filter any

// ConnectionFilter is a non-terminal filter that acts when a connection is
// accepted (rbac, local rate limit). It returns false to close the
// connection; it may replace c.Conn with a wrapper to see the bytes.
type ConnectionFilter interface {
	OnNewConnection(c *network.Conn) bool
}

// Terminal is the last filter of a chain; ServeConn owns the connection
// until it returns, and closes it.
type Terminal interface {
	ServeConn(c *network.Conn)
}

// BuildContext is what a network filter may use when built, once per snapshot.
type BuildContext struct {
	// Path is the YAML path of the filter's typed_config, for errors.
	Path string
	// ListenerName is the listener's name; StatListenerPrefix is
	// "listener.<address>." for stats.
	ListenerName string
	Stats        *stats.Store
	// Clusters is the cluster manager (*upstream.Manager).
	Clusters any
	// Server carries process-wide services; its concrete type is owned by
	// internal/server.
	Server any
}

// Extension is one network filter kind.
type Extension[C proto.Message] struct {
	Name     string
	Config   C
	Build    func(cfg C, ctx BuildContext) (Filter, error)
	Terminal bool
}

// Entry is a registered extension with its config type erased.
type Entry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Filter, error)
	Terminal  bool
}

// Registry holds every network filter.
var Registry = registry.New[*Entry]("network filter")

// Register adds a network filter; call it from the extension's init.
func Register[C proto.Message](e Extension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("netfilter: %s registered without Build", e.Name))
	}
	Registry.Register(e.Name, e.Config, &Entry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Filter, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
		Terminal: e.Terminal,
	})
}
