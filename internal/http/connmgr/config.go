package connmgr

import (
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http2"
	"sync"
	"time"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// CodecType chooses the downstream codec.
type CodecType int

// Codec types, as HttpConnectionManager.codec_type.
const (
	// Auto serves HTTP/2 when the connection starts with the HTTP/2 preface
	// (or TLS negotiated h2), HTTP/1.1 otherwise.
	Auto CodecType = iota
	HTTP1
	HTTP2
	// HTTP3 serves HTTP/3 on QUIC connections (UDP listeners only).
	HTTP3
)

// ServerHeaderTransformation is HttpConnectionManager.server_header_transformation.
type ServerHeaderTransformation int

// Server header transformations.
const (
	// Overwrite sets server to ServerName on every response (Envoy's default).
	Overwrite ServerHeaderTransformation = iota
	// AppendIfAbsent sets server only when the upstream sent none.
	AppendIfAbsent
	// PassThrough never touches the server header.
	PassThrough
)

// FilterFactory is one configured HTTP filter.
type FilterFactory struct {
	// Name is the filter's configured name (used for typed_per_filter_config).
	Name    string
	Factory httpfilter.Factory
	// Disabled is http_filters[].disabled: the filter runs only on routes
	// whose typed_per_filter_config enables it.
	Disabled bool
}

// RouteResolver picks the route for request headers: the router's table.
type RouteResolver interface {
	// Resolve returns the matched route or nil; listenerPort is the local
	// port of the connection (for strip_matching_host_port).
	Resolve(h *hhttp.Headers, listenerPort uint16) httpfilter.Route
}

// AccessLogger writes one access-log entry; internal/accesslog.Logger has
// this shape.
type AccessLogger interface {
	Log(info *streaminfo.Info)
}

// Config is an immutable, built HttpConnectionManager. It is shared by every
// connection accepted while its snapshot is current.
type Config struct {
	StatPrefix string
	Codec      CodecType
	Filters    []FilterFactory
	Routes     RouteResolver

	// ServerName is the server header value; Envoy's default "envoy".
	ServerName                 string
	ServerHeaderTransformation ServerHeaderTransformation

	// UseRemoteAddress: the connection's peer is the client address and is
	// appended to x-forwarded-for. Envoy default false.
	UseRemoteAddress bool
	// XffNumTrustedHops: how many rightmost x-forwarded-for entries are
	// trusted proxies. Envoy default 0.
	XffNumTrustedHops int
	SkipXffAppend     bool
	// GenerateRequestID: add x-request-id when absent. Envoy default true.
	GenerateRequestID            bool
	PreserveExternalRequestID    bool
	AlwaysSetRequestIDInResponse bool
	// AcceptHTTP10: serve HTTP/1.0 (http_protocol_options.accept_http_10);
	// Envoy's default false answers 426.
	AcceptHTTP10 bool
	// EnableTrailers: pass HTTP/1.1 trailers through
	// (http_protocol_options.enable_trailers). Envoy's default false drops
	// them on HTTP/1.1 connections, both ways.
	EnableTrailers bool
	// DefaultHostForHTTP10 is the :authority given to HTTP/1.0 requests
	// without Host.
	DefaultHostForHTTP10 string
	// Via, when set, is appended to via on requests and responses.
	Via string
	// ForwardClientCert is forward_client_cert_details; the zero value is
	// Envoy's default, SANITIZE (xfcc.go).
	ForwardClientCert ForwardClientCert
	// SetClientCertDetails is set_current_client_cert_details: what an
	// APPEND_FORWARD or SANITIZE_SET element carries besides By and Hash.
	// Zero: nothing more (Envoy's default).
	SetClientCertDetails ClientCertDetails
	// Upgrades are upgrade_configs: the upgrade types (the Upgrade
	// header's values) this connection manager allows; a route's
	// RouteAction.upgrade_configs overrides them. Empty: every upgrade is
	// refused unless a route enables it (Envoy's default).
	Upgrades []UpgradeConfig

	// MaxRequestHeadersBytes: Envoy max_request_headers_kb, default 60 KiB.
	MaxRequestHeadersBytes int
	// MaxRequestHeadersCount: common_http_protocol_options.max_headers_count,
	// default 100.
	MaxRequestHeadersCount int
	// StreamIdleTimeout: Envoy default 5 min; 0 disables.
	StreamIdleTimeout time.Duration
	// RequestTimeout: whole request received within; Envoy default 0 (off).
	RequestTimeout time.Duration
	// IdleTimeout: connection without streams; Envoy default 1 h.
	IdleTimeout time.Duration
	// MaxConnectionDuration is common_http_protocol_options.max_connection_duration:
	// a connection this old drains (common_options.go). 0: unlimited
	// (Envoy's default).
	MaxConnectionDuration time.Duration
	// MaxStreamDuration is common_http_protocol_options.max_stream_duration:
	// a stream this old is answered 408/504 or reset, unless its route's
	// max_stream_duration decides (duration.go). 0: unlimited (Envoy's
	// default).
	MaxStreamDuration time.Duration
	// MaxRequestsPerConnection is
	// common_http_protocol_options.max_requests_per_connection: the
	// request that reaches it drains the connection (common_options.go).
	// 0: unlimited (Envoy's default).
	MaxRequestsPerConnection uint32
	// HeadersWithUnderscores is
	// common_http_protocol_options.headers_with_underscores_action; the
	// zero value is Envoy's default, ALLOW.
	HeadersWithUnderscores UnderscoresAction
	// DrainTimeout: HTTP/2 GOAWAY grace; Envoy default 5 s.
	DrainTimeout time.Duration
	// BufferLimit: per-stream buffer limit (listener
	// per_connection_buffer_limit_bytes), Envoy default 1 MiB.
	BufferLimit int

	// HTTP2 holds http2_protocol_options; nil means Envoy's defaults.
	HTTP2 *hhttp.HTTP2Options
	// HTTP3 holds http3_protocol_options; nil means Envoy's defaults.
	HTTP3 *hhttp.HTTP3Options

	AccessLogs []AccessLogger
	Stats      *Stats
	// Store is where per-listener stats are created.
	Store *stats.Store

	// h2 are the HTTP/2 servers for plain and TLS connections, built once
	// by Prepare.
	h2 [2]*http2.Server
	// underscores are the codec counters of HeadersWithUnderscores, by
	// codecHTTP1..3; set by Prepare unless the action is ALLOW.
	underscores [3]underscoreCounters
}

// ListenerStats are Envoy's per-listener connection manager stats
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/stats#per-listener-statistics).
type ListenerStats struct {
	DownstreamRqXX        [6]*stats.Counter
	DownstreamRqCompleted *stats.Counter
}

// listenerStats returns the per-listener stats for a listener stat prefix
// ("listener.127.0.0.1_10000."), or nil without a store or prefix.
func (cfg *Config) listenerStats(listenerPrefix string) *ListenerStats {
	if cfg.Store == nil || listenerPrefix == "" {
		return nil
	}
	if v, ok := cfg.Stats.perListener.Load(listenerPrefix); ok {
		return v.(*ListenerStats)
	}
	sc := cfg.Store.Scope(listenerPrefix + "http." + cfg.StatPrefix + ".")
	ls := &ListenerStats{DownstreamRqCompleted: sc.Counter("downstream_rq_completed")}
	for i := 1; i <= 5; i++ {
		ls.DownstreamRqXX[i] = sc.Counter("downstream_rq_" + string(rune('0'+i)) + "xx")
	}
	v, _ := cfg.Stats.perListener.LoadOrStore(listenerPrefix, ls)
	return v.(*ListenerStats)
}

// Stats are the http.<stat_prefix>.* stats Envoy's connection manager emits
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/stats).
type Stats struct {
	DownstreamCxTotal         *stats.Counter
	DownstreamCxActive        *stats.Gauge
	DownstreamCxHTTP1Total    *stats.Counter
	DownstreamCxHTTP1Active   *stats.Gauge
	DownstreamCxHTTP2Total    *stats.Counter
	DownstreamCxHTTP2Active   *stats.Gauge
	DownstreamCxHTTP3Total    *stats.Counter
	DownstreamCxHTTP3Active   *stats.Gauge
	DownstreamCxDestroy       *stats.Counter
	DownstreamCxDestroyRemote *stats.Counter
	DownstreamCxDestroyLocal  *stats.Counter
	DownstreamCxRxBytesTotal  *stats.Counter
	DownstreamCxTxBytesTotal  *stats.Counter
	DownstreamCxProtocolError *stats.Counter
	DownstreamCxIdleTimeout   *stats.Counter
	DownstreamCxDrainClose    *stats.Counter
	DownstreamCxLength        *stats.Histogram

	DownstreamRqTotal       *stats.Counter
	DownstreamRqHTTP1Total  *stats.Counter
	DownstreamRqHTTP2Total  *stats.Counter
	DownstreamRqHTTP3Total  *stats.Counter
	DownstreamRqActive      *stats.Gauge
	DownstreamRqCompleted   *stats.Counter
	DownstreamRqXX          [6]*stats.Counter // index 1..5
	DownstreamRqTime        *stats.Histogram
	DownstreamRqIdleTimeout *stats.Counter
	DownstreamRqTimeout     *stats.Counter
	// DownstreamRqMaxDurationReached counts streams ended by the route's
	// or the connection manager's max_stream_duration, or grpc-timeout.
	DownstreamRqMaxDurationReached *stats.Counter
	// DownstreamCxMaxDurationReached and DownstreamCxMaxRequestsReached
	// count connections drained by max_connection_duration and
	// max_requests_per_connection (common_options.go).
	DownstreamCxMaxDurationReached *stats.Counter
	DownstreamCxMaxRequestsReached *stats.Counter
	DownstreamRqHeaderTimeout      *stats.Counter
	DownstreamRqTooLarge           *stats.Counter
	DownstreamRqRxReset            *stats.Counter
	DownstreamRqTxReset            *stats.Counter
	DownstreamRqNonRelativePath    *stats.Counter
	DownstreamRqWsOnNonWsRoute     *stats.Counter
	DownstreamCxUpgradesTotal      *stats.Counter
	DownstreamCxUpgradesActive     *stats.Gauge
	NoRoute                        *stats.Counter
	RsTooLarge                     *stats.Counter

	// DownstreamRqTooManyPrematureResets counts HTTP/2 connections closed
	// for rapid resets (CVE-2023-44487); the codec reports them.
	DownstreamRqTooManyPrematureResets *stats.Counter

	// perListener caches the listener.<address>.http.<prefix>.* stats by
	// listener stat prefix; looked up once per connection.
	perListener sync.Map
}

