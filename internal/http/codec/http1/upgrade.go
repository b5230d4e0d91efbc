package http1

import (
	"bufio"
	"errors"
	"sync"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// HTTP upgrades (RFC 9110 §7.8;
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
//
// Server side: a request with an upgrade field and the "upgrade" token in
// connection (Envoy's Http::Utility::isUpgrade) puts the codec in upgrade
// mode as soon as its headers are parsed, as Envoy's
// ConnectionImpl::onHeadersCompleteBase sets handling_upgrade_: every byte
// after the headers is request body, unframed, until the peer closes its
// side (io.EOF). The connection manager decides whether the upgrade is
// allowed; the codec only frames. A 101 response then switches the
// response to raw bytes too (a tunnel): WriteData writes them as they come
// and the end of the response half-closes the connection (FIN), so that
// each direction ends on its own. Any other final response to an upgrade
// request ends the connection after it, and wakes a body read still
// blocked on the connection.
//
// In upgrade mode the request half (ReadBody) and the response half
// (WriteHeaders, WriteData) may run on two goroutines: they share no
// buffer (the reader owns connReader, the writer the bufio.Writer), and no
// 100 Continue is ever pending on an upgrade request, so ReadBody never
// flushes.
//
// CONNECT is handled the same way: its payload is raw bytes both ways, and
// a 2xx response (instead of a 101) makes the tunnel.
//
// Client side: an upgrade request without content-length, and a CONNECT,
// is sent without chunked framing and its head is flushed at once; its
// body is written raw and its end half-closes the upstream connection. A
// 101 response's body (a 2xx's to CONNECT) is every byte after its
// headers until the upstream closes (bodyClose).
//
// The raw payload goes upstream only once the response accepted the
// upgrade (rawGate): until then WriteData keeps it, and a refusal drops
// it. An upstream that does not upgrade goes on parsing HTTP/1.1 on the
// connection, so payload sent early would reach it as requests herald
// never routed nor filtered (request smuggling). Envoy's router holds the
// payload the same way until the 101 (2xx to CONNECT): UpstreamRequest's
// paused_for_websocket_, paused_for_connect_ and
// paused_for_generic_upgrade_ (source/common/router/upstream_request.cc;
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).

// classifyUpgrade runs when the request has an upgrade field. framed: the
// request has a content-length above zero or a transfer-encoding.
func (sc *serverConn) classifyUpgrade(framed bool) {
	st := &sc.st
	req := &st.req
	connUpgrade := connectionUpgrade(req)
	// An Upgrade in an HTTP/1.0 request is ignored (RFC 9110 §7.8).
	if !connUpgrade || !st.http11 {
		return
	}
	if equalFold(req.Get("upgrade"), "h2c") {
		// Envoy ignores h2c upgrade requests: it removes the upgrade
		// headers and serves the request over HTTP/1.1
		// (ConnectionImpl::onHeadersCompleteBase, envoyproxy/envoy#7161).
		req.Del("upgrade")
		req.Del("http2-settings")
		return
	}
	if framed {
		// TODO(#6): a framed body before the upgraded bytes (llhttp's
		// semantics). Until then such a request is served as a plain one.
		req.Del("upgrade")
		return
	}
	st.upgrade = true
	st.body.reset(bodyClose, 0)
}

// endUpgradeResponse runs when the response to an upgrade request ends:
// a tunnel half-closes the connection, any other response wakes a request
// body read still waiting for bytes (the connection closes after it).
func (st *serverStream) endUpgradeResponse() {
	c := st.sc.c
	if st.tunnel {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		return
	}
	_ = c.SetReadDeadline(time.Unix(1, 0))
}

// connectionUpgrade reports whether a connection field of h has the
// "upgrade" token.
func connectionUpgrade(h *hhttp.Headers) bool {
	for i := range h.Fields {
		if f := &h.Fields[i]; f.Name == "connection" && hasToken(f.Value, "upgrade") {
			return true
		}
	}
	return false
}

