package http2

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// ErrExtendedConnectNotSupported is returned by ReadHeaders when a request
// carrying HTTP/1.1 upgrade headers was to go out as an extended CONNECT
// (RFC 8441) but the upstream did not advertise
// SETTINGS_ENABLE_CONNECT_PROTOCOL in its first SETTINGS frame. Envoy
// sends the :protocol request regardless and the upstream resets it
// (https://github.com/envoyproxy/envoy/issues/20378: a Go upstream answers
// "invalid pseudo-header :protocol"); x/net refuses to send it, so herald's
// stream fails the same way, before any response headers, without the
// round trip.
var ErrExtendedConnectNotSupported = errors.New("http2: upstream does not support extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)")

// errExtendedConnectText is x/net's unexported errExtendedConnectNotSupported.
const errExtendedConnectText = "net/http: extended connect not supported by peer"

var (
	errNoRequest    = errors.New("http2: ReadHeaders before WriteHeaders")
	errStreamClosed = errors.New("http2: stream closed")
	// ErrRequestBodyAborted is returned by WriteData and WriteTrailers
	// when x/net stopped sending the request body: the upstream answered
	// with a status above 299 or reset the stream (x/net's heuristic: "On
	// error or status code 3xx, 4xx, 5xx, etc abort any ongoing write").
	ErrRequestBodyAborted = errors.New("http2: upstream stopped reading the request body")
)

type roundTripResult struct {
	res *nethttp.Response
	err error
}

// upstreamStream is one request/response exchange on a pooled connection.
// The write half (WriteHeaders, WriteData, WriteTrailers) and the read half
// (ReadHeaders, ReadBody, Trailers) each belong to one goroutine; Close may
// come from either.
type upstreamStream struct {
	// Immutable after newUpstreamStream.
	hp     *hostPool
	pc     *poolConn
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the writer until the request is handed to x/net.
	req     *nethttp.Request
	url     url.URL
	body    *requestBody // nil without a request body
	started bool         // WriteHeaders ran
	async   bool         // RoundTrip runs on its own goroutine, result on resCh
	resCh   chan roundTripResult

	// roundTrip is set by whichever comes first: the call to RoundTrip
	// (which consumes the connection's stream reservation) or Close (which
	// hands the reservation back unused).
	roundTrip atomic.Bool

	// upgrade is the HTTP/1.1 upgrade sent as an extended CONNECT
	// (RFC 8441), e.g. "websocket"; set by WriteHeaders, read by
	// ReadHeaders.
	upgrade string

	// Owned by the reader.
	res         *nethttp.Response
	resTrailers hhttp.Headers
	hasTrailers bool

	closed atomic.Bool

	// Read deadline (SetReadDeadline): when the timer fires the stream is
	// cancelled and expired makes the reader's error os.ErrDeadlineExceeded.
	timerMu sync.Mutex
	timer   *time.Timer
	expired atomic.Bool
}

var _ hhttp.UpstreamStream = (*upstreamStream)(nil)

// SetReadDeadline bounds the wait for the response, as a read deadline does
// on an HTTP/1.1 connection (the router's route and per-try timeouts): at t
// the stream is reset and a blocked or later ReadHeaders or ReadBody fails
// with an error wrapping os.ErrDeadlineExceeded. A zero t removes the
// deadline; a deadline that has passed cannot be lifted. Safe to call from
// any goroutine.
func (s *upstreamStream) SetReadDeadline(t time.Time) error {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if t.IsZero() {
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		s.expire()
		return nil
	}
	s.timer = time.AfterFunc(d, s.expire)
	return nil
}

func (s *upstreamStream) expire() {
	s.expired.Store(true)
	s.cancel()
}

// readErr turns the error of a stream cancelled by its read deadline into
// os.ErrDeadlineExceeded.
func (s *upstreamStream) readErr(err error) error {
	if err != nil && err != io.EOF && s.expired.Load() {
		return fmt.Errorf("http2: upstream response: %w", os.ErrDeadlineExceeded)
	}
	return err
}

