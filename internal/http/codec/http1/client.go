package http1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

const (
	// defaultMaxResponseHeadersBytes is Envoy's MAX_RESPONSE_HEADERS_KB
	// (80 KiB, source/common/http/http1/codec_impl.h).
	defaultMaxResponseHeadersBytes = 80 * 1024
)

var _ hhttp.UpstreamStream = (*ClientConn)(nil)

// ClientConn is the client side of HTTP/1.1 on one upstream connection. It
// carries one exchange at a time and implements hhttp.UpstreamStream for
// the current one.
//
// An exchange is: WriteHeaders, WriteData/WriteTrailers (the write half),
// ReadHeaders, ReadBody/Trailers (the read half), then Close. The two halves
// may run on two goroutines (one writer, one reader) provided WriteHeaders
// returns before ReadHeaders is called. Close is called once both halves are
// done, or at any time with a non-nil error (it then only closes the
// connection, which unblocks both halves).
//
// Ownership and pooling: the codec does not own a pool. Close decides
// whether the connection can carry another request (Reusable) and hands it
// back through OnRelease:
//   - reusable: Close first resets the exchange state (Reset), then calls
//     OnRelease(cc, true). From then on the callee owns cc: it may park it
//     and give it to the next exchange as is, or close it with CloseConn.
//   - not reusable: Close closes the connection, then calls
//     OnRelease(cc, false) so the owner can forget it.
//
// With OnRelease nil, a reusable connection stays open and owned by the
// caller, and a non-reusable one is closed.
type ClientConn struct {
	// OnRelease, when set, is called exactly once per exchange, by Close.
	OnRelease func(cc *ClientConn, reusable bool)
	// MaxResponseHeadersBytes bounds the status line plus headers of a
	// response. Zero means 80 KiB (Envoy's MAX_RESPONSE_HEADERS_KB).
	MaxResponseHeadersBytes int
	// MaxResponseHeadersCount bounds the number of response headers. Zero
	// means 100 (Envoy: cluster common_http_protocol_options.max_headers_count).
	MaxResponseHeadersCount int

	c     net.Conn
	rd    connReader
	bw    *bufio.Writer
	dead  atomic.Bool // the net.Conn is closed
	spans []fieldSpan

	// Write half; reqHead is read by the read half after WriteHeaders.
	reqStarted  bool
	reqHead     bool
	reqClose    bool
	reqChunked  bool
	reqLength   bool
	reqRaw      bool // an upgrade request: the body is raw, its end half-closes (upgrade.go)
	reqConnect  bool // a CONNECT (or EnableTCPTunneling) request: a 2xx response makes the tunnel
	tcpTunnel   bool // EnableTCPTunneling: the request is a tunnel whatever its method (tcp_tunnel.go)
	reqRemain   int64
	reqDone     atomic.Bool
	writeFailed atomic.Bool
	// raw holds the payload of an upgrade or CONNECT request until the
	// response accepts it (upgrade.go). Shared by both halves.
	raw rawGate

	// Read half.
	respStarted   bool
	respKeepAlive bool
	readFailed    bool
	body          bodyReader

	released bool
}

// NewClientConn wraps an established upstream connection.
func NewClientConn(c net.Conn) *ClientConn {
	cc := &ClientConn{c: c, bw: bufio.NewWriterSize(c, 4096)}
	// Client buffers are not pooled: a Close with an error may race with a
	// reader still inside the buffer.
	cc.rd.c = c
	cc.rd.buf = make([]byte, initialBufSize)
	cc.body.rd = &cc.rd
	return cc
}

// NetConn returns the underlying connection.
func (cc *ClientConn) NetConn() net.Conn { return cc.c }

// CloseConn closes the underlying connection. Safe to call more than once
// and concurrently with the halves of an exchange.
func (cc *ClientConn) CloseConn() error {
	if cc.dead.Swap(true) {
		return nil
	}
	return cc.c.Close()
}

