package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func respHeaders(status int, kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.SetStatus(status)
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestServerResponseFraming(t *testing.T) {
	tests := []struct {
		name    string
		request string
		respond func(s hhttp.ServerStream)
		want    string
	}{
		{
			name:    "headers only gets content-length 0",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(200, "x", "y"), true) },
			want:    "HTTP/1.1 200 OK\r\nx: y\r\ncontent-length: 0\r\n\r\n",
		},
		{
			name:    "content-length body",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(404, "content-length", "5"), false)
				_ = s.WriteData([]byte("nope!"), true)
			},
			want: "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nnope!",
		},
		{
			name:    "chunked when no content-length, transfer-encoding from h ignored",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "transfer-encoding", "gzip"), false)
				_ = s.WriteData([]byte("hello"), false)
				_ = s.WriteData([]byte(" world, this is longer"), false)
				_ = s.WriteData(nil, true)
			},
			want: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n16\r\n world, this is longer\r\n0\r\n\r\n",
		},
		{
			name:    "chunked with trailers",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200), false)
				_ = s.WriteData([]byte("abc"), false)
				_ = s.WriteTrailers(&hhttp.Headers{Fields: []hhttp.HeaderField{{Name: "grpc-status", Value: "0"}}})
			},
			want: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n",
		},
		{
			name:    "trailers dropped without chunking",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "content-length", "3"), false)
				_ = s.WriteData([]byte("abc"), false)
				_ = s.WriteTrailers(&hhttp.Headers{Fields: []hhttp.HeaderField{{Name: "t", Value: "v"}}})
			},
			want: "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
		},
		{
			name:    "HEAD keeps content-length and drops the body",
			request: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "content-length", "5"), false)
				_ = s.WriteData([]byte("hello"), true)
			},
			want: "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
		},
		{
			name:    "HEAD headers only gets no content-length",
			request: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(200), true) },
			want:    "HTTP/1.1 200 OK\r\n\r\n",
		},
		{
			name:    "204 gets no framing",
			request: "DELETE / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(204), true) },
			want:    "HTTP/1.1 204 No Content\r\n\r\n",
		},
		{
			name:    "304 gets no framing",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(304, "etag", `"x"`), true) },
			want:    "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n",
		},
		{
			name:    "interim 103 then final",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(103, "link", "</a>"), false)
				_ = s.WriteHeaders(respHeaders(200), true)
			},
			want: "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
		},
		{
			name:    "unknown status reason",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(299), true) },
			want:    "HTTP/1.1 299 Unknown\r\ncontent-length: 0\r\n\r\n",
		},
		{
			name:    "response splitting attempt rejected",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				if err := s.WriteHeaders(respHeaders(200, "x", "a\r\nSet-Cookie: evil"), true); err == nil {
					panic("WriteHeaders accepted CRLF in a value")
				}
			},
			want: "HTTP/1.1 200 OK\r\n",
		},
		{
			name:    "HTTP/1.0 close-delimited body",
			request: "GET / HTTP/1.0\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200), false)
				_ = s.WriteData([]byte("abc"), true)
			},
			want: "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\nabc",
		},
		{
			name:    "100-continue answered before the response",
			request: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(200), true) },
			want:    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
		},
		{
			name:    "no 100-continue for a rejected request",
			request: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
			want:    "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
		},
		{
			name:    "connection close requested by the client is echoed",
			request: "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(200), true) },
			want:    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
		},
		{
			name:    "connection close from the handler ends the connection",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) { _ = s.WriteHeaders(respHeaders(503, "connection", "close"), true) },
			want:    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
		},
		{
			name:    "incomplete response closes the connection",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "content-length", "10"), false)
				_ = s.WriteData([]byte("abc"), false)
			},
			want: "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
		},
		{
			name:    "body shorter than content-length at end of stream closes",
			request: "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
			respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "content-length", "10"), false)
				_ = s.WriteData([]byte("abc"), true)
			},
			want: "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &recordingHandler{respond: tc.respond}
			c := newMemConn(tc.request)
			var cerr *hhttp.CodecError
			// HTTP/1.0 status lines need accept_http_10 (Envoy's rule).
			if err := Serve(c, hhttp.ServerOptions{AcceptHTTP10: true}, h); err != nil && !errors.As(err, &cerr) {
				t.Fatalf("Serve: %v", err)
			}
			if got := c.out.String(); got != tc.want {
				t.Errorf("response:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestServerPipelined sends three requests in one write: they are served in
// order, one at a time, on one connection.
func TestServerPipelined(t *testing.T) {
	in := "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n"
	h := &recordingHandler{}
	c := newMemConn(in)
	if err := Serve(c, hhttp.ServerOptions{}, h); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	var paths, bodies []string
	for _, r := range h.requests {
		for _, f := range r.headers {
			if f.Name == ":path" {
				paths = append(paths, f.Value)
			}
		}
		bodies = append(bodies, r.body)
	}
	if got, want := strings.Join(paths, ","), "/1,/2,/3,/4"; got != want {
		t.Errorf("paths = %s, want %s", got, want)
	}
	if got, want := strings.Join(bodies, ","), ",abc,x,"; got != want {
		t.Errorf("bodies = %q, want %q", got, want)
	}
	br := bufio.NewReader(strings.NewReader(c.out.String()))
	for i := 0; i < 4; i++ {
		resp, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Errorf("response %d = %d %q, want 200 \"ok\"", i, resp.StatusCode, b)
		}
	}
}

// TestServerUnreadBody: a handler that answers without reading the body
// keeps the connection when the body is already buffered.
func TestServerUnreadBody(t *testing.T) {
	in := "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nt: v\r\n\r\n" +
		"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n"
	h := &recordingHandler{skipBody: true}
	c := newMemConn(in)
	if err := Serve(c, hhttp.ServerOptions{}, h); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if len(h.requests) != 3 {
		t.Fatalf("served %d requests, want 3", len(h.requests))
	}
}

func TestServerHTTP10(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantCount int
		wantConn  string
	}{
		{
			name:      "without keep-alive the connection closes",
			in:        "GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
			wantCount: 1, wantConn: "close",
		},
		{
			name:      "keep-alive keeps it open",
			in:        "GET /1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
			wantCount: 2, wantConn: "keep-alive",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &recordingHandler{respond: func(s hhttp.ServerStream) {
				_ = s.WriteHeaders(respHeaders(200, "content-length", "2"), false)
				_ = s.WriteData([]byte("ok"), true)
			}}
			c := newMemConn(tc.in)
			if err := Serve(c, hhttp.ServerOptions{AcceptHTTP10: true}, h); err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if len(h.requests) != tc.wantCount {
				t.Errorf("served %d requests, want %d", len(h.requests), tc.wantCount)
			}
			resp, err := nethttp.ReadResponse(bufio.NewReader(strings.NewReader(c.out.String())), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Proto != "HTTP/1.0" || resp.Header.Get("Connection") != tc.wantConn {
				t.Errorf("response %s connection %q, want HTTP/1.0 %q", resp.Proto, resp.Header.Get("Connection"), tc.wantConn)
			}
		})
	}
}

