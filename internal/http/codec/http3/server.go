package http3

import (
	"context"
	"errors"
	"io"
	"log/slog"
	nethttp "net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// ALPN is the application protocol HTTP/3 negotiates over QUIC (RFC 9114 §3.1).
const ALPN = quichttp3.NextProtoH3

// Protocol is what ServerStream.Protocol returns for HTTP/3 streams (Envoy's
// %PROTOCOL% spelling).
const Protocol = "HTTP/3"

// errCodeNoError is H3_NO_ERROR (RFC 9114 §8.1).
const errCodeNoError = quic.ApplicationErrorCode(quichttp3.ErrCodeNoError)

// defaultDrainTimeout is Envoy's HCM drain_timeout default (5 s), used when
// ServerOptions.DrainTimeout is zero.
const defaultDrainTimeout = 5 * time.Second

// Conn is implemented by the net.Conn that a QUIC listener hands to the
// terminal network filter: it carries the accepted QUIC connection.
type Conn interface {
	QUICConn() *quic.Conn
}

// Serve serves HTTP/3 on an accepted QUIC connection until it closes,
// calling h.ServeStream once per request stream, each on its own
// goroutine. When drain is closed it sends GOAWAY and, once
// opts.DrainTimeout has passed, closes the connection as soon as no stream
// is active (open streams are not cut, as Envoy's drain sequence). Serve
// closes qc before it returns; a connection closed with H3_NO_ERROR
// returns nil.
func Serve(qc *quic.Conn, opts hhttp.ServerOptions, h hhttp.StreamHandler, drain <-chan struct{}) error {
	a := &adapter{h: h, qc: qc, scheme: opts.Scheme, maxHeadersCount: opts.MaxRequestHeadersCount,
		goAway: make(chan struct{}), idle: make(chan struct{})}
	if a.scheme == "" {
		a.scheme = "https"
	}
	if o := opts.HTTP3; o != nil {
		a.opts = *o
	}
	srv := &quichttp3.Server{
		Handler:        a,
		MaxHeaderBytes: opts.MaxRequestHeadersBytes,
		IdleTimeout:    opts.IdleTimeout,
		Logger:         slog.New(slog.DiscardHandler),
	}
	grace := opts.DrainTimeout
	if grace <= 0 {
		grace = defaultDrainTimeout
	}
	done := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		select {
		case <-drain:
			// Envoy's drain sequence (ConnectionManagerImpl::
			// startDrainSequence, onDrainTimeout): GOAWAY now; once the
			// drain timeout has passed the connection closes as soon as
			// no stream is active (checkForDeferredClose) — active
			// streams are not cut, as in the HTTP/2 codec. The listener's
			// drain, max_connection_duration and
			// max_requests_per_connection all come here.
			a.closeWhenIdle(srv, nil, done, 0, grace)
		case <-a.goAway:
			a.closeWhenIdle(srv, drain, done, grace, 0)
		case <-done:
		}
	}()
	err := srv.ServeQUICConn(qc)
	close(done)
	qc.CloseWithError(errCodeNoError, "")
	<-drained
	if errors.Is(err, nethttp.ErrServerClosed) {
		err = nil
	}
	return err
}

// adapter turns quic-go's per-request handler calls into ServeStream
// calls. Immutable but for the idle-close state (upgrade.go).
type adapter struct {
	h               hhttp.StreamHandler
	qc              *quic.Conn
	scheme          string
	maxHeadersCount int
	opts            hhttp.HTTP3Options

	// active counts the request streams being served; closing is set by
	// CloseConnWhenIdle, which closes goAway once; idle is closed once
	// the connection is closing and no stream is left.
	active    atomic.Int64
	closing   atomic.Bool
	goAwayOne sync.Once
	goAway    chan struct{}
	idleOnce  sync.Once
	idle      chan struct{}
}

