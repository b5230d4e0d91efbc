package http1

import (
	"bufio"
	"context"
	"errors"
	"strconv"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

var _ hhttp.ServerStream = (*serverStream)(nil)

// serverStream is the ServerStream of one request on a serverConn; the
// connection reuses it for every request. Owned by the goroutine running
// Serve (and so ServeStream).
type serverStream struct {
	sc *serverConn

	// Request state, set by readRequest.
	req          hhttp.Headers
	body         bodyReader
	method       string
	http11       bool
	isHead       bool
	keepAlive10  bool   // HTTP/1.0 request with "connection: keep-alive"
	pendingFlush bool   // a 100 Continue is buffered
	upgrade      bool   // an upgrade request: the body is raw (upgrade.go)
	isConnect    bool   // a CONNECT request (also upgrade)
	scratch      []byte // unlent tail of the request headers' allocation (Scratch)

	// Response state.
	headersSent bool
	respDone    bool
	respNoBody  bool  // HEAD, 204, 304: body bytes are dropped
	respChunked bool  // chunked transfer-coding
	respLength  bool  // content-length framed
	respRemain  int64 // content-length bytes still due
	closeAfter  bool  // close the connection after this response
	tunnel      bool  // 101 to an upgrade request: the response is raw
	writeErr    error
}

var _ hhttp.HeaderScratch = (*serverStream)(nil)

// Scratch implements hhttp.HeaderScratch.
func (st *serverStream) Scratch(n int) []byte {
	if n > len(st.scratch) {
		return nil
	}
	b := st.scratch[:n:n]
	st.scratch = st.scratch[n:]
	return b
}

func (st *serverStream) reset() {
	st.req.Reset()
	st.scratch = nil
	st.body.reset(bodyNone, 0)
	st.method, st.http11, st.isHead, st.keepAlive10, st.pendingFlush = "", true, false, false, false
	st.headersSent, st.respDone, st.respNoBody, st.respChunked, st.respLength = false, false, false, false, false
	st.respRemain, st.closeAfter, st.writeErr = 0, false, nil
	st.upgrade, st.tunnel, st.isConnect = false, false, false
}

// RequestHeaders implements hhttp.ServerStream.
func (st *serverStream) RequestHeaders() *hhttp.Headers { return &st.req }

// RequestEndStream implements hhttp.ServerStream.
func (st *serverStream) RequestEndStream() bool { return st.body.mode == bodyNone }

// ReadBody implements hhttp.ServerStream. It may return the last bytes
// together with io.EOF, as io.Reader allows, so that a proxy can forward them
// with end-of-stream in one write.
func (st *serverStream) ReadBody(p []byte) (int, error) {
	if st.pendingFlush {
		st.pendingFlush = false
		if err := st.sc.bw.Flush(); err != nil {
			st.writeErr = err
			return 0, err
		}
	}
	return st.body.read(p, true)
}

// RequestTrailers implements hhttp.ServerStream.
func (st *serverStream) RequestTrailers() *hhttp.Headers {
	if st.body.done && st.body.hasTrailers {
		return &st.body.trailers
	}
	return nil
}

// Protocol implements hhttp.ServerStream.
func (st *serverStream) Protocol() string {
	if st.http11 {
		return "HTTP/1.1"
	}
	return "HTTP/1.0"
}

// Context implements hhttp.ServerStream. HTTP/1.1 streams share their
// connection's context, cancelled when Serve returns.
// TODO(#6): cancel it when the peer closes while a request is in flight
// (needs a background read, as net/http's connReader does).
func (st *serverStream) Context() context.Context {
	sc := st.sc
	if sc.ctx == nil {
		sc.ctx, sc.cancel = context.WithCancel(context.Background())
	}
	return sc.ctx
}

var (
	errHeadersSent    = errors.New("http1: response headers already sent")
	errNoHeaders      = errors.New("http1: response headers not sent")
	errBadStatus      = errors.New("http1: invalid :status")
	errBadField       = errors.New("http1: invalid header field")
	errBadLength      = errors.New("http1: invalid content-length")
	errBodyTooLong    = errors.New("http1: body longer than content-length")
	errBodyTooShort   = errors.New("http1: body shorter than content-length")
	errMissingRequest = errors.New("http1: :method and :path are required")
)

// WriteHeaders implements hhttp.ServerStream. Framing follows Envoy's
// StreamEncoderImpl::encodeHeadersBase: the response's content-length when
// present; otherwise "content-length: 0" for a headers-only response (not
// for HEAD, 1xx, 204 and 304); otherwise chunked on HTTP/1.1 and
// close-delimited on HTTP/1.0. Transfer-Encoding fields of h are ignored:
// the codec chooses the framing. Headers are buffered and go out with the
// first WriteData or at end of stream.
func (st *serverStream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	if st.respDone || st.headersSent {
		return errHeadersSent
	}
	code := h.StatusCode()
	if code < 100 || code > 599 {
		return errBadStatus
	}
	bw := st.sc.bw
	if code < 200 && code != 101 {
		// Interim response. Not sent to HTTP/1.0 clients (RFC 9110 §15.2).
		if !st.http11 {
			return nil
		}
		_, _ = bw.WriteString(statusLines11[code-100])
		if err := writeFields(bw, h, false); err != nil {
			return err
		}
		_, _ = bw.WriteString("\r\n")
		return st.flush()
	}
	st.headersSent = true
	clValue, hasCL, connClose := scanResponse(h)
	if connClose || st.upgrade {
		// After an upgrade request the connection carries no other
		// request, whatever the answer: the bytes that followed its
		// headers were its raw body, never parsed as requests (a refusal
		// says so with "connection: close"; conn_manager_impl.cc refuses
		// further requests after an upgrade "to avoid a class of HTTP/1.1
		// smuggling bugs").
		st.closeAfter = true
	}
	if st.http11 || !st.sc.accept10 {
		_, _ = bw.WriteString(statusLines11[code-100])
	} else {
		_, _ = bw.WriteString(statusLines10[code-100])
	}
	noBody := st.isHead || code == 204 || code == 304
	var framing string
	switch {
	case code == 101:
		if st.upgrade {
			// The upgrade is accepted: the response's connection and
			// upgrade fields go out as they are, then raw bytes.
			st.tunnel, st.closeAfter = true, true
			if err := writeFields(bw, h, false); err != nil {
				return err
			}
			_, _ = bw.WriteString("\r\n")
			if endStream {
				return st.finish()
			}
			return st.flush()
		}
		// A 101 to a request that asked for no upgrade: the connection
		// cannot be reused.
		st.closeAfter = true
		st.respNoBody = true
	case st.isConnect && code < 300:
		// A 2xx to CONNECT: the tunnel is up, its bytes are raw. No
		// content-length nor transfer-encoding goes with it (RFC 9110
		// §9.3.6; Envoy's encoder strips them).
		st.tunnel, st.closeAfter = true, true
		if err := writeTunnelFields(bw, h); err != nil {
			return err
		}
		_, _ = bw.WriteString("\r\n")
		if endStream {
			return st.finish()
		}
		return st.flush()
	case hasCL:
		n, ok := parseContentLength(clValue)
		if !ok {
			st.closeAfter = true
			return errBadLength
		}
		st.respNoBody = noBody
		st.respLength, st.respRemain = !noBody, n
	case noBody:
		st.respNoBody = true
		if st.isHead && !endStream && st.http11 && code != 204 && code != 304 {
			// Envoy sends an informational "transfer-encoding: chunked" on
			// a HEAD response without content-length, and no body.
			framing = "transfer-encoding: chunked\r\n"
		}
	case endStream:
		framing = "content-length: 0\r\n"
		st.respLength = true
	case st.http11:
		framing = "transfer-encoding: chunked\r\n"
		st.respChunked = true
	default:
		// HTTP/1.0 without content-length: the body ends with the
		// connection.
		st.closeAfter = true
	}
	if err := writeFields(bw, h, st.closeAfter); err != nil {
		st.closeAfter = true
		return err
	}
	_, _ = bw.WriteString(framing)
	switch {
	case st.closeAfter:
		// Envoy's connection manager adds "connection: close" whenever it
		// is about to close an HTTP/1 connection.
		_, _ = bw.WriteString("connection: close\r\n")
	case !st.http11:
		_, _ = bw.WriteString("connection: keep-alive\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if endStream {
		return st.finish()
	}
	return nil
}

// scanResponse finds the framing-relevant fields of a response.
func scanResponse(h *hhttp.Headers) (cl string, hasCL, connClose bool) {
	for i := range h.Fields {
		f := &h.Fields[i]
		switch f.Name {
		case "content-length":
			cl, hasCL = f.Value, true
		case "connection":
			if hasToken(f.Value, "close") {
				connClose = true
			}
		}
	}
	return cl, hasCL, connClose
}

// writeFields writes the regular fields of h, skipping pseudo-headers and
// transfer-encoding (and connection when the codec writes its own).
func writeFields(bw *bufio.Writer, h *hhttp.Headers, skipConnection bool) error {
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == 0 || f.Name[0] == ':' || f.Name == "transfer-encoding" ||
			(skipConnection && f.Name == "connection") {
			continue
		}
		if !validOutField(f.Name, f.Value) {
			return errBadField
		}
		_, _ = bw.WriteString(f.Name)
		_, _ = bw.WriteString(": ")
		_, _ = bw.WriteString(f.Value)
		_, _ = bw.WriteString("\r\n")
	}
	return nil
}

// validOutField rejects what would corrupt the message: a name that is not
// a token, a value with CR, LF or NUL (response splitting). Envoy checks the
// same with HeaderUtility::checkValidRequestHeaders.
func validOutField(name, value string) bool {
	for i := 0; i < len(name); i++ {
		if !tokenChars[name[i]] {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if unsafeOut[value[i]] {
			return false
		}
	}
	return true
}

// WriteData implements hhttp.ServerStream. Every call flushes.
func (st *serverStream) WriteData(p []byte, endStream bool) error {
	if !st.headersSent {
		return errNoHeaders
	}
	if st.respDone {
		return errResponseComplete
	}
	if len(p) > 0 && !st.respNoBody {
		bw := st.sc.bw
		switch {
		case st.respChunked:
			writeChunkHeader(bw, len(p))
			_, _ = bw.Write(p)
			_, _ = bw.WriteString("\r\n")
		case st.respLength:
			if int64(len(p)) > st.respRemain {
				st.closeAfter = true
				return errBodyTooLong
			}
			st.respRemain -= int64(len(p))
			_, _ = bw.Write(p)
		default:
			_, _ = bw.Write(p)
		}
	}
	if endStream {
		return st.finish()
	}
	return st.flush()
}

// writeChunkHeader writes "<hex size>\r\n" byte by byte so that the
// scratch array stays on the stack.
func writeChunkHeader(bw *bufio.Writer, n int) {
	var tmp [20]byte
	b := strconv.AppendInt(tmp[:0], int64(n), 16)
	b = append(b, '\r', '\n')
	for _, c := range b {
		_ = bw.WriteByte(c)
	}
}

// WriteTrailers implements hhttp.ServerStream. Trailers are sent only on a
// chunked response and dropped otherwise (RFC 9112 §7.1.2; Envoy's
// encodeTrailersBase).
func (st *serverStream) WriteTrailers(t *hhttp.Headers) error {
	if !st.headersSent {
		return errNoHeaders
	}
	if st.respDone {
		return errResponseComplete
	}
	if !st.respChunked {
		return st.finish()
	}
	bw := st.sc.bw
	_, _ = bw.WriteString("0\r\n")
	if err := writeFields(bw, t, false); err != nil {
		st.closeAfter = true
		return err
	}
	_, _ = bw.WriteString("\r\n")
	st.respChunked = false
	return st.finish()
}

// finish ends the response and flushes it.
func (st *serverStream) finish() error {
	if st.respChunked {
		_, _ = st.sc.bw.WriteString("0\r\n\r\n")
	}
	if st.respLength && st.respRemain != 0 {
		// Fewer bytes than announced: the peer would wait for the rest.
		st.closeAfter = true
	}
	st.respDone = true
	err := st.flush()
	if st.upgrade {
		st.endUpgradeResponse()
	}
	return err
}

func (st *serverStream) flush() error {
	// Written only when set: on an upgrade request (never set) ReadBody
	// may read it on another goroutine.
	if st.pendingFlush {
		st.pendingFlush = false
	}
	if err := st.sc.bw.Flush(); err != nil {
		st.writeErr = err
		st.closeAfter = true
		return err
	}
	return nil
}
