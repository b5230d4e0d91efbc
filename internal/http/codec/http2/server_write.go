package http2

import (
	"log/slog"
	"strings"

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
	if sc.queuedFrames+sc.flightFrames > sc.srv.limits.outboundFrames {
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
	if sc.queuedControl+sc.flightControl > sc.srv.limits.outboundControlFrames {
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
	sc.encodeFieldsLocked(h, false)
	sc.writeBlockLocked(id, endStream)
}

// writeUpgradeHeadersLocked writes an upgrade response as HTTP/2 wants it
// (Envoy's transformUpgradeResponseFromH1toH2): :status 200 when it was
// 101, no upgrade/connection (dropped as connection-specific anyway) and
// no "content-length: 0".
func (sc *serverConn) writeUpgradeHeadersLocked(id uint32, h *hhttp.Headers, endStream bool) {
	sc.hbuf.b = sc.hbuf.b[:0]
	status := h.Get(hhttp.Status)
	if status == "101" {
		status = "200"
	}
	_ = sc.enc.WriteField(hpack.HeaderField{Name: hhttp.Status, Value: status})
	sc.encodeFieldsLocked(h, true)
	sc.writeBlockLocked(id, endStream)
}

// encodeFieldsLocked HPACK-encodes the regular fields of h into sc.hbuf.
func (sc *serverConn) encodeFieldsLocked(h *hhttp.Headers, upgrade bool) {
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == 0 || f.Name[0] == ':' || connectionSpecific(f.Name) {
			continue
		}
		name := f.Name
		if hasUpper(name) {
			name = toLowerASCII(name)
		}
		if upgrade && name == "content-length" && f.Value == "0" {
			continue
		}
		_ = sc.enc.WriteField(hpack.HeaderField{Name: name, Value: f.Value})
	}
}

// writeBlockLocked queues the encoded block in sc.hbuf as HEADERS plus
// CONTINUATION frames.
func (sc *serverConn) writeBlockLocked(id uint32, endStream bool) {
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

// isUpgrade is Envoy's Utility::isUpgrade: an "upgrade" field and a
// "connection" field carrying the "upgrade" token.
func isUpgrade(h *hhttp.Headers) bool {
	hasUpgrade, connUpgrade := false, false
	for i := range h.Fields {
		f := &h.Fields[i]
		switch {
		case len(f.Name) == 7 && asciiEqualFold(f.Name, "upgrade"):
			hasUpgrade = true
		case len(f.Name) == 10 && asciiEqualFold(f.Name, "connection"):
			connUpgrade = connUpgrade || hasToken(f.Value, "upgrade")
		}
	}
	return hasUpgrade && connUpgrade
}

// hasToken reports whether the comma-separated list v holds token,
// case-insensitively.
func hasToken(v, token string) bool {
	for len(v) > 0 {
		var item string
		if i := strings.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, ""
		}
		if asciiEqualFold(strings.Trim(item, " \t"), token) {
			return true
		}
	}
	return false
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
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