// ServeHTTP implements net/http.Handler: one request stream.
func (a *adapter) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	a.active.Add(1)
	defer a.streamDone()
	s := &stream{w: w, req: r, a: a}
	s.flusher, _ = w.(interface{ FlushError() error })
	s.fill(a.scheme)
	if s.extConnect && !a.opts.AllowExtendedConnect {
		// Envoy: a :protocol request without allow_extended_connect is an
		// invalid HTTP header (EnvoyQuicServerStream::OnInitialHeadersComplete).
		a.invalidMessage(w)
		return
	}
	// quic-go does not say whether the client ended the stream with its
	// HEADERS frame: content-length: 0 marks a request bodiless, and for
	// the methods whose requests carry no body in practice one byte is
	// read ahead (see peekEnd). Any other request without a body reads
	// io.EOF at once.
	s.noBody = r.ContentLength == 0
	if !s.noBody && r.ContentLength < 0 && bodilessMethod(r.Method) && r.Header["Expect"] == nil {
		s.peekEnd()
	}
	if a.maxHeadersCount > 0 && len(r.Header) > a.maxHeadersCount {
		// Envoy answers 431 when max_headers_count is exceeded.
		a.h.ServeCodecError(s, &hhttp.CodecError{Status: nethttp.StatusRequestHeaderFieldsTooLarge, Details: "http3.too_many_headers"})
		return
	}
	a.h.ServeStream(s)
	if !s.ended {
		// The handler returned without ending the response: reset the
		// stream rather than let quic-go finish it as a success.
		panic(nethttp.ErrAbortHandler)
	}
}

// stream is one HTTP/3 request stream seen as an hhttp.ServerStream. Owned
// by the goroutine quic-go runs the handler on.
type stream struct {
	a        *adapter
	w        nethttp.ResponseWriter
	flusher  interface{ FlushError() error }
	req      *nethttp.Request
	headers  hhttp.Headers
	trailers *hhttp.Headers
	noBody   bool
	eof      bool
	// peek holds the byte peekEnd read ahead (peeked is 1 until ReadBody
	// hands it out); peekErr is the error it got instead.
	peek    [1]byte
	peeked  int
	peekErr error

	// extConnect: the request is an extended CONNECT (RFC 9220),
	// presented as an HTTP/1.1 upgrade (upgrade.go).
	extConnect  bool
	headersSent bool // final response headers written
	deferFlush  bool // DeferHeadersFlush: the next headers wait for data
	ended       bool // the response ended (end of stream written)
}

var (
	_ hhttp.ServerStream    = (*stream)(nil)
	_ hhttp.HeadersDeferrer = (*stream)(nil)
	_ nethttp.Handler       = (*adapter)(nil)
)

// fill decodes the request into the stream model.
func (s *stream) fill(scheme string) {
	r := s.req
	n := 4
	for _, vs := range r.Header {
		n += len(vs)
	}
	// quic-go puts an extended CONNECT's :protocol in Proto.
	s.extConnect = r.Method == nethttp.MethodConnect && r.Proto != "HTTP/3.0"
	if s.extConnect {
		n += 2
	}
	s.headers.Fields = make([]hhttp.HeaderField, 0, n)
	plainConnect := r.Method == nethttp.MethodConnect && !s.extConnect
	s.headers.Add(hhttp.Method, r.Method)
	if !plainConnect {
		s.headers.Add(hhttp.Scheme, scheme)
	}
	s.headers.Add(hhttp.Authority, r.Host)
	if !plainConnect {
		s.headers.Add(hhttp.Path, r.RequestURI)
	}
	for k, vs := range r.Header {
		name := strings.ToLower(k)
		for _, v := range vs {
			s.headers.Fields = append(s.headers.Fields, hhttp.HeaderField{Name: name, Value: v})
		}
	}
	if s.extConnect {
		transformUpgradeRequestFromH3toH1(&s.headers, r.Proto)
	}
}

// peekEnd reads one body byte ahead so that a GET whose FIN came with its
// HEADERS frame is dispatched as headers-only (an HTTP/1.1 upstream then
// gets it without body framing, as from the other codecs). The byte, or
// the error, is handed out by the first ReadBody.
func (s *stream) peekEnd() {
	n, err := s.req.Body.Read(s.peek[:])
	switch {
	case n == 1:
		s.peeked = 1
	case err == io.EOF:
		s.eof = true
		s.collectTrailers()
		// Trailers without a body still need a body phase to arrive in.
		s.noBody = s.trailers == nil
	case err != nil:
		s.peekErr = err
	}
}

// bodilessMethod reports the methods whose requests have no body in
// practice (the ones herald's HTTP/1.1 client sends without framing when
// they end with their headers).
func bodilessMethod(m string) bool {
	switch m {
	case nethttp.MethodGet, nethttp.MethodHead, nethttp.MethodDelete, nethttp.MethodOptions, nethttp.MethodTrace:
		return true
	}
	return false
}

// RequestHeaders implements hhttp.ServerStream.
func (s *stream) RequestHeaders() *hhttp.Headers { return &s.headers }

