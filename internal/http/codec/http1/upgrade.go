package http1

import (
	"bufio"
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
