package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

const (
	// defaultMaxRequestHeadersBytes is Envoy's max_request_headers_kb
	// default, 60 KiB (HttpConnectionManager.max_request_headers_kb).
	defaultMaxRequestHeadersBytes = 60 * 1024
	// defaultMaxHeadersCount is Envoy's
	// common_http_protocol_options.max_headers_count default.
	defaultMaxHeadersCount = 100
	// lingerTimeout bounds how long a closing connection keeps reading
	// (and discarding) input after the final response, so that unread
	// request bytes do not turn the close into a TCP RST that could destroy
	// the response in flight (the problem net/http's closeWriteAndWait
	// solves). Envoy does the same with delayed_close_timeout, whose
	// default is 1 s (http_connection_manager.proto), so herald waits as long.
	lingerTimeout  = time.Second
	lingerMaxBytes = 256 << 10
)

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// Serve runs the server side of HTTP/1.1 on c until the connection ends,
// calling h.ServeStream once per request, strictly in order: the next
// request is read only after ServeStream returns (pipelined bytes already
// received stay buffered). Serve owns c and closes it before returning.
//
// The connection ends, and Serve returns, when the peer closes it between
// requests (nil), when no request starts within opts.IdleTimeout
// (ErrIdleTimeout), after a response carrying "connection: close" or to a
// request asking for it, after an HTTP/1.0 exchange without keep-alive,
// when the handler returns without a complete response or without the
// request body consumed (the rest is discarded only if already buffered),
// on an I/O error (returned), and after a codec error: then h.ServeCodecError
// is called, its response sent with "connection: close", and the
// *hhttp.CodecError returned.
//
// The ServerStream passed to h, its headers and trailers are reused for the
// next request: they are valid only until ServeStream returns. Header
// strings themselves are never overwritten and may be kept.
//
// Serve does not recover panics from h; the caller's connection goroutine
// does (STYLE.md §5).
func Serve(c net.Conn, opts hhttp.ServerOptions, h hhttp.StreamHandler) error {
	sc := &serverConn{
		c:              c,
		h:              h,
		maxHeaderBytes: opts.MaxRequestHeadersBytes,
		maxHeaderCount: opts.MaxRequestHeadersCount,
		idle:           opts.IdleTimeout,
		scheme:         opts.Scheme,
		accept10:       opts.AcceptHTTP10,
	}
	if sc.maxHeaderBytes <= 0 {
		sc.maxHeaderBytes = defaultMaxRequestHeadersBytes
	}
	if sc.maxHeaderCount <= 0 {
		sc.maxHeaderCount = defaultMaxHeadersCount
	}
	if sc.scheme == "" {
		sc.scheme = "http"
	}
	sc.rd.init(c)
	sc.rd.server = sc
	sc.bw = writerPool.Get().(*bufio.Writer)
	sc.bw.Reset(c)
	sc.st.sc = sc
	sc.st.body.rd = &sc.rd
	sc.st.body.server = true
	sc.st.body.maxHeader = sc.maxHeaderBytes
	sc.st.body.maxCount = sc.maxHeaderCount
	err := sc.serve()
	sc.close()
	return err
}

// serverConn is one downstream connection. Owned by the goroutine running
// Serve.
type serverConn struct {
	// accept10: HTTP/1.0 responses get HTTP/1.0 status lines (Envoy:
	// only when accept_http_10 is set).
	accept10       bool
	c              net.Conn
	h              hhttp.StreamHandler
	maxHeaderBytes int
	maxHeaderCount int
	idle           time.Duration
	scheme         string

	rd      connReader
	bw      *bufio.Writer
	st      serverStream
	spans   []fieldSpan
	scratch []byte // for discarding unread request bodies, allocated on demand
	// waiting is true while waitRequest waits for the next request: then an
	// idle connection may give its writer back (releaseWriter).
	waiting bool

	ctx    context.Context // created on first Context() call
	cancel context.CancelFunc
}

