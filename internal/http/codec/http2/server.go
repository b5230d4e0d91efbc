package http2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	nethttp "net/http"
	"strings"
	"sync"

	xhttp2 "golang.org/x/net/http2"

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
// list's size; x/net counts it against SETTINGS_MAX_HEADER_LIST_SIZE, Envoy's
// byteSize does not.
const hpackFieldOverhead = 32

// Envoy's HTTP/2 codec limits (1..2^31-1) from protocol.proto.
const maxSettingValue = math.MaxInt32

// Server serves downstream HTTP/2 connections for one listener configuration.
// Build it once per connection-manager config with NewServer and call
// ServeConn for every connection.
type Server struct {
	// Immutable after NewServer.
	template       xhttp2.Server // copied per connection (it carries per-Server shutdown state once configured)
	maxHeaderBytes int           // x/net's MaxHeaderBytes: Envoy's limit plus HPACK overhead
	maxHeadersSize int           // Envoy max_request_headers_kb in bytes
	maxHeadersN    int           // Envoy max_headers_count
	scheme         string
	errorLog       *log.Logger
}

// NewServer validates opts and translates them into x/net settings once.
// Zero fields take Envoy's defaults: MaxRequestHeadersBytes 60 KiB,
// MaxRequestHeadersCount 100, Scheme "http", and the Default* constants
// above for HTTP2.
func NewServer(opts hhttp.ServerOptions) (*Server, error) {
	s := &Server{
		maxHeadersSize: opts.MaxRequestHeadersBytes,
		maxHeadersN:    opts.MaxRequestHeadersCount,
		scheme:         opts.Scheme,
		errorLog:       slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	if s.maxHeadersSize <= 0 {
		s.maxHeadersSize = defaultMaxHeadersBytes
	}
	if s.maxHeadersN <= 0 {
		s.maxHeadersN = defaultMaxHeadersCount
	}
	switch s.scheme {
	case "":
		s.scheme = "http"
	case "http", "https":
	default:
		return nil, fmt.Errorf("http2: scheme %q: want http or https", opts.Scheme)
	}
	// x/net rejects a header list above MaxHeaderBytes (+320 bytes of its
	// own slack) counted with 32 bytes of overhead per field. Give it room
	// for that overhead on every allowed field so that any list within
	// Envoy's limits reaches ServeHTTP, where Envoy's own rule is applied.
	s.maxHeaderBytes = s.maxHeadersSize + hpackFieldOverhead*s.maxHeadersN

	streams, streamWin, connWin, err := http2Settings(opts.HTTP2)
	if err != nil {
		return nil, err
	}
	s.template = xhttp2.Server{
		MaxConcurrentStreams:         streams,
		MaxUploadBufferPerStream:     int32(streamWin),
		MaxUploadBufferPerConnection: int32(connWin),
		IdleTimeout:                  opts.IdleTimeout,
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
// h.ServeStream on its own goroutine for every stream (x/net runs one
// goroutine per stream). c must start with the client preface: when the
// caller sniffed bytes off c, wrap it with NewPeekedConn first. ServeConn
// closes c.
//
// Closing drain starts a graceful drain: the server sends GOAWAY(NO_ERROR),
// refuses new streams, lets in-flight streams finish and then closes the
// connection, as Envoy's connection manager does when its drain decision
// fires (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/draining).
// x/net sends a single GOAWAY carrying the last stream id it processed,
// not Envoy's two-step GOAWAY(2^31-1) then GOAWAY(last id). drain may be nil.
func (s *Server) ServeConn(c net.Conn, h hhttp.StreamHandler, drain <-chan struct{}) {
	h2 := s.template
	hs := &nethttp.Server{
		MaxHeaderBytes: s.maxHeaderBytes,
		ErrorLog:       s.errorLog,
	}
	a := &streamAdapter{srv: s, h: h}
	if drain != nil {
		// x/net starts a graceful shutdown of a ServeConn connection only
		// through the net/http.Server its http2.Server was configured on
		// (ConfigureServer registers startGracefulShutdown with
		// RegisterOnShutdown). A Server per connection keeps the drain
		// per connection; Shutdown returns at once since hs tracks no
		// listeners or HTTP/1 connections of its own.
		if err := xhttp2.ConfigureServer(hs, &h2); err != nil {
			s.errorLog.Printf("http2: configure server: %v", err)
			c.Close()
			return
		}
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-drain:
				_ = hs.Shutdown(context.Background())
			case <-done:
			}
		}()
	}
	h2.ServeConn(c, &xhttp2.ServeConnOpts{BaseConfig: hs, Handler: a})
}

// streamAdapter is the nethttp.Handler x/net calls once per stream, on the
// stream's goroutine.
type streamAdapter struct {
	srv *Server
	h   hhttp.StreamHandler
}

var streamPool = sync.Pool{New: func() any { return new(serverStream) }}

// ServeHTTP implements nethttp.Handler.
func (a *streamAdapter) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	s := streamPool.Get().(*serverStream)
	s.start(a.srv, w, r)
	if len(s.reqHeaders.Fields) > a.srv.maxHeadersN || byteSize(&s.reqHeaders) > a.srv.maxHeadersSize {
		// Envoy's HTTP/2 codec resets the stream when the header list
		// exceeds max_request_headers_kb or max_headers_count
		// (response_code_details "http2.too_many_headers",
		// source/common/http/http2/codec_impl.cc saveHeader); it does not
		// answer 431 on HTTP/2. ErrAbortHandler makes x/net send
		// RST_STREAM(INTERNAL_ERROR) without logging.
		s.finish()
		panic(nethttp.ErrAbortHandler)
	}
	a.h.ServeStream(s)
	ended := s.ended
	s.finish()
	if !ended {
		// The connection manager returned without ending the response
		// (upstream reset, internal error): x/net would otherwise end the
		// stream cleanly and a truncated body would look complete. Reset
		// it, as Envoy resets the downstream stream in that case.
		panic(nethttp.ErrAbortHandler)
	}
}