// writeTunnelFields writes the fields of a 2xx response to CONNECT:
// writeFields without content-length.
func writeTunnelFields(bw *bufio.Writer, h *hhttp.Headers) error {
	for i := range h.Fields {
		f := &h.Fields[i]
		if len(f.Name) == 0 || f.Name[0] == ':' || f.Name == "transfer-encoding" || f.Name == "content-length" {
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

// maxPendingRaw bounds the payload an upgrade request may send before its
// response: Envoy's default per_connection_buffer_limit_bytes (1 MiB), the
// buffer its router holds a paused upgrade's payload in. Peers wait for
// the 101 (RFC 6455 §4.1) or send a little (a TLS ClientHello through
// CONNECT), so going over it fails the exchange (the connection closes).
const maxPendingRaw = 1 << 20

var (
	errRawPendingFull = errors.New("http1: upgrade payload over 1 MiB before the upstream's response")
	errUpgradeRefused = errors.New("http1: upstream refused the upgrade: payload dropped")
)

// Raw payload states (rawGate.state).
const (
	rawNone    uint8 = iota // not a raw request, or its head not sent yet
	rawPending              // waiting for the response: payload kept in buf
	rawOpen                 // accepted: payload goes to the connection
	rawRefused              // refused or failed: payload dropped
)

// rawGate holds an upgrade or CONNECT request's payload until the
// response decides. The write half appends to buf while pending and never
// touches the writer then; the read half, on the response, writes buf out
// (accepted) or drops it, under mu, before the write half may use the
// writer again.
type rawGate struct {
	mu    sync.Mutex
	state uint8  // guarded by mu once the request head went out
	buf   []byte // payload written while pending
	end   bool   // the payload ended while pending
}

func (g *rawGate) reset() { g.state, g.buf, g.end = rawNone, nil, false }

// tunnelStatus reports whether a final response status switches the
// connection to raw bytes: 101, or a 2xx to CONNECT.
func tunnelStatus(code int, connect bool) bool {
	return code == 101 || (connect && code >= 200 && code < 300)
}

// writeRaw is WriteData (and the end of the request) for a raw request.
func (cc *ClientConn) writeRaw(p []byte, endStream bool) error {
	g := &cc.raw
	g.mu.Lock()
	switch g.state {
	case rawPending:
		if len(g.buf)+len(p) > maxPendingRaw {
			// Nothing of it goes upstream (a truncated payload would
			// corrupt the upgraded protocol): the exchange fails.
			g.state, g.buf = rawRefused, nil
			g.mu.Unlock()
			_ = cc.CloseConn()
			return cc.writeFail(errRawPendingFull)
		}
		g.buf = append(g.buf, p...)
		if endStream {
			g.end = true
			cc.reqDone.Store(true)
		}
		g.mu.Unlock()
		return nil
	case rawRefused:
		g.mu.Unlock()
		if len(p) > 0 {
			return errUpgradeRefused
		}
		if endStream {
			cc.reqDone.Store(true)
		}
		return nil
	}
	g.mu.Unlock()
	if len(p) > 0 {
		_, _ = cc.bw.Write(p)
	}
	if endStream {
		return cc.endRequest()
	}
	if err := cc.bw.Flush(); err != nil {
		return cc.writeFail(err)
	}
	return nil
}

// decideRaw runs on the read half once the response head of a raw request
// is known (or failed): an accepted upgrade sends the payload kept so far
// (and the half-close, when it ended), anything else drops it.
func (cc *ClientConn) decideRaw(accepted bool) {
	g := &cc.raw
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != rawPending {
		return
	}
	if !accepted {
		g.state, g.buf = rawRefused, nil
		return
	}
	g.state = rawOpen
	if len(g.buf) == 0 && !g.end {
		return
	}
	_, _ = cc.bw.Write(g.buf)
	g.buf = nil
	if err := cc.bw.Flush(); err != nil {
		_ = cc.writeFail(err)
		return
	}
	if g.end {
		if cw, ok := cc.c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
}
