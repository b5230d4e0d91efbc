package http1

import (
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

func reqHeaders(method, path, authority string, kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, method)
	h.Add(hhttp.Scheme, "http")
	h.Add(hhttp.Authority, authority)
	h.Add(hhttp.Path, path)
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func readAll(t *testing.T, cc *ClientConn) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 5)
	for {
		n, err := cc.ReadBody(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return string(out)
		}
		if err != nil {
			t.Fatalf("ReadBody: %v", err)
		}
	}
}

// testBackend is a net/http server on loopback counting its connections.
func testBackend(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	mux := nethttp.NewServeMux()
	mux.HandleFunc("/echo", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-CL", fmt.Sprint(r.ContentLength))
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/chunked", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, "part1-")
		w.(nethttp.Flusher).Flush()
		_, _ = io.WriteString(w, "part2")
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/nocontent", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(204)
	})
	mux.HandleFunc("/close", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(c net.Conn, s nethttp.ConnState) {
		if s == nethttp.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func dialBackend(t *testing.T, srv *httptest.Server) *ClientConn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewClientConn(c)
}

func TestClientAgainstNetHTTP(t *testing.T) {
	srv, conns := testBackend(t)
	cc := dialBackend(t, srv)
	var released []bool
	cc.OnRelease = func(got *ClientConn, reusable bool) {
		if got != cc {
			t.Errorf("OnRelease got another conn")
		}
		released = append(released, reusable)
	}

	type exchange struct {
		name         string
		req          *hhttp.Headers
		body         []string // WriteData calls; none means endStream on headers
		wantStatus   string
		wantEnd      bool
		wantBody     string
		wantHeaders  map[string]string
		wantTrailers []hhttp.HeaderField
		wantReusable bool
	}
	tests := []exchange{
		{
			name: "GET without body", req: reqHeaders("GET", "/echo", "example.com"),
			wantStatus: "200", wantEnd: true, wantBody: "",
			wantHeaders:  map[string]string{"x-method": "GET", "x-host": "example.com", "x-cl": "0", "x-te": ""},
			wantReusable: true,
		},
		{
			name: "POST streamed body goes chunked", req: reqHeaders("POST", "/echo", "h"),
			body:       []string{"hello ", "world"},
			wantStatus: "200", wantBody: "hello world",
			wantHeaders:  map[string]string{"x-te": "chunked", "x-cl": "-1"},
			wantReusable: true,
		},
		{
			name: "PUT with content-length", req: reqHeaders("PUT", "/echo", "h", "content-length", "3"),
			body:       []string{"abc"},
			wantStatus: "200", wantBody: "abc",
			wantHeaders:  map[string]string{"x-te": "", "x-cl": "3", "x-method": "PUT"},
			wantReusable: true,
		},
		{
			name: "POST without body gets content-length 0", req: reqHeaders("POST", "/echo", "h"),
			wantStatus: "200", wantEnd: true,
			wantHeaders:  map[string]string{"x-cl": "0", "x-te": ""},
			wantReusable: true,
		},
		{
			name: "chunked response with trailers", req: reqHeaders("GET", "/chunked", "h"),
			wantStatus: "200", wantBody: "part1-part2",
			wantTrailers: []hhttp.HeaderField{{Name: "x-sum", Value: "42"}},
			wantReusable: true,
		},
		{
			name: "HEAD has no body", req: reqHeaders("HEAD", "/echo", "h"),
			wantStatus: "200", wantEnd: true,
			wantReusable: true,
		},
		{
			name: "204", req: reqHeaders("GET", "/nocontent", "h"),
			wantStatus: "204", wantEnd: true,
			wantReusable: true,
		},
		{
			name: "connection close is not reusable", req: reqHeaders("GET", "/close", "h"),
			wantStatus: "200", wantBody: "bye",
			wantReusable: false,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := cc.WriteHeaders(tc.req, len(tc.body) == 0); err != nil {
				t.Fatalf("WriteHeaders: %v", err)
			}
			for j, b := range tc.body {
				if err := cc.WriteData([]byte(b), j == len(tc.body)-1); err != nil {
					t.Fatalf("WriteData: %v", err)
				}
			}
			var resp hhttp.Headers
			end, err := cc.ReadHeaders(&resp)
			if err != nil {
				t.Fatalf("ReadHeaders: %v", err)
			}
			if got := resp.Get(hhttp.Status); got != tc.wantStatus {
				t.Errorf(":status = %q, want %q", got, tc.wantStatus)
			}
			if end != tc.wantEnd {
				t.Errorf("endStream = %v, want %v", end, tc.wantEnd)
			}
			if got := readAll(t, cc); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
			for k, v := range tc.wantHeaders {
				if got := resp.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			var gotTrailers []hhttp.HeaderField
			if tr := cc.Trailers(); tr != nil {
				gotTrailers = tr.Fields
			}
			if diff := cmp.Diff(tc.wantTrailers, gotTrailers); diff != "" {
				t.Errorf("trailers (-want +got):\n%s", diff)
			}
			if got := cc.Reusable(); got != tc.wantReusable {
				t.Errorf("Reusable = %v, want %v", got, tc.wantReusable)
			}
			cc.Close(nil)
			if len(released) != i+1 || released[i] != tc.wantReusable {
				t.Errorf("OnRelease calls = %v, want last %v", released, tc.wantReusable)
			}
		})
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("backend saw %d connections, want 1 (keep-alive)", got)
	}
}

// TestClientResponses feeds canned responses to a ClientConn.
func TestClientResponses(t *testing.T) {
	tests := []struct {
		name         string
		method       string
		resp         string
		wantErr      error
		wantStatus   string
		wantEnd      bool
		wantBody     string
		wantBodyErr  error
		wantReusable bool
	}{
		{name: "content-length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
			wantStatus: "200", wantBody: "hi", wantReusable: true},
		{name: "reason phrase optional", resp: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
			wantStatus: "200", wantEnd: true, wantReusable: true},
		{name: "100 continue skipped", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
			wantStatus: "201", wantBody: "x", wantReusable: true},
		{name: "close-delimited", resp: "HTTP/1.1 200 OK\r\n\r\nuntil the end",
			wantStatus: "200", wantBody: "until the end", wantReusable: false},
		{name: "HTTP/1.0 not reusable", resp: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
			wantStatus: "200", wantBody: "x", wantReusable: false},
		{name: "HTTP/1.0 keep-alive reusable", resp: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
			wantStatus: "200", wantBody: "x", wantReusable: true},
		{name: "extra bytes after response", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
			wantStatus: "200", wantBody: "x", wantReusable: false},
		{name: "304 ignores content-length", resp: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
			wantStatus: "304", wantEnd: true, wantReusable: true},
		{name: "HEAD ignores content-length", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
			wantStatus: "200", wantEnd: true, wantReusable: true},
		{name: "truncated body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
			wantStatus: "200", wantBody: "abc", wantBodyErr: io.ErrUnexpectedEOF},
		{name: "bad chunk", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			wantStatus: "200", wantBodyErr: ErrProtocol},
		{name: "empty response", resp: "", wantErr: io.EOF},
		{name: "partial head", resp: "HTTP/1.1 200 OK\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "garbage status line", resp: "HTTP/1.1 OK\r\n\r\n", wantErr: ErrProtocol},
		{name: "status 600", resp: "HTTP/1.1 600 X\r\n\r\n", wantErr: ErrProtocol},
		{name: "not HTTP", resp: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: ErrProtocol},
		{name: "CL and TE", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: ErrProtocol},
		{name: "two CL", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", wantErr: ErrProtocol},
		{name: "TE gzip", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: ErrProtocol},
		{name: "204 with content-length", resp: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", wantErr: ErrProtocol},
		{name: "NUL in value", resp: "HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n", wantErr: ErrProtocol},
		{name: "space before colon", resp: "HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n", wantErr: ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemConn(tc.resp)
			cc := NewClientConn(c)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			if err := cc.WriteHeaders(reqHeaders(method, "/", "h"), true); err != nil {
				t.Fatal(err)
			}
			var h hhttp.Headers
			end, err := cc.ReadHeaders(&h)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadHeaders error = %v, want %v", err, tc.wantErr)
				}
				if cc.Reusable() {
					t.Error("Reusable after a failed exchange")
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadHeaders: %v", err)
			}
			if got := h.Get(hhttp.Status); got != tc.wantStatus || end != tc.wantEnd {
				t.Errorf("got %s end=%v, want %s end=%v", got, end, tc.wantStatus, tc.wantEnd)
			}
			var body []byte
			buf := make([]byte, 4)
			var bodyErr error
			for {
				n, err := cc.ReadBody(buf)
				body = append(body, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					bodyErr = err
					break
				}
			}
			if tc.wantBodyErr != nil {
				if !errors.Is(bodyErr, tc.wantBodyErr) {
					t.Errorf("body error = %v, want %v", bodyErr, tc.wantBodyErr)
				}
			} else if bodyErr != nil {
				t.Errorf("body error: %v", bodyErr)
			}
			if string(body) != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			if got := cc.Reusable(); got != tc.wantReusable {
				t.Errorf("Reusable = %v, want %v", got, tc.wantReusable)
			}
		})
	}
}

func TestClientRequestEncoding(t *testing.T) {
	tests := []struct {
		name    string
		req     *hhttp.Headers
		data    []string
		trailer *hhttp.Headers
		want    string
		wantErr bool
	}{
		{
			name: "GET: host from :authority, pseudo-headers and te skipped",
			req:  reqHeaders("GET", "/p?q", "h:1", "user-agent", "x", "host", "dup", "transfer-encoding", "chunked"),
			want: "GET /p?q HTTP/1.1\r\nhost: h:1\r\nuser-agent: x\r\n\r\n",
		},
		{
			name: "DELETE without body: no content-length",
			req:  reqHeaders("DELETE", "/", "h"),
			want: "DELETE / HTTP/1.1\r\nhost: h\r\n\r\n",
		},
		{
			name: "PATCH without body: content-length 0",
			req:  reqHeaders("PATCH", "/", "h"),
			want: "PATCH / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n",
		},
		{
			name:    "chunked with trailers",
			req:     reqHeaders("POST", "/", "h"),
			data:    []string{"abc"},
			trailer: &hhttp.Headers{Fields: []hhttp.HeaderField{{Name: "t", Value: "v"}}},
			want:    "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nt: v\r\n\r\n",
		},
		{
			name:    "CRLF in a value is refused",
			req:     reqHeaders("GET", "/", "h", "x", "a\r\nb: c"),
			wantErr: true,
		},
		{
			name:    "space in path is refused",
			req:     reqHeaders("GET", "/a b", "h"),
			wantErr: true,
		},
		{
			name:    "missing :path",
			req:     &hhttp.Headers{Fields: []hhttp.HeaderField{{Name: ":method", Value: "GET"}}},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemConn("")
			cc := NewClientConn(c)
			end := len(tc.data) == 0 && tc.trailer == nil
			err := cc.WriteHeaders(tc.req, end)
			if tc.wantErr {
				if err == nil {
					t.Fatal("WriteHeaders succeeded, want error")
				}
				if cc.Reusable() {
					t.Error("Reusable after a refused request")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range tc.data {
				if err := cc.WriteData([]byte(d), tc.trailer == nil && i == len(tc.data)-1); err != nil {
					t.Fatal(err)
				}
			}
			if tc.trailer != nil {
				if err := cc.WriteTrailers(tc.trailer); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.out.String(); got != tc.want {
				t.Errorf("request:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestClientCloseWithError(t *testing.T) {
	c := newMemConn("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	cc := NewClientConn(c)
	calls := 0
	cc.OnRelease = func(_ *ClientConn, reusable bool) {
		calls++
		if reusable {
			t.Error("released as reusable after an error")
		}
	}
	_ = cc.WriteHeaders(reqHeaders("GET", "/", "h"), true)
	var h hhttp.Headers
	if _, err := cc.ReadHeaders(&h); err != nil {
		t.Fatal(err)
	}
	cc.Close(errors.New("router gave up"))
	cc.Close(nil) // idempotent
	if calls != 1 {
		t.Errorf("OnRelease called %d times, want 1", calls)
	}
	if !c.closed {
		t.Error("connection not closed")
	}
}

// TestClientConcurrentHalves streams a request body from one goroutine
// while another reads the response (run with -race).
func TestClientConcurrentHalves(t *testing.T) {
	srv, _ := testBackend(t)
	cc := dialBackend(t, srv)
	for round := 0; round < 3; round++ {
		if err := cc.WriteHeaders(reqHeaders("POST", "/echo", "h"), false); err != nil {
			t.Fatal(err)
		}
		writeErr := make(chan error, 1)
		go func() {
			for i := 0; i < 10; i++ {
				if err := cc.WriteData([]byte(strings.Repeat("x", 1000)), i == 9); err != nil {
					writeErr <- err
					return
				}
			}
			writeErr <- nil
		}()
		var resp hhttp.Headers
		if _, err := cc.ReadHeaders(&resp); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, cc); len(got) != 10000 {
			t.Errorf("echoed %d bytes, want 10000", len(got))
		}
		if err := <-writeErr; err != nil {
			t.Fatal(err)
		}
		if !cc.Reusable() {
			t.Fatal("not reusable after a clean exchange")
		}
		cc.Close(nil)
	}
}
