package http3

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
	"github.com/herald-proxy/herald/internal/http/codec/http2"
)

// maxResponseHeadersCount bounds the fields of a response header or
// trailer section: Envoy's common_http_protocol_options.max_headers_count
// default (100), which its codecs apply to upstream responses as the
// HTTP/1.1 client does (http1.ClientConn.MaxResponseHeadersCount). quic-go
// bounds only their size (ClientOptions.MaxResponseHeadersBytes).
const maxResponseHeadersCount = 100

var (
	errNoRequest      = errors.New("http3: ReadHeaders before WriteHeaders")
	errStreamClosed   = errors.New("http3: stream closed")
	errTooManyHeaders = errors.New("http3: upstream response has too many headers")
	// ErrRequestBodyAborted is returned by WriteData and WriteTrailers
	// when quic-go stopped sending the request body (the upstream answered
	// and sent STOP_SENDING, or reset the stream). It is the HTTP/2
	// client's error value, so the router treats an early HTTP/3 response
	// as it does an HTTP/2 one (RFC 9114 §4.1: a server may answer before
	// the request is complete).
	ErrRequestBodyAborted = http2.ErrRequestBodyAborted
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
	c      *Client
	hp     *hostPool
	pc     *poolConn
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the writer until the request is handed to quic-go.
	req     *nethttp.Request
	url     url.URL
	body    *requestBody // nil without a request body
	started bool         // WriteHeaders ran
	async   bool         // RoundTrip runs on its own goroutine, result on resCh
	resCh   chan roundTripResult

	// roundTrip is set by whichever comes first: the call to RoundTrip or
	// Close (the request never went out).
	roundTrip atomic.Bool

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

func newUpstreamStream(ctx context.Context, c *Client, hp *hostPool, pc *poolConn) *upstreamStream {
	s := &upstreamStream{c: c, hp: hp, pc: pc}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

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
		return fmt.Errorf("http3: upstream response: %w", os.ErrDeadlineExceeded)
	}
	return err
}

// WriteHeaders implements hhttp.UpstreamStream. With a body to come, the
// request starts at once (HEADERS go out now, so full-duplex exchanges
// work). With endStream the request is complete and ReadHeaders starts it
// on the reader's goroutine, saving a goroutine per headers-only request.
func (s *upstreamStream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	if s.started {
		return errors.New("http3: request headers written twice")
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
		res, err := s.send()
		s.resCh <- roundTripResult{res: res, err: err}
	}()
	return nil
}

// send runs the request on the connection. A request that could not open
// a stream marks the connection unusable (quic-go's "conn unusable":
// GOAWAY received or the connection failed), so the next request dials.
func (s *upstreamStream) send() (*nethttp.Response, error) {
	res, err := s.pc.cc.RoundTrip(s.req)
	if err != nil && (s.pc.qc.Context().Err() != nil || strings.Contains(err.Error(), "conn unusable")) {
		s.pc.unusable.Store(true)
	}
	return res, err
}

func (s *upstreamStream) buildRequest(h *hhttp.Headers, endStream bool) error {
	method := h.Method()
	if method == "" {
		return errors.New("http3: request headers without :method")
	}
	if _, ok := h.Lookup(hhttp.Protocol); ok {
		// RFC 9220 extended CONNECT (WebSocket over HTTP/3).
		return errors.New("http3: extended CONNECT to an HTTP/3 upstream is not supported")
	}
	scheme := h.Scheme()
	if scheme == "" {
		scheme = "https"
	}
	s.url = url.URL{Scheme: scheme, Host: h.Authority()}
	path := h.Path()
	switch {
	case path == "" && method == nethttp.MethodConnect:
	case strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//"), path == "*":
		// Opaque makes quic-go send :path byte for byte (URL.RequestURI
		// returns it unchanged, query included).
		s.url.Opaque = path
	default:
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return fmt.Errorf("http3: bad :path %q: %w", path, err)
		}
		s.url.Path, s.url.RawPath, s.url.RawQuery = u.Path, u.RawPath, u.RawQuery
	}

	m := make(nethttp.Header, len(h.Fields))
	fillHeader(m, h)
	if _, ok := m["User-Agent"]; !ok {
		// A key with no value stops quic-go adding its own user-agent.
		m["User-Agent"] = nil
	}
	s.req = (&nethttp.Request{
		Method:     method,
		URL:        &s.url,
		Proto:      "HTTP/3.0",
		ProtoMajor: 3,
		Header:     m,
		Host:       s.url.Host,
	}).WithContext(s.ctx)
	if endStream {
		return nil
	}
	s.req.ContentLength = -1
	if cl := h.Get("content-length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("http3: bad content-length %q", cl)
		}
		// quic-go treats 0 with a body as unknown (-1): a 0-length body
		// can still end with trailers.
		s.req.ContentLength = n
	}
	pr, pw := io.Pipe()
	s.body = &requestBody{pr: pr, pw: pw, req: s.req}
	s.req.Body = s.body
	return nil
}

