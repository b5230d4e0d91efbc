// Package httpfilter is what an HTTP filter implements and how it registers.
// The connection manager (internal/http) drives filters: decode events in
// configured order, encode events in reverse order, Envoy's model
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_filters).
//
// Filters run on the goroutine that serves their stream; a filter that waits
// on an external call blocks only its own stream.
//
// It must not import extensions/ nor net/http.
package httpfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/proto"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Status tells the filter manager what to do after a filter handled an event.
type Status int

const (
	// Continue passes the event to the next filter.
	Continue Status = iota
	// Stop ends iteration for this event: the filter has answered (a local
	// reply or a response it encoded through the callbacks) or has taken
	// over the stream. Later filters never see the event. A decoder filter
	// that returns Stop from DecodeHeaders without having answered must
	// answer before returning from its last decode event.
	Stop
)

// DecoderFilter sees the request. data passed to DecodeData is only valid for
// the call; a filter that keeps it must copy it.
type DecoderFilter interface {
	DecodeHeaders(h *hhttp.Headers, endStream bool) Status
	DecodeData(data []byte, endStream bool) Status
	DecodeTrailers(t *hhttp.Headers) Status
}

// EncoderFilter sees the response.
type EncoderFilter interface {
	EncodeHeaders(h *hhttp.Headers, endStream bool) Status
	EncodeData(data []byte, endStream bool) Status
	EncodeTrailers(t *hhttp.Headers) Status
}

// Destroyer is implemented by filters that hold resources until the stream
// ends (Envoy's onDestroy). OnDestroy runs once, after the last event.
type Destroyer interface {
	OnDestroy()
}

// Route is what a filter sees of the matched route. The router extension
// type-asserts it to the concrete route of internal/router.
type Route interface {
	// PerFilterConfig returns the most specific typed_per_filter_config for
	// the filter called name (route, then virtual host, then route
	// configuration), as built by the filter's BuildPerRoute, or nil.
	PerFilterConfig(name string) any
}

// DataFollows is implemented by Callbacks whose codec can send response
// headers together with the body: a filter that already holds body bytes it
// will encode right after EncodeHeaders(h, false) calls DataFollows first
// (the router does when the upstream body is buffered), saving a write
// on HTTP/2.
type DataFollows interface {
	DataFollows()
}

// FilterDisabler is implemented by routes that can disable or enable a
// filter through typed_per_filter_config (an envoy.config.route.v3.FilterConfig
// with disabled, or any config, which enables a filter disabled in
// http_filters).
type FilterDisabler interface {
	// FilterDisabled reports whether the most specific level that mentions
	// the filter called name disables it; set is false when no level does.
	FilterDisabled(name string) (disabled, set bool)
}

// PerFilterConfigLister is implemented by routes that can list every
// level's typed_per_filter_config for a filter, as Envoy's
// Http::Utility::getAllPerFilterConfig does for filters that merge levels
// (CORS, header_mutation).
type PerFilterConfigLister interface {
	// AppendPerFilterConfigs appends to dst the built per-route configs of
	// the filter called name, least specific first (route configuration,
	// virtual host, route), skipping levels without one, and returns dst.
	AppendPerFilterConfigs(dst []any, name string) []any
}

// AllPerFilterConfigs appends r's per-route configs of the filter called
// name to dst, least specific first: every level when r implements
// PerFilterConfigLister, else only the most specific one. A nil r appends
// nothing.
func AllPerFilterConfigs(r Route, dst []any, name string) []any {
	if r == nil {
		return dst
	}
	if l, ok := r.(PerFilterConfigLister); ok {
		return l.AppendPerFilterConfigs(dst, name)
	}
	if c := r.PerFilterConfig(name); c != nil {
		dst = append(dst, c)
	}
	return dst
}

// ConnectionState is implemented by Callbacks whose downstream connection
// keeps filter state for its lifetime (Envoy's FilterState with
// LifeSpan::Connection), e.g. per-connection rate limit buckets.
type ConnectionState interface {
	// ConnectionValue returns the value stored under key on the stream's
	// connection, storing create() first when there is none. Safe for the
	// concurrent streams of one connection.
	ConnectionValue(key any, create func() any) any
}

// StreamState is implemented by Callbacks that keep filter state for the
// stream's lifetime (Envoy's FilterState with LifeSpan::FilterChain), for
// filters of one chain that must coordinate, e.g. several compressor
// filters choosing one encoding.
type StreamState interface {
	// StreamValue returns the value stored under key on the stream,
	// storing create() first when there is none.
	StreamValue(key any, create func() any) any
}

