package http2

import (
	"fmt"
	"math"
	"net"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Envoy's defaults for config.core.v3.Http2ProtocolOptions, applied when a
// field of hhttp.HTTP2Options is zero.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions
const (
	// DefaultMaxConcurrentStreams: max_concurrent_streams "defaults to 1024
	// for safety".
	DefaultMaxConcurrentStreams = 1024
	// DefaultInitialStreamWindowSize: initial_stream_window_size "defaults to
	// 16MiB (16 * 1024 * 1024)".
	DefaultInitialStreamWindowSize = 16 << 20
	// DefaultInitialConnectionWindowSize: initial_connection_window_size
	// "The default is 24MiB (24 * 1024 * 1024)".
	DefaultInitialConnectionWindowSize = 24 << 20
)

// Envoy's header limits: max_request_headers_kb defaults to 60 and
// max_headers_count to 100 (envoy/http/codec.h DEFAULT_MAX_REQUEST_HEADERS_KB,
// DEFAULT_MAX_HEADERS_COUNT).
const (
	defaultMaxHeadersBytes = 60 << 10
	defaultMaxHeadersCount = 100
)

// hpackFieldOverhead is the per-field overhead RFC 7541 §4.1 adds to a header
// list's size; SETTINGS_MAX_HEADER_LIST_SIZE counts it, Envoy's byteSize does
// not.
const hpackFieldOverhead = 32

// Envoy's HTTP/2 codec limits (1..2^31-1) from protocol.proto.
const maxSettingValue = math.MaxInt32

// Envoy's flood-protection defaults (Http2ProtocolOptions, same page as
// above): max_outbound_frames 10000, max_outbound_control_frames 1000,
// max_consecutive_inbound_frames_with_empty_payload 1,
// max_inbound_priority_frames_per_stream 100,
// max_inbound_window_update_frames_per_data_frame_sent 10; hpack_table_size
// 4096.
const (
	defaultMaxOutboundFrames                   = 10000
	defaultMaxOutboundControlFrames            = 1000
	defaultMaxConsecutiveInboundEmptyFrames    = 1
	defaultMaxInboundPriorityFramesPerStream   = 100
	defaultMaxInboundWindowUpdatesPerDataFrame = 10
	defaultHpackTableSize                      = 4096
	defaultDrainTimeout                        = 5 * time.Second
	closeLinger                                = time.Second
	maxHeaderBlockSlack                        = 16 << 10
)

// Envoy's premature-reset (CVE-2023-44487) defaults: the runtime keys
// overload.premature_reset_min_stream_lifetime_seconds (1) and
// overload.premature_reset_total_stream_count (500), read in
// source/common/http/conn_manager_impl.cc (isPrematureRstStream,
// maybeDrainDueToPrematureResets;
// https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/runtime).
const (
	defaultPrematureResetMinLifetime  = time.Second
	defaultPrematureResetTotalStreams = 500
)

// limits are the per-connection flood limits, resolved from
// hhttp.HTTP2Options once.
type limits struct {
	outboundFrames        int
	outboundControlFrames int
	emptyFrames           int
	priorityPerStream     int
	windowUpdatesPerData  int
}

func resolveLimits(o *hhttp.HTTP2Options) limits {
	l := limits{
		outboundFrames:        defaultMaxOutboundFrames,
		outboundControlFrames: defaultMaxOutboundControlFrames,
		emptyFrames:           defaultMaxConsecutiveInboundEmptyFrames,
		priorityPerStream:     defaultMaxInboundPriorityFramesPerStream,
		windowUpdatesPerData:  defaultMaxInboundWindowUpdatesPerDataFrame,
	}
	if o == nil {
		return l
	}
	if o.MaxOutboundFrames != 0 {
		l.outboundFrames = int(min(o.MaxOutboundFrames, maxSettingValue))
	}
	if o.MaxOutboundControlFrames != 0 {
		l.outboundControlFrames = int(min(o.MaxOutboundControlFrames, maxSettingValue))
	}
	l.emptyFrames = int(min(o.MaxConsecutiveInboundFramesWithEmptyPayload.Or(defaultMaxConsecutiveInboundEmptyFrames), maxSettingValue))
	l.priorityPerStream = int(min(o.MaxInboundPriorityFramesPerStream.Or(defaultMaxInboundPriorityFramesPerStream), maxSettingValue))
	if o.MaxInboundWindowUpdateFramesPerDataFrameSent != 0 {
		l.windowUpdatesPerData = int(min(o.MaxInboundWindowUpdateFramesPerDataFrameSent, maxSettingValue))
	}
	return l
}

// Server serves downstream HTTP/2 connections for one listener configuration.
// Build it once per connection-manager config with NewServer and call
// ServeConn for every connection.
type Server struct {
	// Immutable after NewServer.
	maxStreams     uint32
	streamWindow   uint32
	connWindow     uint32
	maxHeadersSize int    // Envoy max_request_headers_kb in bytes
	maxHeadersN    int    // Envoy max_headers_count
	maxHeaderList  uint32 // SETTINGS_MAX_HEADER_LIST_SIZE advertised
	maxBlockBytes  int    // bound on an encoded header block (CONTINUATION flood)
	idleTimeout    time.Duration
	limits         limits
	hpackTable     uint32 // hpack_table_size
	allowConnect   bool   // allow_connect: extended CONNECT accepted
	streamErrors   bool   // invalid requests reset the stream, not the connection
	keepalive      hhttp.KeepaliveOptions
	// Premature resets (rapid reset): streams closed within
	// prematureLifetime without response headers, judged over
	// prematureTotal closed streams; onPremature counts a closed connection.
	prematureLifetime time.Duration
	prematureTotal    int
	onPremature       func()
	// drainTimeout is the grace between the two GOAWAY frames of a drain:
	// Envoy's HCM drain_timeout, default 5 s
	// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto).
	// TODO(herald): take it from HCM config once ServerOptions carries it (#6).
	drainTimeout time.Duration
}

// NewServer validates opts and computes the connection settings once. Zero
// fields take Envoy's defaults: MaxRequestHeadersBytes 60 KiB,
// MaxRequestHeadersCount 100, and the Default* constants above for HTTP2.
// Scheme must be "", "http" or "https"; HTTP/2 requests keep the :scheme the
// client sent, as Envoy's codec does.
func NewServer(opts hhttp.ServerOptions) (*Server, error) {
	s := &Server{
		maxHeadersSize:    opts.MaxRequestHeadersBytes,
		maxHeadersN:       opts.MaxRequestHeadersCount,
		idleTimeout:       opts.IdleTimeout,
		drainTimeout:      opts.DrainTimeout,
		limits:            resolveLimits(opts.HTTP2),
		hpackTable:        defaultHpackTableSize,
		prematureLifetime: opts.PrematureResetMinStreamLifetime,
		prematureTotal:    opts.PrematureResetTotalStreamCount,
		onPremature:       opts.OnPrematureResets,
	}
	if s.prematureLifetime <= 0 {
		s.prematureLifetime = defaultPrematureResetMinLifetime
	}
	if s.prematureTotal <= 0 {
		s.prematureTotal = defaultPrematureResetTotalStreams
	}
	if o := opts.HTTP2; o != nil {
		s.hpackTable = o.HpackTableSize.Or(defaultHpackTableSize)
		s.allowConnect = o.AllowConnect
		s.streamErrors = o.StreamErrorOnInvalidHTTPMessage
		s.keepalive = o.Keepalive
		if k := s.keepalive; k.Timeout < 0 || k.Interval < 0 || k.IntervalJitterPercent < 0 || k.IntervalJitterPercent > 100 {
			return nil, fmt.Errorf("http2: connection_keepalive: negative duration or jitter outside 0..100")
		}
	}
	if s.drainTimeout <= 0 {
		s.drainTimeout = defaultDrainTimeout
	}
	if s.maxHeadersSize <= 0 {
		s.maxHeadersSize = defaultMaxHeadersBytes
	}
	if s.maxHeadersN <= 0 {
		s.maxHeadersN = defaultMaxHeadersCount
	}
	switch opts.Scheme {
	case "", "http", "https":
	default:
		return nil, fmt.Errorf("http2: scheme %q: want http or https", opts.Scheme)
	}
	// Advertise room for the RFC 7541 overhead on every allowed field so
	// that a client honouring the setting never trips it before Envoy's own
	// limits (which reset the stream) apply.
	s.maxHeaderList = uint32(min(s.maxHeadersSize+hpackFieldOverhead*s.maxHeadersN, maxSettingValue))
	s.maxBlockBytes = 2*int(s.maxHeaderList) + maxHeaderBlockSlack

	var err error
	s.maxStreams, s.streamWindow, s.connWindow, err = http2Settings(opts.HTTP2)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// http2Settings applies Envoy's defaults and ranges to o.
func http2Settings(o *hhttp.HTTP2Options) (streams, streamWin, connWin uint32, err error) {
	streams, streamWin, connWin = DefaultMaxConcurrentStreams, DefaultInitialStreamWindowSize, DefaultInitialConnectionWindowSize
	if o == nil {
		return streams, streamWin, connWin, nil
	}
	if o.MaxConcurrentStreams != 0 {
		streams = o.MaxConcurrentStreams
	}
	if o.InitialStreamWindowSize != 0 {
		streamWin = o.InitialStreamWindowSize
	}
	if o.InitialConnectionWindowSize != 0 {
		connWin = o.InitialConnectionWindowSize
	}
	switch {
	case streams > maxSettingValue:
		return 0, 0, 0, fmt.Errorf("http2: max_concurrent_streams %d: want 1..2147483647", streams)
	case streamWin < 65535 || streamWin > maxSettingValue:
		return 0, 0, 0, fmt.Errorf("http2: initial_stream_window_size %d: want 65535..2147483647", streamWin)
	case connWin < 65535 || connWin > maxSettingValue:
		return 0, 0, 0, fmt.Errorf("http2: initial_connection_window_size %d: want 65535..2147483647", connWin)
	}
	return streams, streamWin, connWin, nil
}

// Serve is NewServer followed by ServeConn, for callers without a long-lived
// Server. It returns only option errors.
func Serve(c net.Conn, opts hhttp.ServerOptions, h hhttp.StreamHandler, drain <-chan struct{}) error {
	s, err := NewServer(opts)
	if err != nil {
		return err
	}
	s.ServeConn(c, h, drain)
	return nil
}

// ServeConn serves one HTTP/2 connection until it closes, calling
// h.ServeStream on its own goroutine for every stream. c must start with the
// client preface: when the caller sniffed bytes off c, wrap it with
// NewPeekedConn first. ServeConn closes c and returns once every
// ServeStream call has returned.
//
// Closing drain starts Envoy's graceful drain
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/draining):
// a GOAWAY(NO_ERROR) with last-stream-id 2^31-1 first, then after the drain
// timeout the final GOAWAY with the last stream processed, refusing newer
// streams; the connection closes once the active streams finish. drain may
// be nil.
func (s *Server) ServeConn(c net.Conn, h hhttp.StreamHandler, drain <-chan struct{}) {
	sc := newServerConn(s, c, h)
	sc.serve(drain)
}