// flushErrorer is implemented by x/net's responseWriter.
type flushErrorer interface {
	FlushError() error
}

// serverStream is one HTTP/2 stream seen as an hhttp.ServerStream. It is
// pooled: every field is owned by the stream's handler goroutine between
// start and finish.
type serverStream struct {
	w           nethttp.ResponseWriter
	fl          flushErrorer
	r           *nethttp.Request
	reqHeaders  hhttp.Headers
	reqTrailers hhttp.Headers
	hasTrailers bool
	noBody      bool
	headersSent bool
	ended       bool
}

var _ hhttp.ServerStream = (*serverStream)(nil)

func (s *serverStream) start(srv *Server, w nethttp.ResponseWriter, r *nethttp.Request) {
	s.w, s.r = w, r
	s.fl, _ = w.(flushErrorer)
	// x/net leaves ContentLength 0 and no Content-Length header only when
	// the HEADERS frame carried END_STREAM.
	s.noBody = r.ContentLength == 0 && len(r.Header["Content-Length"]) == 0

	h := &s.reqHeaders
	if cap(h.Fields) < len(r.Header)+5 {
		h.Fields = make([]hhttp.HeaderField, 0, len(r.Header)+5)
	}
	h.Fields = append(h.Fields,
		hhttp.HeaderField{Name: hhttp.Method, Value: r.Method},
		hhttp.HeaderField{Name: hhttp.Scheme, Value: srv.scheme},
		hhttp.HeaderField{Name: hhttp.Authority, Value: r.Host},
	)
	// A plain CONNECT has no :path (RFC 9113 §8.5); x/net puts the
	// authority in RequestURI. Extended CONNECT (:protocol) keeps :path.
	if r.Method != nethttp.MethodConnect || len(r.Header[hhttp.Protocol]) > 0 {
		h.Fields = append(h.Fields, hhttp.HeaderField{Name: hhttp.Path, Value: r.RequestURI})
	}
	for k, vv := range r.Header {
		if len(k) > 0 && k[0] == ':' {
			for _, v := range vv {
				h.Add(k, v)
			}
			continue
		}
		name := lowerName(k)
		for _, v := range vv {
			h.Fields = append(h.Fields, hhttp.HeaderField{Name: name, Value: v})
		}
	}
	if len(r.Trailer) > 0 {
		// x/net moves the "trailer" request header into r.Trailer; give
		// the connection manager the declaration back.
		names := make([]string, 0, len(r.Trailer))
		for k := range r.Trailer {
			names = append(names, lowerName(k))
		}
		h.Fields = append(h.Fields, hhttp.HeaderField{Name: "trailer", Value: strings.Join(names, ", ")})
	}
}