// Buffered is the number of response bytes read from the connection and
// not yet consumed: after ReadHeaders, body bytes that arrived with the
// headers.
func (cc *ClientConn) Buffered() int { return cc.rd.buffered() }

// Reset prepares cc for the next exchange, keeping its buffers. Close does
// it for a reusable connection before OnRelease.
func (cc *ClientConn) Reset() {
	cc.reqStarted, cc.reqHead, cc.reqClose, cc.reqChunked, cc.reqLength = false, false, false, false, false
	cc.reqRaw, cc.reqConnect, cc.tcpTunnel, cc.reqRemain = false, false, false, 0
	cc.raw.reset()
	cc.reqDone.Store(false)
	cc.respStarted, cc.respKeepAlive = false, false
	cc.body.reset(bodyNone, 0)
	cc.released = false
}

// Reusable reports whether the connection can carry another request: the
// request was fully written, the response fully read with nothing after
// it, neither side asked for "connection: close", the response was
// HTTP/1.1 (or HTTP/1.0 with keep-alive) and no error occurred.
func (cc *ClientConn) Reusable() bool {
	return !cc.dead.Load() && !cc.writeFailed.Load() && !cc.readFailed && !cc.reqRaw &&
		cc.reqDone.Load() && cc.respStarted && cc.body.done && cc.respKeepAlive &&
		!cc.reqClose && cc.rd.buffered() == 0 && cc.rd.err == nil
}

// Close implements hhttp.UpstreamStream; see ClientConn for the hand-over.
func (cc *ClientConn) Close(err error) {
	if cc.released {
		return
	}
	cc.released = true
	reusable := err == nil && cc.Reusable()
	if reusable {
		cc.Reset()
	} else {
		_ = cc.CloseConn()
	}
	if cc.OnRelease != nil {
		cc.OnRelease(cc, reusable)
	}
}

// requestShouldHaveNoBody mirrors Envoy's HeaderUtility::
// requestShouldHaveNoBody: these methods get no "content-length: 0" when
// sent without a body.
func requestShouldHaveNoBody(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "TRACE", "CONNECT":
		return true
	}
	return false
}

// WriteHeaders implements hhttp.UpstreamStream. The request line comes from
// :method and :path (:authority for CONNECT), Host from :authority; other
// pseudo-headers and transfer-encoding are not sent. Framing: the request's
// content-length when present; none for a bodiless GET, HEAD, DELETE, TRACE
// or CONNECT; "content-length: 0" for other bodiless requests; chunked
// otherwise (Envoy's RequestEncoderImpl::encodeHeaders).
func (cc *ClientConn) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	if cc.reqStarted {
		return errHeadersSent
	}
	cc.reqStarted = true
	var method, path, authority, clValue string
	var hasAuthority, hasCL, hasUpgrade bool
	for i := range h.Fields {
		f := &h.Fields[i]
		switch f.Name {
		case hhttp.Method:
			method = f.Value
		case hhttp.Path:
			path = f.Value
		case hhttp.Authority:
			authority, hasAuthority = f.Value, true
		case "content-length":
			clValue, hasCL = f.Value, true
		case "connection":
			if hasToken(f.Value, "close") {
				cc.reqClose = true
			}
		case "upgrade":
			hasUpgrade = true
		}
	}
	isConnect := method == "CONNECT"
	target := path
	if isConnect {
		target = authority
	}
	if method == "" || target == "" || !validToken(method) || !validTarget(target) {
		return cc.writeFail(errMissingRequest)
	}
	cc.reqHead = method == "HEAD"
	bw := cc.bw
	_, _ = bw.WriteString(method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(target)
	_, _ = bw.WriteString(" HTTP/1.1\r\n")
	if hasAuthority {
		if !validOutField("host", authority) {
			return cc.writeFail(errBadField)
		}
		_, _ = bw.WriteString("host: ")
		_, _ = bw.WriteString(authority)
		_, _ = bw.WriteString("\r\n")
	}
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == 0 || f.Name[0] == ':' || f.Name == "transfer-encoding" ||
			(hasAuthority && f.Name == "host") {
			continue
		}
		if !validOutField(f.Name, f.Value) {
			return cc.writeFail(errBadField)
		}
		_, _ = bw.WriteString(f.Name)
		_, _ = bw.WriteString(": ")
		_, _ = bw.WriteString(f.Value)
		_, _ = bw.WriteString("\r\n")
	}
	switch {
	case hasCL:
		n, ok := parseContentLength(clValue)
		if !ok {
			return cc.writeFail(errBadLength)
		}
		cc.reqLength, cc.reqRemain = true, n
	case endStream:
		if !requestShouldHaveNoBody(method) {
			_, _ = bw.WriteString("content-length: 0\r\n")
		}
	case isConnect || cc.tcpTunnel:
		// No chunking on a CONNECT (or a TCP tunnel's POST): its payload
		// is raw bytes.
		cc.reqRaw, cc.reqConnect = true, true
	case hasUpgrade && connectionUpgrade(h):
		// Envoy's RequestEncoderImpl: no chunked framing on an upgrade
		// request; what follows the headers is the upgraded protocol.
		cc.reqRaw = true
	default:
		_, _ = bw.WriteString("transfer-encoding: chunked\r\n")
		cc.reqChunked = true
	}
	_, _ = bw.WriteString("\r\n")
	if endStream {
		return cc.endRequest()
	}
	if cc.reqRaw {
		// The peer answers an upgrade before any upgraded byte is sent
		// (a WebSocket client waits for the 101): send the head now. The
		// payload waits for the response (rawGate).
		cc.raw.state = rawPending
		if err := bw.Flush(); err != nil {
			return cc.writeFail(err)
		}
	}
	return nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if !targetChars[s[i]] {
			return false
		}
	}
	return true
}

