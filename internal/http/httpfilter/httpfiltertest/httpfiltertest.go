package httpfiltertest

import (
	"context"
	"crypto/x509"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// FilterPath is where BuildContext says the filter's config sits in a
// bootstrap; config errors start with it.
const FilterPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"

// Parse decodes a YAML fragment into m as the loader does and requires it to
// pass Envoy's validation rules; it returns m.
func Parse[M proto.Message](t testing.TB, fragment string, m M) M {
	t.Helper()
	if _, err := bootstrap.Unmarshal("f.yaml", []byte(fragment), m); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if v, ok := any(m).(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
		}
	}
	return m
}

// Unmarshal decodes a YAML fragment into m as the loader does, without
// Envoy's validation rules.
func Unmarshal(m proto.Message, fragment string) (*bootstrap.Index, error) {
	return bootstrap.Unmarshal("f.yaml", []byte(fragment), m)
}

// BuildContext is the context of the filter called name at FilterPath, under
// the "http.ingress." stat prefix, with stats in store.
func BuildContext(name string, store *stats.Store) httpfilter.BuildContext {
	return httpfilter.BuildContext{Path: FilterPath, Name: name, StatPrefix: "http.ingress.", Stats: store}
}

// Request returns the headers of a GET / for example.com.
func Request() *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Path, "/")
	h.Add(hhttp.Authority, "example.com")
	return h
}

// Response returns response headers with only :status code.
func Response(code int) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, strconv.Itoa(code))
	return h
}

// Route is a matched route that returns per-filter configs by filter name.
type Route map[string]any

// PerFilterConfig implements httpfilter.Route.
func (r Route) PerFilterConfig(name string) any { return r[name] }

// ListRoute is a matched route that lists every level's config, least
// specific first, whatever the filter's name.
type ListRoute struct {
	Route
	Levels []any
}

// AppendPerFilterConfigs implements httpfilter.PerFilterConfigLister.
func (r ListRoute) AppendPerFilterConfigs(dst []any, _ string) []any {
	return append(dst, r.Levels...)
}

// Reply is one response the fake recorded.
type Reply struct {
	Code    int
	Body    string
	Details string // response_code_details when the headers were encoded
	Headers *hhttp.Headers
}

// Callbacks is a one-filter stream: local replies run through Filter's own
// encoder, as the connection manager runs them through every encoder
// filter, and every encoded response is recorded in Replies. The zero value
// is a stream without a route.
type Callbacks struct {
	// Ctx is what Context returns; nil means context.Background().
	Ctx context.Context
	// MatchedRoute is what Route returns.
	MatchedRoute httpfilter.Route
	// Info is the stream's record.
	Info streaminfo.Info
	// Filter, when it is an httpfilter.EncoderFilter, sees every response
	// encoded through the callbacks.
	Filter httpfilter.Filter
	// GRPC makes local replies gRPC ones: :status 200 and grpc-status 14.
	GRPC bool
	// Replies are the responses encoded so far, oldest first.
	Replies []Reply

	// RequestBody and RequestTrailers are the rest of the request that
	// BufferRequestBody returns (a copy of RequestBody).
	RequestBody     []byte
	RequestTrailers *hhttp.Headers
	// Buffered is the body BufferRequestBody returned, replaced by
	// SetBufferedRequestBody: what the filters after the caller would get.
	Buffered []byte
	// Injected collects the data passed to InjectDecodedData; InjectedEnd
	// is the last call's endStream.
	Injected    []byte
	InjectedEnd bool
	// Encoded collects the data passed to EncodeData; EncodedEnd is the
	// last call's endStream. EncodedTrailers are the trailers passed to
	// EncodeTrailers.
	Encoded         []byte
	EncodedEnd      bool
	EncodedTrailers *hhttp.Headers
	// Values is the stream's filter state (httpfilter.StreamState); nil
	// until a filter stores a value. Filters sharing a Callbacks share it.
	Values map[any]any
	// TLS and PeerCert are what httpfilter.ConnectionInfo reports of the
	// downstream connection.
	TLS      bool
	PeerCert *x509.Certificate
}

var (
	_ httpfilter.Callbacks      = (*Callbacks)(nil)
	_ httpfilter.StreamState    = (*Callbacks)(nil)
	_ httpfilter.ConnectionInfo = (*Callbacks)(nil)
)

// DownstreamTLS implements httpfilter.ConnectionInfo.
func (cb *Callbacks) DownstreamTLS() bool { return cb.TLS }

// PeerCertificate implements httpfilter.ConnectionInfo.
func (cb *Callbacks) PeerCertificate() *x509.Certificate {
	if !cb.TLS {
		return nil
	}
	return cb.PeerCert
}

// StreamValue implements httpfilter.StreamState.
func (cb *Callbacks) StreamValue(key any, create func() any) any {
	if v, ok := cb.Values[key]; ok {
		return v
	}
	if cb.Values == nil {
		cb.Values = map[any]any{}
	}
	v := create()
	cb.Values[key] = v
	return v
}

// Context implements httpfilter.Callbacks.
func (cb *Callbacks) Context() context.Context {
	if cb.Ctx != nil {
		return cb.Ctx
	}
	return context.Background()
}

// StreamInfo implements httpfilter.Callbacks.
func (cb *Callbacks) StreamInfo() *streaminfo.Info { return &cb.Info }