func (sc *serverConn) serve() error {
	st := &sc.st
	for {
		if sc.rd.buffered() == 0 {
			if err := sc.waitRequest(); err != nil {
				if err == io.EOF {
					return nil // the peer closed between requests
				}
				return err
			}
		}
		if sc.bw == nil {
			sc.bw = writerPool.Get().(*bufio.Writer)
			sc.bw.Reset(sc.c)
		}
		st.reset()
		cerr, err := sc.readRequest()
		if err != nil {
			if err == io.EOF {
				return nil // only empty lines before the close
			}
			return err
		}
		if cerr != nil {
			st.closeAfter = true
			sc.h.ServeCodecError(st, cerr)
			_ = sc.bw.Flush()
			return cerr
		}
		sc.h.ServeStream(st)
		if !st.respDone {
			// The response cannot be completed on this connection any more.
			_ = sc.bw.Flush()
			return nil
		}
		if st.closeAfter || st.writeErr != nil {
			return st.writeErr
		}
		if !st.body.done && !sc.discardBody() {
			return nil
		}
	}
}

// waitRequest waits for the first byte of the next request, under the idle
// timeout. It returns nil when bytes arrived.
func (sc *serverConn) waitRequest() error {
	if sc.idle > 0 {
		_ = sc.c.SetReadDeadline(time.Now().Add(sc.idle))
	}
	sc.waiting = true
	err := sc.rd.fill(sc.maxHeaderBytes + initialBufSize)
	sc.waiting = false
	if sc.idle > 0 && err == nil {
		_ = sc.c.SetReadDeadline(time.Time{})
	}
	switch {
	case err == nil:
		return nil
	case err == io.EOF:
		return io.EOF
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrIdleTimeout
	default:
		return err
	}
}