// NewStats looks up the http.<prefix>. stats in store.
func NewStats(store *stats.Store, statPrefix string) *Stats {
	sc := store.Scope("http." + statPrefix + ".")
	s := &Stats{
		DownstreamCxTotal:         sc.Counter("downstream_cx_total"),
		DownstreamCxActive:        sc.Gauge("downstream_cx_active"),
		DownstreamCxHTTP1Total:    sc.Counter("downstream_cx_http1_total"),
		DownstreamCxHTTP1Active:   sc.Gauge("downstream_cx_http1_active"),
		DownstreamCxHTTP2Total:    sc.Counter("downstream_cx_http2_total"),
		DownstreamCxHTTP2Active:   sc.Gauge("downstream_cx_http2_active"),
		DownstreamCxHTTP3Total:    sc.Counter("downstream_cx_http3_total"),
		DownstreamCxHTTP3Active:   sc.Gauge("downstream_cx_http3_active"),
		DownstreamCxDestroy:       sc.Counter("downstream_cx_destroy"),
		DownstreamCxDestroyRemote: sc.Counter("downstream_cx_destroy_remote"),
		DownstreamCxDestroyLocal:  sc.Counter("downstream_cx_destroy_local"),
		DownstreamCxRxBytesTotal:  sc.Counter("downstream_cx_rx_bytes_total"),
		DownstreamCxTxBytesTotal:  sc.Counter("downstream_cx_tx_bytes_total"),
		DownstreamCxProtocolError: sc.Counter("downstream_cx_protocol_error"),
		DownstreamCxIdleTimeout:   sc.Counter("downstream_cx_idle_timeout"),
		DownstreamCxDrainClose:    sc.Counter("downstream_cx_drain_close"),
		DownstreamCxLength:        sc.Histogram("downstream_cx_length_ms", stats.Milliseconds),

		DownstreamRqTotal:              sc.Counter("downstream_rq_total"),
		DownstreamRqHTTP1Total:         sc.Counter("downstream_rq_http1_total"),
		DownstreamRqHTTP2Total:         sc.Counter("downstream_rq_http2_total"),
		DownstreamRqHTTP3Total:         sc.Counter("downstream_rq_http3_total"),
		DownstreamRqActive:             sc.Gauge("downstream_rq_active"),
		DownstreamRqCompleted:          sc.Counter("downstream_rq_completed"),
		DownstreamRqTime:               sc.Histogram("downstream_rq_time", stats.Milliseconds),
		DownstreamRqIdleTimeout:        sc.Counter("downstream_rq_idle_timeout"),
		DownstreamRqTimeout:            sc.Counter("downstream_rq_timeout"),
		DownstreamRqMaxDurationReached: sc.Counter("downstream_rq_max_duration_reached"),
		DownstreamCxMaxDurationReached: sc.Counter("downstream_cx_max_duration_reached"),
		DownstreamCxMaxRequestsReached: sc.Counter("downstream_cx_max_requests_reached"),
		DownstreamRqHeaderTimeout:      sc.Counter("downstream_rq_header_timeout"),
		DownstreamRqTooLarge:           sc.Counter("downstream_rq_too_large"),
		DownstreamRqRxReset:            sc.Counter("downstream_rq_rx_reset"),
		DownstreamRqTxReset:            sc.Counter("downstream_rq_tx_reset"),
		DownstreamRqNonRelativePath:    sc.Counter("downstream_rq_non_relative_path"),
		DownstreamRqWsOnNonWsRoute:     sc.Counter("downstream_rq_ws_on_non_ws_route"),
		DownstreamCxUpgradesTotal:      sc.Counter("downstream_cx_upgrades_total"),
		DownstreamCxUpgradesActive:     sc.Gauge("downstream_cx_upgrades_active"),
		NoRoute:                        sc.Counter("no_route"),
		RsTooLarge:                     sc.Counter("rs_too_large"),

		DownstreamRqTooManyPrematureResets: sc.Counter("downstream_rq_too_many_premature_resets"),
	}
	for i := 1; i <= 5; i++ {
		s.DownstreamRqXX[i] = sc.Counter("downstream_rq_" + string(rune('0'+i)) + "xx")
	}
	return s
}