func (cc *ClientConn) writeFail(err error) error {
	cc.writeFailed.Store(true)
	return err
}

// WriteData implements hhttp.UpstreamStream. Every call flushes, except
// that the payload of an upgrade or CONNECT request is kept until the
// response accepts it, and dropped (errUpgradeRefused) when it does not
// (upgrade.go).
func (cc *ClientConn) WriteData(p []byte, endStream bool) error {
	if !cc.reqStarted {
		return errNoHeaders
	}
	if cc.reqDone.Load() {
		return errResponseComplete
	}
	if cc.reqRaw {
		return cc.writeRaw(p, endStream)
	}
	if len(p) > 0 {
		switch {
		case cc.reqChunked:
			writeChunkHeader(cc.bw, len(p))
			_, _ = cc.bw.Write(p)
			_, _ = cc.bw.WriteString("\r\n")
		case cc.reqLength:
			if int64(len(p)) > cc.reqRemain {
				return cc.writeFail(errBodyTooLong)
			}
			cc.reqRemain -= int64(len(p))
			_, _ = cc.bw.Write(p)
		default:
			_, _ = cc.bw.Write(p)
		}
	}
	if endStream {
		return cc.endRequest()
	}
	if err := cc.bw.Flush(); err != nil {
		return cc.writeFail(err)
	}
	return nil
}

// WriteTrailers implements hhttp.UpstreamStream. Trailers are sent only
// with a chunked request body and dropped otherwise.
func (cc *ClientConn) WriteTrailers(t *hhttp.Headers) error {
	if !cc.reqStarted {
		return errNoHeaders
	}
	if cc.reqDone.Load() {
		return errResponseComplete
	}
	if cc.reqRaw {
		// Raw bytes carry no trailers: the payload ends.
		return cc.writeRaw(nil, true)
	}
	if cc.reqChunked {
		_, _ = cc.bw.WriteString("0\r\n")
		if err := writeFields(cc.bw, t, false); err != nil {
			return cc.writeFail(err)
		}
		_, _ = cc.bw.WriteString("\r\n")
		cc.reqChunked = false
	}
	return cc.endRequest()
}