// Callbacks is what a filter can ask of its stream (Envoy's
// StreamDecoderFilterCallbacks and StreamEncoderFilterCallbacks together).
type Callbacks interface {
	// Context is cancelled when the stream ends or the downstream goes away.
	Context() context.Context
	// StreamInfo is the stream's record, read by access logs.
	StreamInfo() *streaminfo.Info
	// Route resolves (once, then cached) the route for the current request
	// headers; nil when no route matches.
	Route() Route
	// ClearRouteCache forgets the resolved route after headers changed.
	ClearRouteCache()
	// SendLocalReply answers the request locally with Envoy's local-reply
	// rules: body as text/plain, details into response_code_details, gRPC
	// requests answered with grpc-status. modify may edit the headers.
	SendLocalReply(code int, body string, details string, modify func(*hhttp.Headers))
	// EncodeHeaders, EncodeData and EncodeTrailers send the response through
	// the encoder filters that come after the calling filter (all of them,
	// for a decoder filter) and on to the downstream codec.
	EncodeHeaders(h *hhttp.Headers, endStream bool) error
	EncodeData(data []byte, endStream bool) error
	EncodeTrailers(t *hhttp.Headers) error
	// ResponseStarted reports whether response headers went downstream.
	ResponseStarted() bool
	// DownstreamRemoteAddress is the client address after x-forwarded-for
	// processing; DownstreamDirectRemoteAddress the socket peer.
	DownstreamRemoteAddress() netip.AddrPort
	DownstreamDirectRemoteAddress() netip.AddrPort
	// BufferLimit is the per-stream buffer limit in bytes (Envoy's
	// per_connection_buffer_limit_bytes, default 1 MiB).
	BufferLimit() int
	// StreamID is unique within the process.
	StreamID() uint64
	// SetIdleTimeout replaces the stream idle timeout for the rest of the
	// stream (a route's idle_timeout overrides the connection manager's
	// stream_idle_timeout; 0 disables it).
	SetIdleTimeout(d time.Duration)
	// SetAborter registers the filter to wake when the stream is aborted
	// from another goroutine (a stream timeout fired) or the downstream
	// failed; nil unregisters. Once SetAborter(nil) returns, Abort is not
	// running and will not be called.
	SetAborter(a Aborter)

	// BufferRequestBody holds the request until its whole body is in
	// (Envoy's StopIterationAndBuffer from decodeHeaders plus
	// StopIterationAndBuffer from decodeData, as the buffer and ext_authz
	// filters use it). Call it from DecodeHeaders when endStream is false;
	// with endStream true it returns (nil, nil, nil) at once.
	//
	// The connection manager reads the rest of the request body, passes
	// each chunk through DecodeData (and DecodeTrailers) of the decoder
	// filters before the caller — which may transform it with
	// InjectDecodedData — and accumulates what reaches the caller. It
	// returns the body and the trailers (nil when the request has none) once
	// the request is complete. The caller gets no DecodeData or
	// DecodeTrailers for what was returned.
	//
	// When more than max bytes reach the caller it stops reading and
	// returns what it read so far (more than max bytes; the caller may
	// truncate its own copy) with ErrBodyTooLarge; the rest of the request
	// is then usually unread. A buffering filter answers 413 (Envoy: SendLocalReply(413,
	// "Payload Too Large", "request_payload_too_large"), which also counts
	// http.<stat_prefix>.downstream_rq_too_large); a filter that accepts a
	// partial body (ext_authz allow_partial_message) may continue instead.
	// Any other error means the stream failed (the downstream reset, a
	// stream timeout fired, a filter before the caller answered): the
	// response is already decided and the caller returns Stop.
	//
	// When the caller then returns Continue from DecodeHeaders, the filters
	// after it get DecodeHeaders and then the body as one DecodeData, with
	// endStream true when the request is complete and has no trailers, then
	// DecodeTrailers with the trailers; the connection manager does not
	// read the buffered part again (after ErrBodyTooLarge it goes on
	// reading the rest, through every filter). When the caller returns Stop
	// the buffered body is dropped.
	//
	// body belongs to the stream and is valid until the stream ends; the
	// caller may change its bytes in place, replace it with
	// SetBufferedRequestBody, and edit the trailers in place (Envoy's
	// modifyDecodingBuffer). The headers the caller got in DecodeHeaders are
	// still the request's: a filter that changes the body's length sets
	// content-length itself. It costs nothing to filters that never call it.
	BufferRequestBody(max int) (body []byte, trailers *hhttp.Headers, err error)
	// SetBufferedRequestBody replaces the body BufferRequestBody returned:
	// the filters after the caller get body instead. Call it from the same
	// DecodeHeaders, before returning Continue; the stream keeps body until
	// it ends. It does nothing when no body is buffered.
	SetBufferedRequestBody(body []byte)
	// InjectDecodedData passes data to the decoder filters after the
	// calling one (Envoy's injectDecodedDataToFilterChain): a filter that
	// transforms the request body (decompression) calls it from DecodeData
	// or DecodeTrailers with the transformed bytes and returns Stop from
	// DecodeData for the original. endStream ends the request body; a
	// filter that injects before its DecodeTrailers returns Continue passes
	// endStream false. data is only valid for the call, as in DecodeData.
	// It does nothing when called from DecodeHeaders (the filters after the
	// caller have not seen the headers yet) or outside a decode event.
	InjectDecodedData(data []byte, endStream bool)
}

