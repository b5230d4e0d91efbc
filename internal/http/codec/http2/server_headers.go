package http2

import (
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// headerBlock is the state of the header block being decoded (HEADERS plus
// CONTINUATION frames). Owned by the reader goroutine.
type headerBlock struct {
	active    bool // more CONTINUATION frames expected
	id        uint32
	st        *stream        // stream the block belongs to; nil when discarded
	h         *hhttp.Headers // destination; nil when the block is discarded
	trailers  bool
	endStream bool
	fresh     bool // st is a new stream not yet dispatched
	resetCode xhttp2.ErrCode
	doReset   bool // reset the stream with resetCode once decoded
	encoded   int
	size      int
	count     int
	tooLarge  bool
	malformed string
	regular   bool // a regular field was seen
	pseudo    uint8
	cookie    string
	host      string
	hasHost   bool
	clen      int64
	protocol  string // :protocol of an extended CONNECT (RFC 8441)
}

const (
	pseudoMethod uint8 = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoProtocol
)

// processHeaders starts a header block: a new request, request trailers, or
// a block that is decoded only to keep HPACK state and then answered.
func (sc *serverConn) processHeaders(f *xhttp2.HeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return connError{xhttp2.ErrCodeProtocol, "even stream id from client"}
	}
	frag := f.HeaderBlockFragment()
	if err := sc.countEmpty(len(frag), f.StreamEnded()); err != nil {
		return err
	}
	hb := &sc.hb
	*hb = headerBlock{id: id, endStream: f.StreamEnded(), clen: -1}

	sc.mu.Lock()
	st := sc.streams[id]
	switch {
	case st != nil:
		switch {
		case st.remoteEnded || st.reset:
			hb.doReset, hb.resetCode = true, xhttp2.ErrCodeStreamClosed
		case !f.StreamEnded():
			// Trailers must end the stream (RFC 9113 §8.1); a second
			// HEADERS without END_STREAM is malformed.
			if sc.srv.streamErrors {
				hb.doReset, hb.resetCode = true, xhttp2.ErrCodeProtocol
				break
			}
			sc.mu.Unlock()
			return connError{xhttp2.ErrCodeProtocol, "trailers without END_STREAM"}
		default:
			hb.st, hb.h, hb.trailers = st, &st.trailers, true
			st.decoding = true
		}
	case id <= sc.maxClientID:
		code := xhttp2.ErrCodeProtocol
		if sc.recentlyClosed(id) {
			code = xhttp2.ErrCodeStreamClosed
		}
		sc.mu.Unlock()
		return connError{code, "HEADERS on a closed stream"}
	default:
		sc.maxClientID = id
		switch {
		case f.HasPriority() && f.Priority.StreamDep == id:
			hb.doReset, hb.resetCode = true, xhttp2.ErrCodeProtocol
		case sc.refuseNew || sc.wclosed || len(sc.streams) >= int(sc.srv.maxStreams):
			// Over max_concurrent_streams or after the final GOAWAY.
			hb.doReset, hb.resetCode = true, xhttp2.ErrCodeRefusedStream
		default:
			st = newStream(sc, id)
			st.outflow = int64(sc.peerWindow)
			hb.st, hb.h, hb.fresh = st, &st.reqHeaders, true
		}
	}
	sc.mu.Unlock()
	return sc.decodeFragment(frag, f.HeadersEnded())
}

// processContinuation continues the open header block. The Framer already
// enforces that CONTINUATION follows HEADERS on the same stream.
func (sc *serverConn) processContinuation(f *xhttp2.ContinuationFrame) error {
	if !sc.hb.active || f.StreamID != sc.hb.id {
		return connError{xhttp2.ErrCodeProtocol, "unexpected CONTINUATION"}
	}
	frag := f.HeaderBlockFragment()
	if err := sc.countEmpty(len(frag), false); err != nil {
		return err
	}
	return sc.decodeFragment(frag, f.HeadersEnded())
}

func (sc *serverConn) decodeFragment(frag []byte, end bool) error {
	hb := &sc.hb
	hb.encoded += len(frag)
	if hb.encoded > sc.srv.maxBlockBytes {
		sc.dropFresh()
		return connError{xhttp2.ErrCodeEnhanceYourCalm, "header block too large"}
	}
	sc.dec.SetEmitEnabled(hb.h != nil)
	if _, err := sc.dec.Write(frag); err != nil {
		sc.dropFresh()
		return connError{xhttp2.ErrCodeCompression, err.Error()}
	}
	if !end {
		hb.active = true
		return nil
	}
	hb.active = false
	if err := sc.dec.Close(); err != nil {
		sc.dropFresh()
		return connError{xhttp2.ErrCodeCompression, err.Error()}
	}
	return sc.endHeaderBlock()
}

// dropFresh releases a new stream that will never be dispatched, or lets
// go of the stream whose trailers were being decoded.
func (sc *serverConn) dropFresh() {
	hb := &sc.hb
	switch {
	case hb.st == nil:
	case hb.fresh:
		hb.st.release()
	case hb.trailers:
		sc.mu.Lock()
		hb.st.decoding = false
		hb.st.maybeReleaseLocked()
		sc.mu.Unlock()
	}
	hb.st, hb.h, hb.fresh = nil, nil, false
}

