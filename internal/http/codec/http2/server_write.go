package http2

import (
	"log/slog"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// The write path: every frame is appended to sc.out under sc.mu by the
// goroutine that produced it (no channel hand-off). flushLocked writes out to
// the socket with mu released; a goroutine that finds another one flushing
// leaves its frames to it, so concurrent streams coalesce into one write.
// While a stream's HEADERS wait for its DATA (DeferHeadersFlush) nothing is
// flushed: that stream's WriteData, which follows at once, flushes both.

// maxRetainedOut bounds the output buffer kept between flushes.
const maxRetainedOut = 64 << 10

// flushLocked writes the queued frames. Called and returns with sc.mu held.
func (sc *serverConn) flushLocked() {
	if sc.flushing {
		return
	}
	sc.flushing = true
	for len(sc.out) > 0 && !sc.broken && sc.deferred == 0 {
		buf := sc.out
		sc.out, sc.spare = sc.spare[:0], nil
		sc.flightFrames, sc.flightControl = sc.queuedFrames, sc.queuedControl
		sc.queuedFrames, sc.queuedControl = 0, 0
		sc.mu.Unlock()
		_, err := sc.conn.Write(buf)
		sc.mu.Lock()
		sc.flightFrames, sc.flightControl = 0, 0
		if cap(buf) <= maxRetainedOut {
			sc.spare = buf[:0]
		}
		if err != nil {
			sc.breakLocked()
		}
	}
	sc.flushing = false
	if sc.closeAfter && !sc.broken && len(sc.out) == 0 {
		sc.broken = true
		sc.out = sc.out[:0]
		if cw, ok := sc.conn.(closeWriter); !ok || cw.CloseWrite() != nil {
			sc.conn.Close()
		}
	}
}

// breakLocked gives up on the connection: nothing more is written and the
// reader goroutine is unblocked to tear down.
func (sc *serverConn) breakLocked() {
	sc.broken, sc.wclosed = true, true
	sc.out = sc.out[:0]
	sc.conn.Close()
}

// countFrameLocked applies Envoy's max_outbound_frames after a frame was
// queued.
func (sc *serverConn) countFrameLocked() {
	sc.queuedFrames++
	if sc.queuedFrames+sc.flightFrames > maxOutboundFrames {
		// Envoy: "Exceeding this limit triggers flood mitigation and
		// connection is terminated" (http2.outbound_flood).
		slog.Debug("http2: outbound frames flood, closing connection")
		sc.breakLocked()
	}
}

// countControlLocked applies max_outbound_control_frames (PING, SETTINGS,
// RST_STREAM) after a control frame was queued.
func (sc *serverConn) countControlLocked() {
	sc.queuedControl++
	if sc.queuedControl+sc.flightControl > maxOutboundControlFrames {
		slog.Debug("http2: outbound control frames flood, closing connection")
		sc.breakLocked()
		return
	}
	sc.countFrameLocked()
}

func (sc *serverConn) writeGoAwayLocked(last uint32, code xhttp2.ErrCode) {
	if sc.broken {
		return
	}
	_ = sc.fr.WriteGoAway(last, code, nil)
	sc.countFrameLocked()
}

// connectionSpecific reports the fields RFC 9113 §8.2.2 forbids in HTTP/2;
// they are dropped from responses (Envoy's codec never emits them).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// writeHeadersLocked encodes h (response headers or trailers) in the order
// given and queues HEADERS plus CONTINUATION frames as needed.
func (sc *serverConn) writeHeadersLocked(id uint32, h *hhttp.Headers, endStream, trailers bool) {
	sc.hbuf.b = sc.hbuf.b[:0]
	if !trailers {
		_ = sc.enc.WriteField(hpack.HeaderField{Name: hhttp.Status, Value: h.Get(hhttp.Status)})
	}
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == 0 || f.Name[0] == ':' || connectionSpecific(f.Name) {
			continue
		}
		name := f.Name
		if hasUpper(name) {
			name = toLowerASCII(name)
		}
		_ = sc.enc.WriteField(hpack.HeaderField{Name: name, Value: f.Value})
	}
	block := sc.hbuf.b
	max := int(sc.peerMaxFrame)
	first := block
	if len(first) > max {
		first = first[:max]
	}
	block = block[len(first):]
	_ = sc.fr.WriteHeaders(xhttp2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: first,
		EndStream:     endStream,
		EndHeaders:    len(block) == 0,
	})
	sc.countFrameLocked()
	for len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		_ = sc.fr.WriteContinuation(id, len(block) == 0, frag)
		sc.countFrameLocked()
	}
	if cap(sc.hbuf.b) > maxRetainedOut {
		sc.hbuf.b = nil
	}
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