// ErrBodyTooLarge is returned by Callbacks.BufferRequestBody when the
// request body exceeds the caller's limit.
var ErrBodyTooLarge = errors.New("httpfilter: request body too large")

// Envoy's strings for a request body over a buffer limit
// (FilterManager: Http::Code::PayloadTooLarge,
// ResponseCodeDetails::RequestPayloadTooLarge).
const (
	// BodyTooLarge is the local reply body: CodeUtility::toString(413).
	BodyTooLarge = "Payload Too Large"
	// DetailsBodyTooLarge is the response_code_details.
	DetailsBodyTooLarge = "request_payload_too_large"
)

// Aborter is woken when its stream is aborted: Abort must unblock any I/O
// the filter is waiting on (e.g. set a past deadline on an upstream
// connection). It may run on another goroutine than the stream's, while the
// filter is blocked; it must not block.
type Aborter interface {
	Abort()
}

// Filter is what a Factory returns: a DecoderFilter, an EncoderFilter, or both.
type Filter any

// Factory builds one filter instance per stream. It must be cheap: config
// was interpreted when the factory was built.
type Factory func(cb Callbacks) Filter

// BuildContext is what a filter factory may use when it is built, once per
// config snapshot.
type BuildContext struct {
	// Path is the YAML path of the filter's typed_config, for errors.
	Path string
	// Name is the filter's name in the connection manager's http_filters:
	// the key its typed_per_filter_config entries use. Empty when building
	// a per-route config.
	Name string
	// StatPrefix is the connection manager's "http.<stat_prefix>." prefix.
	StatPrefix string
	// Stats is the process store; look stats up here, keep the pointers.
	Stats *stats.Store
	// Clusters gives access to the cluster manager for filters that call
	// upstreams (ext_authz, ratelimit, jwks). Its concrete type is
	// *upstream.Manager; it is an interface here to keep this package small.
	Clusters any
	// ServerContext carries process-wide services (set by the server).
	ServerContext any
}

// Extension is one HTTP filter kind.
type Extension[C proto.Message] struct {
	// Name is the Envoy name, e.g. "envoy.filters.http.router".
	Name string
	// Config is an empty config message; its type URL keys the registry.
	Config C
	// PerRoute, when set, is the empty per-route config message accepted in
	// typed_per_filter_config.
	PerRoute proto.Message
	// Build interprets cfg once per snapshot.
	Build func(cfg C, ctx BuildContext) (Factory, error)
	// BuildPerRoute interprets a per-route config once per snapshot; the
	// result is what Route.PerFilterConfig returns.
	BuildPerRoute func(cfg proto.Message, ctx BuildContext) (any, error)
	// Terminal is true for the filter that must come last (the router).
	Terminal bool
}

// Entry is a registered extension with its config type erased.
type Entry struct {
	Name          string
	NewConfig     func() proto.Message
	NewPerRoute   func() proto.Message
	Build         func(cfg proto.Message, ctx BuildContext) (Factory, error)
	BuildPerRoute func(cfg proto.Message, ctx BuildContext) (any, error)
	Terminal      bool
}

// Registry holds every HTTP filter.
var Registry = registry.New[*Entry]("HTTP filter")

// Register adds an HTTP filter; call it from the extension's init.
func Register[C proto.Message](e Extension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("httpfilter: %s registered without Build", e.Name))
	}
	entry := &Entry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Factory, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
		BuildPerRoute: e.BuildPerRoute,
		Terminal:      e.Terminal,
	}
	var extra []proto.Message
	if e.PerRoute != nil {
		pr := e.PerRoute
		entry.NewPerRoute = func() proto.Message { return pr.ProtoReflect().New().Interface() }
		if e.BuildPerRoute == nil {
			panic(fmt.Sprintf("httpfilter: %s has PerRoute without BuildPerRoute", e.Name))
		}
	}
	Registry.Register(e.Name, e.Config, entry, extra...)
	if e.PerRoute != nil {
		PerRouteRegistry.Register(e.Name, e.PerRoute, entry)
	}
}

// PerRouteRegistry maps per-route config type URLs to their filter, for
// typed_per_filter_config.
var PerRouteRegistry = registry.New[*Entry]("HTTP filter per-route config")
