package http1

import (
	"errors"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network/sockio"
)

// pooledMemConn is a memConn that reads through sockio.PooledReader the way
// sockio.Conn does when the socket is empty: the buffer is released before
// every read (as on EAGAIN) and taken again for the read. Reads return at
// most chunk bytes, so requests and bodies arrive in pieces.
type pooledMemConn struct {
	*memConn
	chunk int
	// idleReleases counts releases that found the connection between
	// requests with both its read buffer and writer given back.
	idleReleases int
	// midRequestWriterLost counts releases that took the writer away while
	// a request was in progress (must stay 0).
	midRequestWriterLost int
}

var _ sockio.PooledReader = (*pooledMemConn)(nil)

func (c *pooledMemConn) ReadPooled(src sockio.BufferSource) (int, error) {
	src.ReleaseReadBuffer()
	if rd, ok := src.(*connReader); ok && rd.server != nil {
		switch {
		case rd.server.waiting && rd.buf == nil && rd.server.bw == nil:
			c.idleReleases++
		case !rd.server.waiting && rd.server.bw == nil:
			c.midRequestWriterLost++
		}
	}
	b := src.ReadBuffer()
	if len(b) > c.chunk {
		b = b[:c.chunk]
	}
	return c.memConn.Read(b)
}

// TestServerPooledReads: reading through a PooledReader gives the same
// requests and responses as plain reads, and an idle connection holds
// neither its read buffer nor its writer.
func TestServerPooledReads(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// wantIdle is the minimum number of idle releases: one per wait
		// for a next request.
		wantIdle int
	}{
		{
			name:     "keep-alive requests with bodies",
			in:       "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
			wantIdle: 2,
		},
		{
			name:     "chunked body with trailers",
			in:       "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\nt: v\r\n\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n",
			wantIdle: 1,
		},
		{
			name:     "expect 100-continue",
			in:       "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /f HTTP/1.1\r\nHost: h\r\n\r\n",
			wantIdle: 1,
		},
		{
			name:     "malformed second request",
			in:       "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\nHo st: h\r\n\r\n",
			wantIdle: 1,
		},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 7, 4096} {
			t.Run(tc.name, func(t *testing.T) {
				plainH := &recordingHandler{}
				plain := newMemConn(tc.in)
				plainErr := Serve(plain, hhttp.ServerOptions{}, plainH)

				pooledH := &recordingHandler{}
				pooled := &pooledMemConn{memConn: newMemConn(tc.in), chunk: chunk}
				pooledErr := Serve(pooled, hhttp.ServerOptions{}, pooledH)

				var pe, qe *hhttp.CodecError
				if errors.As(plainErr, &pe) != errors.As(pooledErr, &qe) || (pe != nil && pe.Details != qe.Details) {
					t.Errorf("Serve error: pooled %v, plain %v", pooledErr, plainErr)
				}
				if got, want := pooled.out.String(), plain.out.String(); got != want {
					t.Errorf("chunk %d: responses differ:\npooled %q\n plain %q", chunk, got, want)
				}
				if got, want := len(pooledH.requests), len(plainH.requests); got != want || got == 0 {
					t.Fatalf("chunk %d: served %d requests, plain reads served %d", chunk, got, want)
				}
				for i := range plainH.requests {
					if g, w := pooledH.requests[i].body, plainH.requests[i].body; g != w {
						t.Errorf("chunk %d: request %d body %q, want %q", chunk, i, g, w)
					}
				}
				if pooled.idleReleases < tc.wantIdle {
					t.Errorf("chunk %d: idle releases = %d, want at least %d", chunk, pooled.idleReleases, tc.wantIdle)
				}
				if pooled.midRequestWriterLost != 0 {
					t.Errorf("chunk %d: the writer was released %d times during a request", chunk, pooled.midRequestWriterLost)
				}
			})
		}
	}
}