// finish drops every reference so the pooled value holds nothing of the
// finished stream.
func (s *serverStream) finish() {
	clear(s.reqHeaders.Fields)
	clear(s.reqTrailers.Fields)
	fields, tfields := s.reqHeaders.Fields[:0], s.reqTrailers.Fields[:0]
	*s = serverStream{}
	s.reqHeaders.Fields, s.reqTrailers.Fields = fields, tfields
	streamPool.Put(s)
}

// RequestHeaders implements hhttp.ServerStream.
func (s *serverStream) RequestHeaders() *hhttp.Headers { return &s.reqHeaders }

// RequestEndStream implements hhttp.ServerStream.
func (s *serverStream) RequestEndStream() bool { return s.noBody }

// ReadBody implements hhttp.ServerStream. Trailers are collected when the
// body reports io.EOF. Only trailers the client declared in a "trailer"
// header arrive: x/net's server drops undeclared ones.
func (s *serverStream) ReadBody(p []byte) (int, error) {
	n, err := s.r.Body.Read(p)
	if err == io.EOF && !s.hasTrailers && len(s.r.Trailer) > 0 {
		s.hasTrailers = true
		appendFields(&s.reqTrailers, s.r.Trailer)
		if len(s.reqTrailers.Fields) == 0 {
			s.hasTrailers = false
		}
	}
	return n, err
}

// RequestTrailers implements hhttp.ServerStream.
func (s *serverStream) RequestTrailers() *hhttp.Headers {
	if !s.hasTrailers {
		return nil
	}
	return &s.reqTrailers
}

var errHeadersNotSent = errors.New("http2: response data before headers")

// WriteHeaders implements hhttp.ServerStream. Headers are flushed at once
// unless endStream is set: then HEADERS carries END_STREAM and goes out when
// ServeStream returns (x/net sends END_STREAM only when the handler is done).
func (s *serverStream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	status := h.StatusCode()
	if status < 100 {
		return fmt.Errorf("http2: response headers: bad :status %q", h.Get(hhttp.Status))
	}
	m := s.w.Header()
	fillHeader(m, h)
	if status < 200 {
		// 1xx: x/net writes it at once; clear the map for the final
		// response.
		s.w.WriteHeader(status)
		clear(m)
		return nil
	}
	// x/net adds content-type (sniffed), date and content-length when they
	// are absent; Envoy's codec adds none of them (the connection manager
	// owns date). A key with no values suppresses each without sending it.
	for _, k := range [...]string{"Content-Type", "Date", "Content-Length"} {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
	s.w.WriteHeader(status)
	s.headersSent = true
	if endStream {
		s.ended = true
		return nil
	}
	return s.flush()
}

// WriteData implements hhttp.ServerStream. Each chunk is flushed unless it is
// the last one, which goes out with END_STREAM when ServeStream returns.
func (s *serverStream) WriteData(p []byte, endStream bool) error {
	if !s.headersSent {
		return errHeadersNotSent
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return err
		}
	}
	if endStream {
		s.ended = true
		return nil
	}
	return s.flush()
}

// WriteTrailers implements hhttp.ServerStream. x/net sends them, with
// END_STREAM, when ServeStream returns (nethttp.TrailerPrefix keys).
func (s *serverStream) WriteTrailers(t *hhttp.Headers) error {
	if !s.headersSent {
		return errHeadersNotSent
	}
	m := s.w.Header()
	for i := range t.Fields {
		k := nethttp.TrailerPrefix + t.Fields[i].Name
		m[k] = append(m[k], t.Fields[i].Value)
	}
	s.ended = true
	return nil
}

func (s *serverStream) flush() error {
	if s.fl != nil {
		return s.fl.FlushError()
	}
	if f, ok := s.w.(nethttp.Flusher); ok {
		f.Flush()
	}
	return nil
}

// Protocol implements hhttp.ServerStream.
func (s *serverStream) Protocol() string { return "HTTP/2" }

// Context implements hhttp.ServerStream; x/net cancels it when the stream is
// reset or the connection closes.
func (s *serverStream) Context() context.Context { return s.r.Context() }