// discardBody drops the unread rest of the request body when it is already
// buffered, so the connection can carry the next request. It reports
// whether the body was fully consumed.
func (sc *serverConn) discardBody() bool {
	if sc.scratch == nil {
		sc.scratch = make([]byte, 1024)
	}
	for {
		_, err := sc.st.body.read(sc.scratch, false)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// releaseWriter gives the (flushed, empty) response writer back to its pool
// while the connection is idle between requests; serve takes one again for
// the next request.
func (sc *serverConn) releaseWriter() {
	if !sc.waiting || sc.bw == nil || sc.bw.Buffered() > 0 {
		return
	}
	sc.bw.Reset(nil)
	writerPool.Put(sc.bw)
	sc.bw = nil
}

func (sc *serverConn) close() {
	if sc.cancel != nil {
		sc.cancel()
	}
	if sc.bw != nil {
		sc.bw.Reset(nil)
		writerPool.Put(sc.bw)
		sc.bw = nil
	}
	peerOpen := sc.rd.err == nil
	sc.rd.release()
	if cw, ok := sc.c.(interface{ CloseWrite() error }); ok && peerOpen {
		if cw.CloseWrite() == nil {
			_ = sc.c.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, sc.c, lingerMaxBytes)
		}
	}
	_ = sc.c.Close()
}

// readRequest reads and parses the request line and headers into sc.st. A
// non-nil error is an I/O error (the connection is dead); a non-nil
// *CodecError is a malformed request to answer.
func (sc *serverConn) readRequest() (*hhttp.CodecError, error) {
	rd := &sc.rd
	st := &sc.st
	// A server SHOULD ignore at least one empty line received before the
	// request-line (RFC 9112 §2.2).
	for skipped := 0; ; {
		for rd.r < rd.w && skipped < 2*initialBufSize {
			c := rd.buf[rd.r]
			if c == '\n' || (c == '\r' && rd.r+1 < rd.w && rd.buf[rd.r+1] == '\n') {
				rd.r++
				skipped++
				continue
			}
			break
		}
		if rd.r < rd.w && (rd.buf[rd.r] != '\r' || rd.w-rd.r > 1) {
			break
		}
		if skipped >= 2*initialBufSize {
			return badRequest("too many empty lines before request"), nil
		}
		if err := rd.fill(sc.maxHeaderBytes + initialBufSize); err != nil {
			return nil, err
		}
	}
	fieldsEnd, end, err := rd.readSection(sc.maxHeaderBytes)
	if err != nil {
		if err == errBufferFull {
			return codecErr(431, DetailsHeadersTooLarge, "request headers too large"), nil
		}
		return nil, err
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
	rl, cerr := parseRequestLine(b, le)
	if cerr != nil {
		return cerr, nil
	}
	st.method, st.http11, st.isHead = rl.method, rl.http11, rl.method == "HEAD"
	sc.spans, cerr = parseFields(b, lineEnd+1, fieldsEnd, sc.spans[:0], sc.maxHeaderCount)
	if cerr != nil {
		return cerr, nil
	}
	// The one allocation per request: every name and value below is a
	// substring of s. It has room for hhttp.RequestScratchBytes more, lent
	// through serverStream.Scratch (a generated x-request-id). The bytes of
	// s are never written after this copy, so the unsafe.String is sound.
	buf := make([]byte, fieldsEnd+hhttp.RequestScratchBytes)
	copy(buf, b[:fieldsEnd])
	s := unsafe.String(unsafe.SliceData(buf), fieldsEnd)
	st.scratch = buf[fieldsEnd:]
	rd.r += end
	return sc.buildRequest(s, rl), nil
}

// buildRequest fills the request headers from the parsed section s and
// applies Envoy's framing and request-target rules.
func (sc *serverConn) buildRequest(s string, rl requestLine) *hhttp.CodecError {
	st := &sc.st
	req := &st.req
	// Pseudo-headers first; :authority and :path are filled in below.
	req.Fields = append(req.Fields[:0],
		hhttp.HeaderField{Name: hhttp.Method, Value: rl.method},
		hhttp.HeaderField{Name: hhttp.Scheme, Value: sc.scheme},
		hhttp.HeaderField{Name: hhttp.Authority},
		hhttp.HeaderField{Name: hhttp.Path},
	)
	var (
		host             string
		hostCount        int
		clValue, teValue string
		clCount, teCount int
		expectContinue   bool
		upgrade          bool // an upgrade field; checked after the loop
	)
	for _, f := range sc.spans {
		name, value := s[f.ns:f.ne], s[f.vs:f.ve]
		switch name {
		case "host":
			host = value
			hostCount++
			continue // becomes :authority
		case "content-length":
			clValue = value
			clCount++
		case "transfer-encoding":
			teValue = value
			teCount++
		case "connection":
			if st.http11 {
				if hasToken(value, "close") {
					st.closeAfter = true
				}
			} else if hasToken(value, "keep-alive") {
				st.keepAlive10 = true
			}
		case "expect":
			// Envoy (proxy_100_continue false, the default) answers
			// "100 Continue" itself as soon as the headers are decoded and
			// removes the Expect header (ConnectionManagerImpl::
			// ActiveStream::decodeHeaders; HttpConnectionManager.
			// proxy_100_continue). The interim response goes out with the
			// next flush, at the latest before the body is read.
			// TODO(#6): honour proxy_100_continue.
			if equalFold(value, "100-continue") {
				expectContinue = true
				continue
			}
		case "upgrade":
			upgrade = true
		}
		req.Fields = append(req.Fields, hhttp.HeaderField{Name: name, Value: value})
	}
	if !st.http11 && !st.keepAlive10 {
		st.closeAfter = true
	}
	isConnect := rl.method == "CONNECT"

	// Body framing, in the order of Envoy's ConnectionImpl::
	// onHeadersCompleteImpl (source/common/http/http1/codec_impl.cc).
	var cl int64
	if clCount > 1 {
		// Balsa's disallow_multiple_content_length rejects repeated
		// Content-Length fields even with identical values.
		return badRequest("multiple content-length headers")
	}
	if clCount == 1 {
		var ok bool
		if cl, ok = parseContentLength(clValue); !ok {
			return badRequest("invalid content-length")
		}
		if isConnect {
			// A CONNECT payload has no defined semantics (RFC 9110 §9.3.6).
			if cl != 0 {
				return codecErr(400, DetailsBodyDisallowed, "content-length on CONNECT")
			}
			req.Del("content-length")
		}
	}
	if teCount > 0 {
		if clCount > 0 {
			// Envoy rejects CL+TE unless allow_chunked_length
			// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto,
			// Http1ProtocolOptions.allow_chunked_length).
			// TODO(#6): honour allow_chunked_length.
			return codecErr(400, DetailsChunkedContentLength, "both content-length and transfer-encoding")
		}
		if teCount > 1 || !equalFold(teValue, "chunked") || isConnect {
			return codecErr(501, DetailsInvalidTransferEncoding, "unsupported transfer-encoding")
		}
		if !st.http11 {
			// RFC 9112 §6.1: chunked in HTTP/1.0 is faulty framing; process
			// it but close the connection afterwards.
			st.closeAfter = true
		}
		st.body.reset(bodyChunked, 0)
	} else if cl > 0 {
		st.body.reset(bodyLength, cl)
	}

	if upgrade {
		sc.classifyUpgrade(teCount > 0 || cl > 0)
	}

	// Request-target (ServerConnectionImpl::handlePath).
	target := s[rl.ts:rl.te]
	authority, haveAuthority := host, hostCount > 0
	absolute := false
	switch {
	case isConnect:
		// authority-form.
		if target[0] == '/' || !validAuthority(target) {
			return codecErr(400, DetailsInvalidURL, "invalid CONNECT authority")
		}
		authority, haveAuthority = target, true
		absolute = true
	case target[0] == '/':
		req.Fields[3].Value = target
	case target == "*" && rl.method == "OPTIONS":
		req.Fields[3].Value = target
	default:
		scheme, auth, path, ok := splitAbsoluteURL(target)
		if !ok || !validAuthority(auth) {
			return codecErr(400, DetailsInvalidURL, "invalid request-target")
		}
		if scheme != "http" && scheme != "https" {
			return codecErr(400, DetailsInvalidScheme, "invalid scheme")
		}
		if scheme == "https" && sc.scheme != "https" {
			// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#scheme
			return codecErr(403, DetailsHTTPSInPlaintext, "https URL on a plaintext connection")
		}
		// RFC 9112 §3.2.2: the request-target's authority replaces Host.
		req.Fields[1].Value = scheme
		req.Fields[3].Value = path
		authority, haveAuthority = auth, true
		absolute = true
	}
	if !absolute && hostCount > 0 {
		// RFC 9112 §3.2: more than one Host is a 400. Envoy joins them with
		// a comma and fails HeaderUtility::requestHeadersValid.
		if hostCount > 1 || !validAuthority(host) {
			return codecErr(400, DetailsInvalidAuthority, "invalid host")
		}
	}
	if haveAuthority {
		req.Fields[2].Value = authority
	} else {
		// No Host: the connection manager answers 400 missing_host_header
		// (HTTP/1.1) or applies default_host_for_http_10.
		copy(req.Fields[2:], req.Fields[3:])
		req.Fields = req.Fields[:len(req.Fields)-1]
	}
	if isConnect {
		req.Del(hhttp.Path)
		// The payload of a CONNECT is raw bytes until the peer closes
		// (Envoy's codec handles CONNECT as an upgrade; upgrade.go).
		st.upgrade, st.isConnect = true, true
		st.body.reset(bodyClose, 0)
	}
	if expectContinue && st.http11 && !st.upgrade {
		// Only for a request that passed every check, as Envoy answers
		// after decoding the headers. No 1xx to HTTP/1.0 (RFC 9110 §15.2).
		_, _ = sc.bw.WriteString(continueResponse)
		st.pendingFlush = true
	}
	return nil
}