func newUpstreamStream(ctx context.Context, hp *hostPool, pc *poolConn) *upstreamStream {
	s := &upstreamStream{hp: hp, pc: pc}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

// WriteHeaders implements hhttp.UpstreamStream. With a body to come, the
// request starts at once (HEADERS go out now, so full-duplex exchanges such
// as gRPC bidi streams work). With endStream the request is complete and
// ReadHeaders starts it on the reader's goroutine, saving a goroutine per
// headers-only request.
func (s *upstreamStream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	if s.started {
		return errors.New("http2: request headers written twice")
	}
	if err := s.buildRequest(h, endStream); err != nil {
		return err
	}
	s.started = true
	if endStream {
		return nil
	}
	s.async = true
	s.roundTrip.Store(true)
	s.resCh = make(chan roundTripResult, 1)
	go func() {
		res, err := s.pc.cc.RoundTrip(s.req)
		s.resCh <- roundTripResult{res: res, err: err}
	}()
	return nil
}

// buildRequest turns h into the x/net request. As Envoy's
// ClientStreamImpl::encodeHeaders (source/common/http/http2/codec_impl.cc):
// an HTTP/1.1 upgrade (an "upgrade" field and "connection: upgrade") goes
// out as an extended CONNECT (transformUpgradeRequestFromH1toH2 in
// source/common/http/utility.cc: :method CONNECT, :protocol from upgrade,
// upgrade and connection dropped, "content-length: 0" dropped); a plain
// CONNECT goes out without :scheme, :path and :protocol.
func (s *upstreamStream) buildRequest(h *hhttp.Headers, endStream bool) error {
	method := h.Method()
	if method == "" {
		return errors.New("http2: request headers without :method")
	}
	scheme := h.Scheme()
	if scheme == "" {
		scheme = "http"
	}
	s.url = url.URL{Scheme: scheme, Host: h.Authority()}
	path := h.Path()
	if isUpgrade(h) {
		s.upgrade = h.Get("upgrade")
		method = nethttp.MethodConnect
		if path == "" {
			path = "/"
		}
	}
	switch {
	case method == nethttp.MethodConnect && s.upgrade == "":
		// Plain CONNECT: x/net sends :method and :authority only.
	case strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//"):
		// Opaque makes x/net send :path byte for byte (URL.RequestURI
		// returns it unchanged, query included).
		s.url.Opaque = path
	case path == "*":
		s.url.Opaque = path
	default:
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return fmt.Errorf("http2: bad :path %q: %w", path, err)
		}
		s.url.Path, s.url.RawPath, s.url.RawQuery = u.Path, u.RawPath, u.RawQuery
	}

	m := make(nethttp.Header, len(h.Fields))
	fillHeader(m, h, s.upgrade != "")
	if s.upgrade != "" {
		// x/net sends :protocol from this key and waits for the
		// server's SETTINGS_ENABLE_CONNECT_PROTOCOL first.
		m[hhttp.Protocol] = []string{s.upgrade}
	}
	if _, ok := m["User-Agent"]; !ok {
		// A key with no value stops x/net adding "Go-http-client/2.0".
		m["User-Agent"] = nil
	}
	s.req = (&nethttp.Request{
		Method:     method,
		URL:        &s.url,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     m,
		Host:       s.url.Host,
	}).WithContext(s.ctx)
	if endStream {
		return nil
	}
	s.req.ContentLength = -1
	if cl := h.Get("content-length"); cl != "" && !(s.upgrade != "" && cl == "0") {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("http2: bad content-length %q", cl)
		}
		// x/net treats 0 with a body as unknown (-1): a 0-length body
		// can still end with trailers.
		s.req.ContentLength = n
	}
	pr, pw := io.Pipe()
	s.body = &requestBody{pr: pr, pw: pw, req: s.req}
	s.req.Body = s.body
	// A non-nil Trailer map tells x/net to read it after the body's EOF.
	// Without trailers it ends the stream with an empty DATA frame.
	s.req.Trailer = make(nethttp.Header)
	return nil
}

// WriteData implements hhttp.UpstreamStream. It blocks until x/net has
// taken p (flow control applies back-pressure to the caller).
func (s *upstreamStream) WriteData(p []byte, endStream bool) error {
	if s.body == nil {
		return errors.New("http2: request body after end of stream")
	}
	if len(p) > 0 {
		if _, err := s.body.pw.Write(p); err != nil {
			return bodyWriteErr(err)
		}
	}
	if endStream {
		return bodyWriteErr(s.body.pw.Close())
	}
	return nil
}

// WriteTrailers implements hhttp.UpstreamStream and ends the request.
func (s *upstreamStream) WriteTrailers(t *hhttp.Headers) error {
	if s.body == nil {
		return errors.New("http2: request trailers after end of stream")
	}
	// x/net reads req.Trailer on its writer goroutine after the body's
	// EOF; requestBody.Read copies these in just before returning it, so
	// the map is never written while x/net may read it.
	s.body.trailers = t.Clone()
	return bodyWriteErr(s.body.pw.Close())
}