// TestServerKeepAliveTCP drives several requests over one loopback
// connection, one after the other, with Go's client parser reading the
// responses.
func TestServerKeepAliveTCP(t *testing.T) {
	h := &recordingHandler{}
	addr, served := listen(t, hhttp.ServerOptions{}, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		if _, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, b, resp.Close)
		}
	}
	c.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after the peer closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the peer closed")
	}
	if len(h.requests) != 5 {
		t.Errorf("served %d requests, want 5", len(h.requests))
	}
}

func TestServerIdleTimeout(t *testing.T) {
	h := &recordingHandler{}
	addr, served := listen(t, hhttp.ServerOptions{IdleTimeout: 50 * time.Millisecond}, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One request, then silence.
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	out := readAllWithDeadline(t, c, 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
		t.Errorf("response = %q", out)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrIdleTimeout) {
			t.Errorf("Serve = %v, want ErrIdleTimeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not time out")
	}
}

// TestServerCodecErrorTCP checks that the error response reaches a client
// that had already sent more (pipelined) bytes.
func TestServerCodecErrorTCP(t *testing.T) {
	h := &recordingHandler{}
	addr, served := listen(t, hhttp.ServerOptions{}, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || !resp.Close {
		t.Errorf("response %d close=%v, want 400 with connection: close", resp.StatusCode, resp.Close)
	}
	c.Close()
	select {
	case err := <-served:
		var cerr *hhttp.CodecError
		if !errors.As(err, &cerr) || cerr.Details != DetailsChunkedContentLength {
			t.Errorf("Serve = %v, want %s", err, DetailsChunkedContentLength)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if len(h.requests) != 0 {
		t.Errorf("dispatched %d requests, want 0", len(h.requests))
	}
}

// TestServerUnreadBodyNotBuffered: when the handler answers without reading
// a body that has not fully arrived, the connection is closed instead of
// waiting for it.
func TestServerUnreadBodyNotBuffered(t *testing.T) {
	h := &recordingHandler{skipBody: true}
	addr, served := listen(t, hhttp.ServerOptions{}, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly part"); err != nil {
		t.Fatal(err)
	}
	out := readAllWithDeadline(t, c, 5*time.Second) // returns at the server's close
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "\r\n2\r\nok\r\n0\r\n\r\n") {
		t.Errorf("response = %q", out)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}
