package listenerfilter

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

// Status is what a filter's OnData decided.
type Status int

const (
	// Continue: the filter is done; the next filter runs (or the filter
	// chain is matched).
	Continue Status = iota
	// NeedMoreData: the filter must see more bytes; the listener reads
	// more (up to MaxReadBytes, within listener_filters_timeout) and calls
	// OnData again with all bytes so far.
	NeedMoreData
	// Close: the connection is closed without matching a filter chain.
	Close
)

// Filter is a built listener filter, shared by every connection of its
// listener; it keeps no per-connection state of its own.
type Filter interface {
	// MaxReadBytes is the most bytes OnData needs to decide. When that
	// many have been read, OnData must return Continue or Close.
	MaxReadBytes() int
	// OnData inspects data, every byte the client sent so far (the same
	// prefix grows between calls), and records findings on c
	// (c.TransportProtocol, c.ServerName, c.RequestedALPN). It must not
	// keep data.
	OnData(c *network.Conn, data []byte) Status
}

// Consumer is a Filter that consumes the bytes it parsed, as
// proxy_protocol drains its header (Envoy's ListenerFilterBuffer::drain):
// the listener calls OnDataConsume instead of OnData, and when it returns
// Continue the first n bytes of data are dropped, so later filters, the
// transport socket and the network filters never see them.
type Consumer interface {
	Filter
	OnDataConsume(c *network.Conn, data []byte) (s Status, n int)
}

// BuildContext is what a listener filter may use when built, once per
// snapshot.
type BuildContext struct {
	// Path is the YAML path of the filter's typed_config, for errors.
	Path         string
	ListenerName string
	Stats        *stats.Store
}

// Extension is one listener filter kind.
type Extension[C proto.Message] struct {
	Name   string
	Config C
	Build  func(cfg C, ctx BuildContext) (Filter, error)
}

// Entry is a registered extension with its config type erased.
type Entry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Filter, error)
}

// Registry holds every listener filter.
var Registry = registry.New[*Entry]("listener filter")

// Register adds a listener filter; call it from the extension's init.
func Register[C proto.Message](e Extension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("listenerfilter: %s registered without Build", e.Name))
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
	})
}