func bodyWriteErr(err error) error {
	if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, ErrRequestBodyAborted) {
		return ErrRequestBodyAborted
	}
	return err
}

// ReadHeaders implements hhttp.UpstreamStream: it waits for the final
// response headers (x/net skips 1xx) and sets :status plus the fields.
func (s *upstreamStream) ReadHeaders(h *hhttp.Headers) (bool, error) {
	if !s.started {
		return false, errNoRequest
	}
	var r roundTripResult
	if s.async {
		r = <-s.resCh
	} else {
		if !s.roundTrip.CompareAndSwap(false, true) {
			return false, errStreamClosed
		}
		r.res, r.err = s.pc.cc.RoundTrip(s.req)
	}
	if r.err != nil {
		if s.upgrade != "" && r.err.Error() == errExtendedConnectText {
			return false, ErrExtendedConnectNotSupported
		}
		return false, s.readErr(r.err)
	}
	s.res = r.res
	h.Reset()
	if s.upgrade != "" && r.res.StatusCode == 200 {
		// Envoy's transformUpgradeResponseFromH2toH1: the tunnel is
		// presented to the router as the HTTP/1.1 upgrade it asked for.
		h.Fields = append(h.Fields, hhttp.HeaderField{Name: hhttp.Status, Value: "101"})
		appendFields(h, r.res.Header)
		h.Fields = append(h.Fields,
			hhttp.HeaderField{Name: "upgrade", Value: s.upgrade},
			hhttp.HeaderField{Name: "connection", Value: "upgrade"})
		return false, nil
	}
	h.Fields = append(h.Fields, hhttp.HeaderField{Name: hhttp.Status, Value: hhttp.StatusText3(r.res.StatusCode)})
	appendFields(h, r.res.Header)
	// x/net reports a response that ended with its HEADERS frame as
	// length 0 with no Content-Length to explain it; a HEAD response never
	// has a body.
	endStream := s.req.Method == nethttp.MethodHead ||
		r.res.ContentLength == 0 && len(r.res.Header["Content-Length"]) == 0
	return endStream, nil
}

// ReadBody implements hhttp.UpstreamStream.
func (s *upstreamStream) ReadBody(p []byte) (int, error) {
	if s.res == nil {
		return 0, errNoRequest
	}
	n, err := s.res.Body.Read(p)
	if err == io.EOF && !s.hasTrailers && len(s.res.Trailer) > 0 {
		appendFields(&s.resTrailers, s.res.Trailer)
		s.hasTrailers = len(s.resTrailers.Fields) > 0
	}
	return n, s.readErr(err)
}

// Trailers implements hhttp.UpstreamStream.
func (s *upstreamStream) Trailers() *hhttp.Headers {
	if !s.hasTrailers {
		return nil
	}
	return &s.resTrailers
}

// Close implements hhttp.UpstreamStream. err != nil, or a response not read
// to its end, resets the stream (RST_STREAM CANCEL); the connection stays in
// the pool either way, as HTTP/2 resets are per stream.
func (s *upstreamStream) Close(err error) {
	if s.closed.Swap(true) {
		return
	}
	if s.roundTrip.CompareAndSwap(false, true) {
		// The request never reached x/net.
		s.cancel()
		s.SetReadDeadline(time.Time{})
		s.hp.release(s.pc, true)
		return
	}
	if err != nil && s.body != nil {
		s.body.pw.CloseWithError(err)
	}
	if s.res != nil {
		// Closing an unfinished response body resets the stream.
		s.res.Body.Close()
	}
	// Cancelling also ends a RoundTrip still waiting for headers and a
	// request body x/net is still sending.
	s.cancel()
	s.SetReadDeadline(time.Time{})
	s.hp.release(s.pc, false)
}

// requestBody is the request body x/net reads: a pipe fed by WriteData, with
// the trailers handed over at EOF.
type requestBody struct {
	pr       *io.PipeReader
	pw       *io.PipeWriter
	req      *nethttp.Request
	trailers *hhttp.Headers // written by WriteTrailers before pw.Close
}

// Read implements io.Reader; it runs on x/net's request-writing goroutine.
func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.pr.Read(p)
	if err == io.EOF && b.trailers != nil {
		fillHeader(b.req.Trailer, b.trailers, false)
		b.trailers = nil
	}
	return n, err
}

// Close implements io.Closer: x/net calls it when it stops sending the
// body, which makes a blocked WriteData fail.
func (b *requestBody) Close() error {
	b.pr.CloseWithError(ErrRequestBodyAborted)
	return nil
}
