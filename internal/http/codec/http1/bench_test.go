package http1

import (
	"io"
	"net"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// loopConn serves msg n times, one message per Read, then io.EOF; writes are
// counted and discarded. It measures codec CPU without syscalls.
type loopConn struct {
	msg     []byte
	n       int
	off     int
	written int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	k := copy(p, c.msg[c.off:])
	c.off += k
	if c.off == len(c.msg) {
		c.off = 0
		c.n--
	}
	return k, nil
}
func (c *loopConn) Write(p []byte) (int, error)      { c.written += len(p); return len(p), nil }
func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *loopConn) SetDeadline(time.Time) error      { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }

// smallHandler answers every request with a 2-byte body, reusing its
// response headers as a connection manager would reuse its buffers.
type smallHandler struct {
	resp hhttp.Headers
	body []byte
}

func (h *smallHandler) ServeStream(s hhttp.ServerStream) {
	_ = s.RequestHeaders().Authority()
	_ = s.WriteHeaders(&h.resp, false)
	_ = s.WriteData(h.body, true)
}

func (h *smallHandler) ServeCodecError(s hhttp.ServerStream, err *hhttp.CodecError) {
	panic(err)
}

const benchRequest = "GET /api/v1/items?id=42 HTTP/1.1\r\n" +
	"Host: backend.example.com\r\n" +
	"User-Agent: wrk/4.2.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Encoding: gzip, deflate\r\n" +
	"X-Request-Id: 5f0c6d2e-7c1b-4b8e-9a55-0a2b4c6d8e10\r\n" +
	"\r\n"

// BenchmarkServerSmallGET parses one small keep-alive GET and writes a small
// response (content-length framed) per op.
func BenchmarkServerSmallGET(b *testing.B) {
	h := &smallHandler{body: []byte("ok")}
	h.resp.SetStatus(200)
	h.resp.Add("content-type", "text/plain")
	h.resp.Add("content-length", "2")
	c := &loopConn{msg: []byte(benchRequest), n: b.N}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRequest)))
	b.ResetTimer()
	if err := Serve(c, hhttp.ServerOptions{}, h); err != nil {
		b.Fatal(err)
	}
}

// respConn answers each request written to it with a canned response.
type respConn struct {
	loopConn
	resp    []byte
	pending int
}

func (c *respConn) Write(p []byte) (int, error) { c.pending++; return len(p), nil }
func (c *respConn) Read(p []byte) (int, error) {
	if c.pending == 0 {
		return 0, io.EOF
	}
	k := copy(p, c.resp[c.off:])
	c.off += k
	if c.off == len(c.resp) {
		c.off = 0
		c.pending--
	}
	return k, nil
}

var benchResponse = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: application/json\r\n" +
	"Date: Mon, 01 Jan 2026 00:00:00 GMT\r\n" +
	"Server: backend\r\n" +
	"Content-Length: 15\r\n" +
	"\r\n" +
	`{"id":42,"a":1}`

// BenchmarkClientRoundTrip writes a GET and reads a small response on one
// reused ClientConn per op.
func BenchmarkClientRoundTrip(b *testing.B) {
	c := &respConn{resp: []byte(benchResponse)}
	cc := NewClientConn(c)
	req := reqHeaders("GET", "/api/v1/items?id=42", "backend.example.com",
		"user-agent", "wrk/4.2.0", "accept", "*/*", "x-request-id", "5f0c6d2e-7c1b-4b8e-9a55-0a2b4c6d8e10")
	var resp hhttp.Headers
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := cc.WriteHeaders(req, true); err != nil {
			b.Fatal(err)
		}
		if _, err := cc.ReadHeaders(&resp); err != nil {
			b.Fatal(err)
		}
		for {
			_, err := cc.ReadBody(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if !cc.Reusable() {
			b.Fatal("not reusable")
		}
		cc.Close(nil)
	}
}

// BenchmarkServerChunkedPOST parses a POST with a chunked body.
func BenchmarkServerChunkedPOST(b *testing.B) {
	const req = "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
	h := &bodyHandler{buf: make([]byte, 4096)}
	h.resp.SetStatus(204)
	c := &loopConn{msg: []byte(req), n: b.N}
	b.ReportAllocs()
	b.ResetTimer()
	if err := Serve(c, hhttp.ServerOptions{}, h); err != nil {
		b.Fatal(err)
	}
}

type bodyHandler struct {
	resp hhttp.Headers
	buf  []byte
}

func (h *bodyHandler) ServeStream(s hhttp.ServerStream) {
	for {
		_, err := s.ReadBody(h.buf)
		if err != nil {
			break
		}
	}
	_ = s.WriteHeaders(&h.resp, true)
}

func (h *bodyHandler) ServeCodecError(s hhttp.ServerStream, err *hhttp.CodecError) { panic(err) }