// RequestEndStream implements hhttp.ServerStream.
func (s *stream) RequestEndStream() bool { return s.noBody }

// ReadBody implements hhttp.ServerStream.
func (s *stream) ReadBody(p []byte) (int, error) {
	if s.peeked > 0 && len(p) > 0 {
		p[0] = s.peek[0]
		s.peeked = 0
		return 1, nil
	}
	if s.peekErr != nil {
		return 0, s.peekErr
	}
	if s.eof || s.noBody {
		return 0, io.EOF
	}
	n, err := s.req.Body.Read(p)
	if err == io.EOF {
		s.eof = true
		s.collectTrailers()
	}
	return n, err
}

// collectTrailers copies the request trailers quic-go decoded at the end
// of the body.
func (s *stream) collectTrailers() {
	if len(s.req.Trailer) == 0 {
		return
	}
	t := &hhttp.Headers{}
	for k, vs := range s.req.Trailer {
		name := strings.ToLower(k)
		for _, v := range vs {
			t.Add(name, v)
		}
	}
	if t.Len() > 0 {
		s.trailers = t
	}
}

// RequestTrailers implements hhttp.ServerStream.
func (s *stream) RequestTrailers() *hhttp.Headers { return s.trailers }

// DeferHeadersFlush implements hhttp.HeadersDeferrer.
func (s *stream) DeferHeadersFlush() { s.deferFlush = true }

// WriteHeaders implements hhttp.ServerStream.
func (s *stream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	if s.ended {
		return errStreamEnded
	}
	hdr := s.w.Header()
	status := h.StatusCode()
	upgrade := false
	if s.extConnect && status == 101 {
		// Envoy's transformUpgradeResponseFromH1toH2, applied to HTTP/3
		// too: 101 becomes 200, without "content-length: 0".
		status, upgrade = 200, true
	}
	for _, f := range h.Fields {
		if strings.HasPrefix(f.Name, ":") || connectionSpecific(f.Name) {
			continue
		}
		if upgrade && f.Name == "content-length" && f.Value == "0" {
			continue
		}
		key := f.Name
		switch key {
		// quic-go consults these by their canonical spelling.
		case "content-length":
			key = "Content-Length"
		case "content-type":
			key = "Content-Type"
		case "date":
			key = "Date"
		}
		hdr[key] = append(hdr[key], f.Value)
	}
	if status >= 200 {
		// quic-go adds Date and sniffs Content-Type when they are absent; a
		// nil entry turns that off without sending a field.
		if _, ok := hdr["Date"]; !ok {
			hdr["Date"] = nil
		}
		if _, ok := hdr["Content-Type"]; !ok {
			hdr["Content-Type"] = nil
		}
	}
	s.w.WriteHeader(status)
	if status < 200 {
		// 1xx: sent at once by quic-go; the fields must not leak into the
		// final response.
		clear(hdr)
		return nil
	}
	s.headersSent = true
	if endStream {
		s.ended = true
		return nil
	}
	if s.deferFlush {
		s.deferFlush = false
		return nil
	}
	return s.flush()
}

// WriteData implements hhttp.ServerStream.
func (s *stream) WriteData(p []byte, endStream bool) error {
	if s.ended {
		return errStreamEnded
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return err
		}
	}
	if endStream {
		// quic-go finishes the stream (FIN) when the handler returns.
		s.ended = true
		return nil
	}
	return s.flush()
}

// WriteTrailers implements hhttp.ServerStream.
func (s *stream) WriteTrailers(t *hhttp.Headers) error {
	if s.ended {
		return errStreamEnded
	}
	hdr := s.w.Header()
	for _, f := range t.Fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		// quic-go sends the "Trailer:"-prefixed fields as a trailing
		// HEADERS frame when the handler returns.
		k := nethttp.TrailerPrefix + f.Name
		hdr[k] = append(hdr[k], f.Value)
	}
	s.ended = true
	return nil
}

func (s *stream) flush() error {
	if s.flusher == nil {
		return nil
	}
	return s.flusher.FlushError()
}

// Protocol implements hhttp.ServerStream.
func (s *stream) Protocol() string { return Protocol }

// Context implements hhttp.ServerStream: cancelled when the stream is
// reset or the connection closes.
func (s *stream) Context() context.Context { return s.req.Context() }

var errStreamEnded = errors.New("http3: write after end of stream")

// connectionSpecific reports the fields HTTP/3 forbids (RFC 9114 §4.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}