func (cc *ClientConn) endRequest() error {
	if cc.reqChunked {
		_, _ = cc.bw.WriteString("0\r\n\r\n")
	}
	if cc.reqLength && cc.reqRemain != 0 {
		return cc.writeFail(errBodyTooShort)
	}
	if err := cc.bw.Flush(); err != nil {
		return cc.writeFail(err)
	}
	cc.reqDone.Store(true)
	if cc.reqRaw {
		// The end of an upgraded request is a half-close (FIN).
		if cw, ok := cc.c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	return nil
}

func protoErr(msg string) error { return fmt.Errorf("%w: %s", ErrProtocol, msg) }

// ReadHeaders implements hhttp.UpstreamStream: it reads the response head
// into h (":status" first), skipping interim 1xx responses other than 101.
// endStream reports a response without body (HEAD, 204, 304,
// content-length 0). A malformed response returns an error wrapping
// ErrProtocol; a connection closed before a complete response head returns
// an error wrapping io.EOF (nothing received) or io.ErrUnexpectedEOF.
func (cc *ClientConn) ReadHeaders(h *hhttp.Headers) (bool, error) {
	if cc.respStarted {
		return false, errHeadersSent
	}
	endStream, err := cc.readHeaders(h)
	if err != nil {
		cc.readFailed = true
	}
	if cc.reqRaw {
		cc.decideRaw(err == nil && tunnelStatus(h.StatusCode(), cc.reqConnect))
	}
	return endStream, err
}

func (cc *ClientConn) readHeaders(h *hhttp.Headers) (bool, error) {
	limit := cc.MaxResponseHeadersBytes
	if limit <= 0 {
		limit = defaultMaxResponseHeadersBytes
	}
	maxCount := cc.MaxResponseHeadersCount
	if maxCount <= 0 {
		maxCount = defaultMaxHeadersCount
	}
	rd := &cc.rd
	for {
		fieldsEnd, end, err := rd.readSection(limit)
		if err != nil {
			switch {
			case err == errBufferFull:
				return false, protoErr("response headers too large")
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return false, fmt.Errorf("http1: upstream closed the connection before the response: %w", err)
			default:
				return false, err
			}
		}
		b := rd.buf[rd.r : rd.r+end]
		lineEnd := 0
		for b[lineEnd] != '\n' {
			lineEnd++
		}
		le := lineEnd
		if le > 0 && b[le-1] == '\r' {
			le--
		}
		code, http11, ok := parseStatusLine(b[:le])
		if !ok {
			return false, protoErr("malformed status line")
		}
		var cerr *hhttp.CodecError
		cc.spans, cerr = parseFields(b, lineEnd+1, fieldsEnd, cc.spans[:0], maxCount)
		if cerr != nil {
			return false, protoErr(cerr.Err.Error())
		}
		if code < 200 && code != 101 {
			// Interim response: skipped (the router does not forward 1xx yet).
			rd.r += end
			continue
		}
		s := string(b[:fieldsEnd])
		rd.r += end
		return cc.buildResponse(h, s, code, http11)
	}
}

// parseStatusLine parses "HTTP/d.d SP 3DIGIT [SP reason-phrase]".
func parseStatusLine(line []byte) (code int, http11, ok bool) {
	if len(line) < 12 || string(line[:5]) != "HTTP/" || !isDigit(line[5]) || line[6] != '.' ||
		!isDigit(line[7]) || line[8] != ' ' {
		return 0, false, false
	}
	d := line[9:12]
	if d[0] < '1' || d[0] > '5' || !isDigit(d[1]) || !isDigit(d[2]) {
		return 0, false, false
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return 0, false, false
		}
		for _, c := range line[13:] {
			if !valueChars[c] {
				return 0, false, false
			}
		}
	}
	code = int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	return code, line[5] == '1' && line[7] == '1', true
}

