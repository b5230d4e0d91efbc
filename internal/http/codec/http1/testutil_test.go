package http1

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network/sockio"
)

// memConn is an in-memory net.Conn: reads come from in, writes go to out.
type memConn struct {
	in     io.Reader
	out    bytes.Buffer
	closed bool
}

func newMemConn(in string) *memConn { return &memConn{in: strings.NewReader(in)} }

func (c *memConn) Read(p []byte) (int, error)         { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *memConn) Close() error                       { c.closed = true; return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// seenRequest is what recordingHandler saw of one request.
type seenRequest struct {
	headers   []hhttp.HeaderField
	endStream bool
	body      string
	bodyErr   error
	trailers  []hhttp.HeaderField
	protocol  string
}

// recordingHandler records requests and codec errors and answers each
// request with 200 and body "ok" (or what respond does).
type recordingHandler struct {
	mu        sync.Mutex
	requests  []seenRequest
	codecErrs []*hhttp.CodecError
	respond   func(s hhttp.ServerStream)
	skipBody  bool
}

func (h *recordingHandler) ServeStream(s hhttp.ServerStream) {
	r := seenRequest{
		headers:   append([]hhttp.HeaderField(nil), s.RequestHeaders().Fields...),
		endStream: s.RequestEndStream(),
		protocol:  s.Protocol(),
	}
	if !h.skipBody {
		var body []byte
		buf := make([]byte, 3) // small reads exercise the chunk state machine
		for {
			n, err := s.ReadBody(buf)
			body = append(body, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				r.bodyErr = err
				break
			}
		}
		r.body = string(body)
		if t := s.RequestTrailers(); t != nil {
			r.trailers = append([]hhttp.HeaderField(nil), t.Fields...)
		}
	}
	h.mu.Lock()
	h.requests = append(h.requests, r)
	h.mu.Unlock()
	if h.respond != nil {
		h.respond(s)
		return
	}
	resp := &hhttp.Headers{}
	resp.SetStatus(200)
	resp.Add("content-type", "text/plain")
	_ = s.WriteHeaders(resp, false)
	_ = s.WriteData([]byte("ok"), true)
}

func (h *recordingHandler) ServeCodecError(s hhttp.ServerStream, err *hhttp.CodecError) {
	h.mu.Lock()
	h.codecErrs = append(h.codecErrs, err)
	h.mu.Unlock()
	resp := &hhttp.Headers{}
	resp.SetStatus(err.Status)
	_ = s.WriteHeaders(resp, true)
}

// listen starts a loopback listener serving every connection with Serve.
func listen(t *testing.T, opts hhttp.ServerOptions, h hhttp.StreamHandler) (addr string, served chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served = make(chan error, 16)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// As in herald: through sockio, so idle waits hold no buffer.
				served <- Serve(sockio.Wrap(c), opts, h)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), served
}

// readAllWithDeadline reads from c until EOF or the deadline.
func readAllWithDeadline(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading response: %v (got %q)", err, b)
	}
	return string(b)
}
