package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// DefaultInitialFetchTimeout is initial_fetch_timeout when unset. Envoy:
// "The default is 15s" (config_source.proto).
const DefaultInitialFetchTimeout = 15 * time.Second

// DefaultFilePollInterval is how often a file source looks for a change when
// the ConfigSource sets no poll_interval.
const DefaultFilePollInterval = 100 * time.Millisecond

// ClusterDialer opens a connection to a host of the named static cluster:
// how envoy_grpc.cluster_name reaches its control plane. Clusters live in
// the upstream manager; the server supplies this. The returned conn must
// speak HTTP/2 (cleartext, or TLS the dialer negotiated with ALPN h2).
type ClusterDialer func(ctx context.Context, cluster string) (net.Conn, error)

// Options is what the client needs from the server.
type Options struct {
	// Node is the identity sent to the control plane (bootstrap node plus
	// --service-cluster/--service-node/--service-zone). Required for gRPC.
	Node *corev3.Node
	// DialCluster serves envoy_grpc; nil makes envoy_grpc a config error.
	DialCluster ClusterDialer
	// Stats is the store for the ADS control_plane.* stats; nil means a
	// private store.
	Stats *stats.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// FilePollInterval is how often file sources without poll_interval look
	// for a move; zero means DefaultFilePollInterval.
	FilePollInterval time.Duration

	// backoff overrides Envoy's reconnect backoff in tests.
	backoff *backoffConfig
}

// Client creates subscriptions and owns the ADS stream, if any. One Client
// per running bootstrap.
type Client struct {
	opts Options
	ads  *Mux
}

// NewClient checks the options and, when ads is non-nil (bootstrap
// dynamic_resources.ads_config), builds the ADS mux; it connects on Start.
func NewClient(ads *corev3.ApiConfigSource, opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.FilePollInterval <= 0 {
		opts.FilePollInterval = DefaultFilePollInterval
	}
	c := &Client{opts: opts}
	if ads != nil {
		m, err := newMux(ads, "", opts, opts.Stats.Scope("control_plane."), true)
		if err != nil {
			return nil, fmt.Errorf("xds: ads_config: %w", err)
		}
		c.ads = m
	}
	return c, nil
}

// Start connects the ADS stream (if any); subscriptions start on their own.
func (c *Client) Start(ctx context.Context) {
	if c.ads != nil {
		c.ads.Start(ctx)
	}
}

// Close stops the ADS stream and waits for it. Subscriptions should be
// stopped first.
func (c *Client) Close() {
	if c.ads != nil {
		c.ads.Close()
	}
}

// Subscribe creates a subscription to typeURL resources named names (empty:
// wildcard) from src, counting its stats under scope (Envoy's prefixes:
// "listener_manager.lds.", "cluster_manager.cds.",
// "http.<stat_prefix>.rds.<route_config_name>.", "cluster.<name>." for EDS,
// "sds.<secret_name>."). It does not fetch until Start.
func (c *Client) Subscribe(src *corev3.ConfigSource, typeURL string, names []string, cb Callbacks, scope stats.Scope) (Subscription, error) {
	if cb.Apply == nil {
		return nil, errors.New("xds: Subscribe without Apply")
	}
	if v := src.GetResourceApiVersion(); v == corev3.ApiVersion_V2 {
		return nil, errors.New("xds: resource_api_version: V2 is not supported (Envoy removed the v2 API), use V3")
	}
	initTimeout := DefaultInitialFetchTimeout
	if d := src.GetInitialFetchTimeout(); d != nil {
		initTimeout = d.AsDuration()
	}
	log := c.opts.Logger
	switch spec := src.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Path:
		fs, err := newFileSource(&corev3.PathConfigSource{Path: spec.Path}, c.opts, log)
		if err != nil {
			return nil, fmt.Errorf("xds: path: %w", err)
		}
		return newWatch(typeURL, names, cb, scope, initTimeout, fs, log), nil
	case *corev3.ConfigSource_PathConfigSource:
		fs, err := newFileSource(spec.PathConfigSource, c.opts, log)
		if err != nil {
			return nil, fmt.Errorf("xds: path_config_source: %w", err)
		}
		return newWatch(typeURL, names, cb, scope, initTimeout, fs, log), nil
	case *corev3.ConfigSource_ApiConfigSource:
		m, err := newMux(spec.ApiConfigSource, typeURL, c.opts, scope.Scope("control_plane."), false)
		if err != nil {
			return nil, fmt.Errorf("xds: api_config_source: %w", err)
		}
		return newWatch(typeURL, names, cb, scope, initTimeout, m, log), nil
	case *corev3.ConfigSource_Ads:
		if c.ads == nil {
			return nil, errors.New("xds: ads: no ads_config in dynamic_resources")
		}
		return newWatch(typeURL, names, cb, scope, initTimeout, c.ads, log), nil
	case *corev3.ConfigSource_Self:
		return nil, errors.New("xds: self: not supported by herald yet")
	default:
		return nil, errors.New("xds: config source specifier is missing (path, path_config_source, api_config_source or ads)")
	}
}