// Route implements httpfilter.Callbacks.
func (cb *Callbacks) Route() httpfilter.Route { return cb.MatchedRoute }

// ClearRouteCache implements httpfilter.Callbacks; it does nothing.
func (cb *Callbacks) ClearRouteCache() {}

// ResponseStarted implements httpfilter.Callbacks: true once a response was
// encoded.
func (cb *Callbacks) ResponseStarted() bool { return len(cb.Replies) > 0 }

// DownstreamRemoteAddress implements httpfilter.Callbacks; it is the zero
// address.
func (cb *Callbacks) DownstreamRemoteAddress() netip.AddrPort { return netip.AddrPort{} }

// DownstreamDirectRemoteAddress implements httpfilter.Callbacks; it is the
// zero address.
func (cb *Callbacks) DownstreamDirectRemoteAddress() netip.AddrPort { return netip.AddrPort{} }

// BufferLimit implements httpfilter.Callbacks: 1 MiB.
func (cb *Callbacks) BufferLimit() int { return 1 << 20 }

// StreamID implements httpfilter.Callbacks: always 1.
func (cb *Callbacks) StreamID() uint64 { return 1 }

// SetIdleTimeout implements httpfilter.Callbacks; it does nothing.
func (cb *Callbacks) SetIdleTimeout(time.Duration) {}

// SetAborter implements httpfilter.Callbacks; it does nothing.
func (cb *Callbacks) SetAborter(httpfilter.Aborter) {}

// EncodeData implements httpfilter.Callbacks: the data is appended to
// Encoded (it does not go through Filter's encoder).
func (cb *Callbacks) EncodeData(data []byte, end bool) error {
	cb.Encoded = append(cb.Encoded, data...)
	cb.EncodedEnd = end
	return nil
}

// EncodeTrailers implements httpfilter.Callbacks: the trailers are
// recorded in EncodedTrailers.
func (cb *Callbacks) EncodeTrailers(t *hhttp.Headers) error {
	cb.EncodedTrailers = t
	return nil
}

// BufferRequestBody implements httpfilter.Callbacks: it returns a copy of
// RequestBody and RequestTrailers, or the copy with
// httpfilter.ErrBodyTooLarge when RequestBody is longer than max.
func (cb *Callbacks) BufferRequestBody(max int) ([]byte, *hhttp.Headers, error) {
	cb.Buffered = append([]byte(nil), cb.RequestBody...)
	if len(cb.Buffered) > max {
		return cb.Buffered, nil, httpfilter.ErrBodyTooLarge
	}
	return cb.Buffered, cb.RequestTrailers, nil
}

// SetBufferedRequestBody implements httpfilter.Callbacks: it replaces
// Buffered.
func (cb *Callbacks) SetBufferedRequestBody(body []byte) { cb.Buffered = body }

// InjectDecodedData implements httpfilter.Callbacks: data is appended to
// Injected.
func (cb *Callbacks) InjectDecodedData(data []byte, end bool) {
	cb.Injected = append(cb.Injected, data...)
	cb.InjectedEnd = end
}

// EncodeHeaders implements httpfilter.Callbacks: h goes through Filter's
// encoder, then is recorded as a Reply.
func (cb *Callbacks) EncodeHeaders(h *hhttp.Headers, end bool) error {
	if e, ok := cb.Filter.(httpfilter.EncoderFilter); ok {
		e.EncodeHeaders(h, end)
	}
	cb.Replies = append(cb.Replies, Reply{Code: h.StatusCode(), Details: cb.Info.ResponseCodeDetails, Headers: h})
	return nil
}

// SendLocalReply implements httpfilter.Callbacks: it records details, encodes
// the reply's headers and records code and body on the Reply.
func (cb *Callbacks) SendLocalReply(code int, body, details string, modify func(*hhttp.Headers)) {
	cb.Info.ResponseCodeDetails = details
	h := &hhttp.Headers{}
	if cb.GRPC {
		h.Add(hhttp.Status, "200")
		h.Add("grpc-status", "14")
	} else {
		h.Add(hhttp.Status, strconv.Itoa(code))
	}
	if modify != nil {
		modify(h)
	}
	cb.EncodeHeaders(h, body == "")
	cb.Replies[len(cb.Replies)-1].Code = code
	cb.Replies[len(cb.Replies)-1].Body = body
}

// ConnCallbacks adds httpfilter.ConnectionState to Callbacks: streams whose
// ConnCallbacks share Conn share a connection.
type ConnCallbacks struct {
	*Callbacks
	// Conn holds the connection's values; it must not be nil.
	Conn *sync.Map
}

var _ httpfilter.ConnectionState = ConnCallbacks{}

// ConnectionValue implements httpfilter.ConnectionState.
func (cb ConnCallbacks) ConnectionValue(key any, create func() any) any {
	v, _ := cb.Conn.LoadOrStore(key, create())
	return v
}

// CheckBuildErr fails t unless err is what a build at FilterPath should
// return: nil when wantErr is "", else an error containing FilterPath
// followed by wantErr (the field path below the filter's config, then the
// message).
func CheckBuildErr(t testing.TB, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), FilterPath+wantErr) {
		t.Fatalf("build error %v, want it to contain %q", err, FilterPath+wantErr)
	}
}