// onHeaderField is the HPACK emit function: it validates one field and
// appends it, in wire order, to the block's destination.
func (sc *serverConn) onHeaderField(f hpack.HeaderField) {
	hb := &sc.hb
	if hb.h == nil || hb.tooLarge || hb.malformed != "" {
		return
	}
	name, value := f.Name, f.Value
	// Envoy's limits (max_request_headers_kb counts names and values,
	// max_headers_count counts fields) reset the stream:
	// source/common/http/http2/codec_impl.cc saveHeader,
	// "http2.too_many_headers".
	hb.size += len(name) + len(value)
	hb.count++
	if hb.size > sc.srv.maxHeadersSize || hb.count > sc.srv.maxHeadersN {
		hb.tooLarge = true
		return
	}
	if !validFieldValue(value) {
		hb.malformed = "invalid header value"
		return
	}
	if len(name) > 0 && name[0] == ':' {
		if hb.trailers || hb.regular {
			hb.malformed = "misplaced pseudo-header"
			return
		}
		var bit uint8
		switch name {
		case hhttp.Method:
			bit = pseudoMethod
		case hhttp.Scheme:
			bit = pseudoScheme
		case hhttp.Authority:
			bit = pseudoAuthority
		case hhttp.Path:
			bit = pseudoPath
			if value == "" {
				hb.malformed = "empty :path"
				return
			}
		case hhttp.Protocol:
			// Extended CONNECT (RFC 8441 §4) only when advertised:
			// allow_connect. Kept aside and turned into upgrade headers
			// once the block is complete.
			if !sc.srv.allowConnect {
				hb.malformed = "unknown pseudo-header " + name
				return
			}
			if hb.pseudo&pseudoProtocol != 0 {
				hb.malformed = "duplicate pseudo-header " + name
				return
			}
			hb.pseudo |= pseudoProtocol
			hb.protocol = value
			return
		default:
			// :status, or :protocol without allow_connect.
			hb.malformed = "unknown pseudo-header " + name
			return
		}
		if hb.pseudo&bit != 0 {
			hb.malformed = "duplicate pseudo-header " + name
			return
		}
		hb.pseudo |= bit
		hb.h.Fields = append(hb.h.Fields, hhttp.HeaderField{Name: name, Value: value})
		return
	}
	hb.regular = true
	if !validFieldName(name) {
		hb.malformed = "invalid header name"
		return
	}
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		hb.malformed = "connection-specific header " + name
		return
	case "te":
		if value != "trailers" {
			hb.malformed = "te other than trailers"
			return
		}
	case "content-length":
		if !hb.trailers {
			n, ok := parseContentLength(value)
			if !ok || (hb.clen >= 0 && hb.clen != n) {
				hb.malformed = "invalid content-length"
				return
			}
			hb.clen = n
		}
	case "cookie":
		// RFC 9113 §8.2.3: cookie crumbs are joined with "; ", as
		// Envoy's codec does, into one field after the others.
		if !hb.trailers {
			if hb.cookie == "" {
				hb.cookie = value
			} else {
				hb.cookie += "; " + value
			}
			return
		}
	case "host":
		if !hb.trailers && !hb.hasHost {
			hb.host, hb.hasHost = value, true
		}
	}
	hb.h.Fields = append(hb.h.Fields, hhttp.HeaderField{Name: name, Value: value})
}

