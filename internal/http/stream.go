package http

import (
	"context"
	"fmt"
	"net"
	"time"
)

// ServerStream is one downstream request/response exchange as a codec
// presents it to the connection manager. A codec creates one per request
// (HTTP/1.1) or per stream (HTTP/2) and calls StreamHandler.ServeStream.
//
// All methods are called from the goroutine running ServeStream.
type ServerStream interface {
	// RequestHeaders are the decoded request headers with pseudo-headers
	// :method, :path, :authority (from Host for HTTP/1.1) and :scheme. The
	// connection manager may mutate them.
	RequestHeaders() *Headers
	// RequestEndStream reports whether the request has no body (headers
	// only), so ReadBody would return io.EOF at once.
	RequestEndStream() bool
	// ReadBody reads request body bytes; it returns io.EOF after the last
	// byte (trailers, if any, are then in RequestTrailers). A malformed body
	// returns a *CodecError.
	ReadBody(p []byte) (int, error)
	// RequestTrailers returns the request trailers once ReadBody returned
	// io.EOF, or nil.
	RequestTrailers() *Headers
	// WriteHeaders sends the response headers (":status" plus fields).
	// endStream means there is no body. A response carrying
	// "connection: close" makes an HTTP/1.1 codec close the connection after
	// it (the connection manager uses this to drain).
	WriteHeaders(h *Headers, endStream bool) error
	// WriteData sends response body bytes; endStream marks the last chunk
	// (p may be empty).
	WriteData(p []byte, endStream bool) error
	// WriteTrailers sends response trailers and ends the stream.
	WriteTrailers(t *Headers) error
	// Protocol is "HTTP/1.0", "HTTP/1.1" or "HTTP/2".
	Protocol() string
	// Context is cancelled when the stream is reset or the connection closes.
	Context() context.Context
}

// HeaderScratch is implemented by server streams that can lend a few bytes
// from the allocation holding the request headers, so that a string the
// connection manager derives per request (a generated x-request-id) needs
// no allocation of its own. The HTTP/1.1 codec reserves RequestScratchBytes.
type HeaderScratch interface {
	// Scratch returns n writable bytes that live as long as the request
	// headers, or nil when fewer are left. The caller fills them once and
	// may then turn them into a string (unsafe.String); nobody writes them
	// again.
	Scratch(n int) []byte
}

// HeadersDeferrer is implemented by server codecs that can hold the next
// response headers until the following write (HTTP/2: one write(2) for
// HEADERS and DATA instead of two). The connection manager calls
// DeferHeadersFlush just before WriteHeaders when the body is already at
// hand; the next WriteData, WriteTrailers or reset sends both.
type HeadersDeferrer interface {
	DeferHeadersFlush()
}

// RequestScratchBytes is what a codec implementing HeaderScratch reserves per
// request: one UUID (36 bytes).
const RequestScratchBytes = 36

// StreamHandler is what a server codec drives: the connection manager.
type StreamHandler interface {
	// ServeStream handles one exchange; the codec reads the next request of
	// an HTTP/1.1 connection only after it returns. HTTP/2 codecs call it
	// concurrently, one goroutine per stream.
	ServeStream(s ServerStream)
	// ServeCodecError is called instead of ServeStream when the codec
	// rejected a request before it could be dispatched (malformed request
	// line or headers, headers too large). s can still write a response;
	// RequestHeaders holds whatever was parsed (maybe nothing). The codec
	// closes the connection after it returns.
	ServeCodecError(s ServerStream, err *CodecError)
}

// CodecError is a protocol error found by a codec, with the status the
// downstream should get and Envoy's response_code_details string.
type CodecError struct {
	// Status is the HTTP status to answer with: 400, 413, 431, 501...
	Status int
	// Details is Envoy's response_code_details, e.g.
	// "http1.invalid_characters", "http1.headers_too_large",
	// "http1.codec_error".
	Details string
	// Err is the underlying error, for logs.
	Err error
}

func (e *CodecError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("codec error %d %s: %v", e.Status, e.Details, e.Err)
	}
	return fmt.Sprintf("codec error %d %s", e.Status, e.Details)
}

func (e *CodecError) Unwrap() error { return e.Err }

// ServerOptions configure a server codec for one connection.
type ServerOptions struct {
	// MaxRequestHeadersBytes bounds the request line plus headers (HTTP/1.1)
	// or the decoded header list (HTTP/2). Envoy: max_request_headers_kb,
	// default 60 KiB. Exceeding it answers 431.
	MaxRequestHeadersBytes int
	// MaxRequestHeadersCount bounds the number of headers. Envoy:
	// common_http_protocol_options.max_headers_count, default 100. Exceeding
	// it answers 431.
	MaxRequestHeadersCount int
	// IdleTimeout closes a connection that has no active stream for this
	// long. Zero means no limit. Envoy: common_http_protocol_options.idle_timeout,
	// default 1 h.
	IdleTimeout time.Duration
	// Scheme is the :scheme to give requests ("http" or "https").
	Scheme string
	// AcceptHTTP10: answer HTTP/1.0 requests with HTTP/1.0 status lines.
	// Envoy (http_protocol_options.accept_http_10, default false) writes
	// "HTTP/1.1" status lines unless HTTP/1.0 is accepted.
	AcceptHTTP10 bool
	// DrainTimeout is the grace between the two GOAWAY frames of an HTTP/2
	// drain. Envoy: HCM drain_timeout, default 5 s; zero means the default.
	DrainTimeout time.Duration
	// HTTP2 holds HTTP/2 settings; nil means defaults.
	HTTP2 *HTTP2Options
	// HTTP3 holds HTTP/3 settings (http3_protocol_options); nil means
	// defaults.
	HTTP3 *HTTP3Options
	// OnPrematureResets is called once when the HTTP/2 codec closes a
	// connection for too many premature stream resets (CVE-2023-44487);
	// the connection manager counts downstream_rq_too_many_premature_resets
	// with it. nil means nothing is counted; the connection closes anyway.
	OnPrematureResets func()
	// PrematureResetMinStreamLifetime and PrematureResetTotalStreamCount
	// are Envoy's runtime keys
	// overload.premature_reset_min_stream_lifetime_seconds (default 1 s)
	// and overload.premature_reset_total_stream_count (default 500); zero
	// means the default.
	PrematureResetMinStreamLifetime time.Duration
	PrematureResetTotalStreamCount  int
}