// WriteData implements hhttp.UpstreamStream. It blocks until quic-go has
// taken p (flow control applies back-pressure to the caller).
func (s *upstreamStream) WriteData(p []byte, endStream bool) error {
	if s.body == nil {
		return errors.New("http3: request body after end of stream")
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
		return errors.New("http3: request trailers after end of stream")
	}
	// quic-go sends req.Trailer after the body's EOF, reading it on its
	// body goroutine; requestBody.Read fills it just before returning EOF.
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
// response headers (quic-go skips 1xx) and sets :status plus the fields.
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
		r.res, r.err = s.send()
	}
	if r.err != nil {
		return false, s.readErr(r.err)
	}
	s.res = r.res
	h.Reset()
	h.Fields = append(h.Fields, hhttp.HeaderField{Name: hhttp.Status, Value: hhttp.StatusText3(r.res.StatusCode)})
	appendFields(h, r.res.Header)
	if len(h.Fields) > maxResponseHeadersCount+1 { // and :status
		// The stream is reset (Close closes the unread body).
		return false, errTooManyHeaders
	}
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
		if len(s.resTrailers.Fields) > maxResponseHeadersCount {
			s.resTrailers.Reset()
			return n, errTooManyHeaders
		}
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
// to its end, resets the stream (H3_REQUEST_CANCELLED); the connection
// stays in the pool either way, as HTTP/3 resets are per stream.
func (s *upstreamStream) Close(err error) {
	if s.closed.Swap(true) {
		return
	}
	if s.roundTrip.CompareAndSwap(false, true) {
		// The request never reached quic-go.
		s.cancel()
		s.SetReadDeadline(time.Time{})
		s.c.release(s.hp, s.pc)
		return
	}
	if s.body != nil {
		// A request body not ended yet (an error, or a Close before the
		// end) must wake quic-go's body goroutine, blocked in
		// requestBody.Read otherwise for good: cancelling the context
		// resets the stream but does not close the body. After pw.Close
		// this is a no-op.
		if err == nil {
			err = errStreamClosed
		}
		s.body.pw.CloseWithError(err)
	}
	if s.res != nil {
		// Closing an unfinished response body resets the stream.
		s.res.Body.Close()
	}
	// Cancelling also ends a RoundTrip still waiting for headers and a
	// request body quic-go is still sending.
	s.cancel()
	s.SetReadDeadline(time.Time{})
	s.c.release(s.hp, s.pc)
}

// requestBody is the request body quic-go reads: a pipe fed by WriteData,
// with the trailers handed over at EOF.
type requestBody struct {
	pr       *io.PipeReader
	pw       *io.PipeWriter
	req      *nethttp.Request
	trailers *hhttp.Headers // written by WriteTrailers before pw.Close
}

// Read implements io.Reader; it runs on quic-go's request-body goroutine.
func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.pr.Read(p)
	if err == io.EOF && b.trailers != nil {
		b.req.Trailer = make(nethttp.Header, b.trailers.Len())
		fillHeader(b.req.Trailer, b.trailers)
		b.trailers = nil
	}
	return n, err
}

// Close implements io.Closer: quic-go calls it when it stops sending the
// body, which makes a blocked WriteData fail.
func (b *requestBody) Close() error {
	b.pr.CloseWithError(ErrRequestBodyAborted)
	return nil
}

// fillHeader copies the regular (non-pseudo) fields of h into m, one
// allocation for all values; quic-go lowercases names when it encodes
// them and drops connection-specific fields (RFC 9114 §4.2).
func fillHeader(m nethttp.Header, h *hhttp.Headers) {
	vals := make([]string, len(h.Fields))
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) > 0 && f.Name[0] == ':' {
			continue
		}
		k := f.Name
		if k == "user-agent" {
			// quic-go looks the user agent up by its canonical key.
			k = "User-Agent"
		}
		vals[i] = f.Value
		if vv, ok := m[k]; ok && len(vv) > 0 {
			m[k] = append(vv, f.Value)
			continue
		}
		m[k] = vals[i : i+1 : i+1]
	}
}

// appendFields appends every field of m to h with lowercase names, in map
// order (quic-go decodes fields into a map).
func appendFields(h *hhttp.Headers, m nethttp.Header) {
	for k, vv := range m {
		name := strings.ToLower(k)
		for _, v := range vv {
			h.Fields = append(h.Fields, hhttp.HeaderField{Name: name, Value: v})
		}
	}
}