// endHeaderBlock acts on a fully decoded block.
func (sc *serverConn) endHeaderBlock() error {
	hb := &sc.hb
	if hb.h == nil {
		if hb.doReset {
			sc.mu.Lock()
			sc.resetStreamLocked(hb.id, hb.resetCode)
			sc.mu.Unlock()
		}
		return nil
	}
	if hb.malformed != "" {
		// Envoy terminates the whole connection on an invalid HEADERS
		// frame unless override_stream_error_on_invalid_http_message is
		// set (protocol.proto, Http2ProtocolOptions).
		return sc.malformedBlock(hb.malformed)
	}
	st := hb.st
	if hb.trailers {
		var err error
		sc.mu.Lock()
		switch {
		case hb.tooLarge:
			sc.resetStreamLocked(st.id, xhttp2.ErrCodeInternal)
		case !st.inMap || st.reset:
		case st.declaredLen >= 0 && st.recvLen != st.declaredLen:
			if sc.srv.streamErrors {
				sc.resetStreamLocked(st.id, xhttp2.ErrCodeProtocol)
				break
			}
			err = connError{xhttp2.ErrCodeProtocol, "content-length mismatch"}
		default:
			st.hasTrailers = len(st.trailers.Fields) > 0
			sc.endRemoteLocked(st)
			st.wakeBody()
		}
		// Release only now: st.decoding kept the calls above from
		// pooling st while it is still in use here.
		st.decoding = false
		st.maybeReleaseLocked()
		sc.mu.Unlock()
		hb.st, hb.h = nil, nil
		return err
	}
	if hb.tooLarge {
		sc.mu.Lock()
		sc.resetStreamLocked(hb.id, xhttp2.ErrCodeInternal)
		sc.mu.Unlock()
		sc.dropFresh()
		return nil
	}
	h := hb.h
	if reason := checkRequestPseudo(h, hb.pseudo, hb.hasHost); reason != "" {
		return sc.malformedBlock(reason)
	}
	if hb.endStream && hb.clen > 0 {
		return sc.malformedBlock("content-length mismatch")
	}
	if hb.cookie != "" {
		h.Fields = append(h.Fields, hhttp.HeaderField{Name: "cookie", Value: hb.cookie})
	}
	if hb.pseudo&pseudoAuthority == 0 && hb.hasHost {
		// In Envoy's model Host and :authority are one header.
		h.Del("host")
		h.Add(hhttp.Authority, hb.host)
	}
	st.extConnect = hb.pseudo&pseudoProtocol != 0
	if st.extConnect {
		transformUpgradeRequestFromH2toH1(h, hb.protocol)
	}
	st.declaredLen = hb.clen
	st.noBody = hb.endStream
	start := time.Now()

	sc.mu.Lock()
	if sc.wclosed {
		sc.mu.Unlock()
		sc.dropFresh()
		return nil
	}
	sc.streams[st.id] = st
	st.inMap = true
	st.start = start
	st.remoteEnded = hb.endStream
	if len(sc.streams) == 1 && sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	sc.wg.Add(1)
	sc.mu.Unlock()
	hb.st, hb.h, hb.fresh = nil, nil, false
	go sc.runStream(st)
	return nil
}

// malformedBlock handles a request block that is malformed (RFC 9113
// §8.1.1): a connection error by default, or with
// stream_error_on_invalid_http_message a reset of that stream only.
func (sc *serverConn) malformedBlock(reason string) error {
	sc.dropFresh()
	if !sc.srv.streamErrors {
		return connError{xhttp2.ErrCodeProtocol, reason}
	}
	sc.mu.Lock()
	sc.resetStreamLocked(sc.hb.id, xhttp2.ErrCodeProtocol)
	sc.mu.Unlock()
	return nil
}

// transformUpgradeRequestFromH2toH1 presents an extended CONNECT as the
// HTTP/1.1 upgrade the connection manager and router understand, as
// Envoy's codec does (source/common/http/utility.cc
// transformUpgradeRequestFromH2toH1, called from
// ServerStreamImpl::decodeHeaders): :method becomes GET, "upgrade: <:protocol>"
// and "connection: upgrade" are added, :protocol is dropped (it was never
// stored). https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#websocket-and-http-2
func transformUpgradeRequestFromH2toH1(h *hhttp.Headers, protocol string) {
	for i := range h.Fields {
		if h.Fields[i].Name == hhttp.Method {
			h.Fields[i].Value = "GET"
			break
		}
	}
	h.Fields = append(h.Fields,
		hhttp.HeaderField{Name: "upgrade", Value: protocol},
		hhttp.HeaderField{Name: "connection", Value: "upgrade"})
}

// checkRequestPseudo applies RFC 9113 §8.3.1 to a request's pseudo-headers,
// and RFC 8441 §4 to an extended CONNECT (:protocol with :scheme, :path
// and :authority).
func checkRequestPseudo(h *hhttp.Headers, seen uint8, hasHost bool) string {
	if seen&pseudoMethod == 0 {
		return "missing :method"
	}
	if seen&pseudoProtocol != 0 {
		if h.Method() != "CONNECT" {
			return ":protocol in a request other than CONNECT"
		}
		if seen&(pseudoScheme|pseudoPath|pseudoAuthority) != pseudoScheme|pseudoPath|pseudoAuthority {
			return "extended CONNECT without :scheme, :path or :authority"
		}
		if h.Path()[0] != '/' {
			return "invalid :path"
		}
		return ""
	}
	if h.Method() == "CONNECT" {
		if seen&(pseudoScheme|pseudoPath) != 0 {
			return ":scheme or :path in CONNECT"
		}
		if seen&pseudoAuthority == 0 && !hasHost {
			return "CONNECT without :authority"
		}
		return ""
	}
	if seen&(pseudoScheme|pseudoPath) != pseudoScheme|pseudoPath {
		return "missing :scheme or :path"
	}
	p := h.Path()
	if p[0] != '/' && !(p == "*" && h.Method() == "OPTIONS") {
		return "invalid :path"
	}
	return ""
}

// validFieldName: a non-empty lowercase token (RFC 9113 §8.2.1; nghttp2
// rejects uppercase).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !lowerTchar[s[i]] {
			return false
		}
	}
	return true
}

// validFieldValue rejects NUL, CR and LF (RFC 9113 §8.2.1).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0, '\r', '\n':
			return false
		}
	}
	return true
}

var lowerTchar = func() [256]bool {
	var t [256]bool
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// parseContentLength parses a non-negative decimal.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