// HTTP2Options are the Envoy http2_protocol_options herald applies
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http2protocoloptions).
// A zero field means Envoy's default. The struct is comparable, so that a
// client can key its connection pools by the options' value.
type HTTP2Options struct {
	// MaxConcurrentStreams: default 1024.
	MaxConcurrentStreams uint32
	// InitialStreamWindowSize: default 16 MiB.
	InitialStreamWindowSize uint32
	// InitialConnectionWindowSize: default 24 MiB.
	InitialConnectionWindowSize uint32
	// HpackTableSize bounds the HPACK dynamic table both ways (advertised
	// as SETTINGS_HEADER_TABLE_SIZE and capping the encoder). Unset means
	// 4096; 0 disables header compression.
	HpackTableSize OptionalUint32
	// AllowConnect advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and accepts
	// extended CONNECT (RFC 8441), e.g. WebSocket over HTTP/2. Default false.
	AllowConnect bool
	// Flood limits; 0 or unset means Envoy's default: max_outbound_frames
	// 10000, max_outbound_control_frames 1000,
	// max_consecutive_inbound_frames_with_empty_payload 1 (0 is a valid
	// limit), max_inbound_priority_frames_per_stream 100 (0 is valid),
	// max_inbound_window_update_frames_per_data_frame_sent 10.
	MaxOutboundFrames                            uint32
	MaxOutboundControlFrames                     uint32
	MaxConsecutiveInboundFramesWithEmptyPayload  OptionalUint32
	MaxInboundPriorityFramesPerStream            OptionalUint32
	MaxInboundWindowUpdateFramesPerDataFrameSent uint32
	// StreamErrorOnInvalidHTTPMessage resets only the offending stream of
	// an invalid request instead of closing the connection (Envoy's
	// override_stream_error_on_invalid_http_message, falling back to
	// stream_error_on_invalid_http_messaging). Default false.
	StreamErrorOnInvalidHTTPMessage bool
	// Keepalive is connection_keepalive; a zero Timeout means no keepalive.
	Keepalive KeepaliveOptions
}

// HTTP3Options are the Envoy http3_protocol_options the downstream HTTP/3
// codec applies
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http3protocoloptions).
// The zero value is Envoy's default.
type HTTP3Options struct {
	// AllowExtendedConnect accepts extended CONNECT (RFC 9220, :protocol),
	// e.g. WebSocket over HTTP/3. Default false: such a request is an
	// invalid message.
	AllowExtendedConnect bool
	// StreamErrorOnInvalidHTTPMessage resets only the offending stream of
	// an invalid request instead of closing the connection
	// (override_stream_error_on_invalid_http_message, falling back to
	// stream_error_on_invalid_http_messaging). Default false.
	StreamErrorOnInvalidHTTPMessage bool
}

// OptionalUint32 is a uint32 option whose zero value is meaningful (an
// unset protobuf UInt32Value versus an explicit 0).
type OptionalUint32 struct {
	Value uint32
	Set   bool
}

// Or returns o.Value when set, def otherwise.
func (o OptionalUint32) Or(def uint32) uint32 {
	if o.Set {
		return o.Value
	}
	return def
}

// KeepaliveOptions are Envoy's KeepaliveSettings for HTTP/2 PINGs
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-keepalivesettings).
type KeepaliveOptions struct {
	// Interval between PINGs; zero sends none on a timer.
	Interval time.Duration
	// Timeout closes the connection when no frame arrives this long after
	// a PING; zero disables keepalive (Envoy requires it when set).
	Timeout time.Duration
	// IntervalJitterPercent adds up to this percentage of Interval to each
	// interval; Envoy's default is 15.
	IntervalJitterPercent float64
	// ConnectionIdleInterval (upstream only): a connection idle this long
	// is PINGed before it carries a new stream. Zero disables it.
	ConnectionIdleInterval time.Duration
}

// UpstreamStream is one request/response exchange on an upstream
// connection, as the router drives it. Write and Read halves may be used
// from different goroutines (one writer, one reader).
type UpstreamStream interface {
	// WriteHeaders sends request headers with pseudo-headers; an HTTP/1.1
	// codec turns :authority into Host.
	WriteHeaders(h *Headers, endStream bool) error
	WriteData(p []byte, endStream bool) error
	WriteTrailers(t *Headers) error
	// ReadHeaders reads the response headers into h (1xx responses other
	// than 101 are skipped). endStream reports a response without body.
	ReadHeaders(h *Headers) (endStream bool, err error)
	// ReadBody reads response body bytes, io.EOF after the last.
	ReadBody(p []byte) (int, error)
	// Trailers returns response trailers after ReadBody returned io.EOF.
	Trailers() *Headers
	// Close ends the stream. When the exchange completed cleanly (request
	// sent, response read to EOF) and the connection can carry another
	// request, it goes back to its pool; otherwise it is closed. err != nil
	// forces a reset/close.
	Close(err error)
}

// Dialer opens a transport connection to an upstream host.
type Dialer func(ctx context.Context) (net.Conn, error)