func (cc *ClientConn) buildResponse(h *hhttp.Headers, s string, code int, http11 bool) (bool, error) {
	h.Reset()
	h.Fields = append(h.Fields, hhttp.HeaderField{Name: hhttp.Status, Value: hhttp.StatusText3(code)})
	var clValue, teValue string
	var clCount, teCount int
	keepAlive, closeConn := false, false
	for _, f := range cc.spans {
		name, value := s[f.ns:f.ne], s[f.vs:f.ve]
		switch name {
		case "content-length":
			clValue = value
			clCount++
		case "transfer-encoding":
			teValue = value
			teCount++
		case "connection":
			if hasToken(value, "close") {
				closeConn = true
			}
			if hasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
		h.Fields = append(h.Fields, hhttp.HeaderField{Name: name, Value: value})
	}
	cc.respStarted = true
	cc.respKeepAlive = !closeConn && (http11 || keepAlive)

	// Framing (RFC 9112 §6.3; Envoy's ClientConnectionImpl::
	// onHeadersCompleteBase and cannotHaveBody).
	if code == 204 {
		if teCount > 0 {
			return false, protoErr("transfer-encoding in 204 response")
		}
		if clCount > 0 && clValue != "0" {
			return false, protoErr("content-length in 204 response")
		}
	}
	switch {
	case tunnelStatus(code, cc.reqConnect):
		// Switching protocols, or a CONNECT tunnel: the rest of the
		// connection is the body (upgrade.go).
		cc.body.reset(bodyClose, 0)
		cc.respKeepAlive = false
		return false, nil
	case cc.reqHead || code == 204 || code == 304:
		cc.body.reset(bodyNone, 0)
		return true, nil
	}
	if clCount > 1 {
		return false, protoErr("multiple content-length headers")
	}
	if teCount > 0 {
		if clCount > 0 {
			return false, protoErr("both content-length and transfer-encoding")
		}
		if teCount > 1 || !equalFold(teValue, "chunked") {
			return false, protoErr("unsupported transfer-encoding")
		}
		cc.body.reset(bodyChunked, 0)
		cc.body.maxHeader = defaultMaxResponseHeadersBytes
		if cc.MaxResponseHeadersBytes > 0 {
			cc.body.maxHeader = cc.MaxResponseHeadersBytes
		}
		cc.body.maxCount = defaultMaxHeadersCount
		if cc.MaxResponseHeadersCount > 0 {
			cc.body.maxCount = cc.MaxResponseHeadersCount
		}
		return false, nil
	}
	if clCount == 1 {
		n, ok := parseContentLength(clValue)
		if !ok {
			return false, protoErr("invalid content-length")
		}
		if n == 0 {
			cc.body.reset(bodyNone, 0)
			return true, nil
		}
		cc.body.reset(bodyLength, n)
		return false, nil
	}
	// Delimited by the connection close.
	cc.body.reset(bodyClose, 0)
	cc.respKeepAlive = false
	return false, nil
}

// ReadBody implements hhttp.UpstreamStream. It may return the last bytes
// together with io.EOF.
func (cc *ClientConn) ReadBody(p []byte) (int, error) {
	if !cc.respStarted {
		return 0, errNoHeaders
	}
	n, err := cc.body.read(p, true)
	if err != nil && err != io.EOF {
		if cc.reqRaw && cc.body.mode == bodyClose && cc.reqDone.Load() && errors.Is(err, syscall.ECONNRESET) {
			// A tunnel (after 101, or 2xx to CONNECT) whose request side
			// we already half-closed: an upstream that closed its socket
			// fully answers our FIN with RST, and the kernel then reports
			// ECONNRESET in place of the EOF it had queued. Everything it
			// sent before was delivered; the tunnel ended cleanly.
			cc.body.done = true
			return n, io.EOF
		}
		cc.readFailed = true
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("http1: upstream closed the connection mid-body: %w", err)
		}
	}
	return n, err
}

// Trailers implements hhttp.UpstreamStream.
func (cc *ClientConn) Trailers() *hhttp.Headers {
	if cc.body.done && cc.body.hasTrailers {
		return &cc.body.trailers
	}
	return nil
}
