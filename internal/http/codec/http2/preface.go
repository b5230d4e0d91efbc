package http2

import (
	"crypto/tls"
	"errors"
	"net"

	xhttp2 "golang.org/x/net/http2"
)

// Preface is the HTTP/2 client connection preface (RFC 9113 §3.4). Under
// codec_type AUTO the connection manager peeks len(Preface) bytes and picks
// HTTP/2 when they match, HTTP/1.1 otherwise, as Envoy does.
const Preface = xhttp2.ClientPreface

// IsPreface reports whether b starts with the full client preface.
func IsPreface(b []byte) bool {
	return len(b) >= len(Preface) && string(b[:len(Preface)]) == Preface
}

// NewPeekedConn returns a net.Conn whose Read first returns peeked (bytes the
// caller already read from c while sniffing) and then reads from c. Hand it
// to Serve so the HTTP/2 server sees the preface it expects. When c is a
// *tls.Conn (or anything with ConnectionState), the result keeps that method
// for callers that inspect the TLS state.
func NewPeekedConn(c net.Conn, peeked []byte) net.Conn {
	if len(peeked) == 0 {
		return c
	}
	pc := &peekedConn{Conn: c, peeked: peeked}
	if cs, ok := c.(connectionStater); ok {
		return &peekedTLSConn{peekedConn: pc, cs: cs}
	}
	return pc
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// peekedConn replays peeked before reading from Conn. Read is only called
// from the server's reader goroutine, so peeked needs no lock.
type peekedConn struct {
	net.Conn
	peeked []byte
}

// Read implements net.Conn.
func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the wrapped connection when it supports it, so
// that the server can linger after its last frame.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

type peekedTLSConn struct {
	*peekedConn
	cs connectionStater
}

// ConnectionState forwards to the wrapped TLS connection.
func (c *peekedTLSConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

var (
	_ net.Conn         = (*peekedConn)(nil)
	_ connectionStater = (*peekedTLSConn)(nil)
)
