package http2

import (
	"context"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func newTestClient(t testing.TB, opts ClientOptions) *Client {
	t.Helper()
	c, err := NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func requestHeaders(method, authority, path string, fields ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, method)
	h.Add(hhttp.Scheme, "http")
	h.Add(hhttp.Authority, authority)
	h.Add(hhttp.Path, path)
	for i := 0; i+1 < len(fields); i += 2 {
		h.Add(fields[i], fields[i+1])
	}
	return h
}

// exchange runs one request with an optional body and returns the response.
func exchange(t *testing.T, c *Client, key string, dial hhttp.Dialer, req *hhttp.Headers, body string) (*hhttp.Headers, string, *hhttp.Headers) {
	t.Helper()
	s, err := c.NewStream(context.Background(), key, dial)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	defer s.Close(nil)
	if err := s.WriteHeaders(req, body == ""); err != nil {
		t.Fatalf("WriteHeaders: %v", err)
	}
	if body != "" {
		if err := s.WriteData([]byte(body), true); err != nil {
			t.Fatalf("WriteData: %v", err)
		}
	}
	res := &hhttp.Headers{}
	endStream, err := s.ReadHeaders(res)
	if err != nil {
		t.Fatalf("ReadHeaders: %v", err)
	}
	if endStream {
		return res, "", nil
	}
	b, err := io.ReadAll(readerFunc(s.ReadBody))
	if err != nil {
		t.Fatalf("ReadBody: %v", err)
	}
	return res, string(b), s.Trailers()
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestClientExchange(t *testing.T) {
	type seen struct {
		method, host, uri string
		header            nethttp.Header
		body              string
		trailer           nethttp.Header
	}
	got := make(chan seen, 1)
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{method: r.Method, host: r.Host, uri: r.RequestURI, header: r.Header.Clone(), body: string(b), trailer: r.Trailer}
		switch r.URL.Path {
		case "/grpc":
			w.Header().Set("Content-Type", "application/grpc")
			w.WriteHeader(200)
			_, _ = w.Write([]byte("reply"))
			w.Header().Set(nethttp.TrailerPrefix+"Grpc-Status", "0")
			w.Header().Set(nethttp.TrailerPrefix+"Grpc-Message", "fine")
		case "/empty":
			w.WriteHeader(204)
		default:
			w.Header().Set("X-Reply", "yes")
			_, _ = w.Write([]byte("body of " + r.URL.Path))
		}
	}))
	c := newTestClient(t, ClientOptions{})

	tests := []struct {
		name        string
		req         *hhttp.Headers
		body        string
		trailers    *hhttp.Headers
		wantSeen    seen
		wantStatus  int
		wantBody    string
		wantTrailer *hhttp.Headers
	}{
		{
			name:       "get",
			req:        requestHeaders("GET", "svc.local", "/p/a%2Fth?q=1", "x-custom", "c"),
			wantSeen:   seen{method: "GET", host: "svc.local", uri: "/p/a%2Fth?q=1", header: nethttp.Header{"X-Custom": {"c"}}},
			wantStatus: 200,
			wantBody:   "body of /p/a/th",
		},
		{
			name:       "post_body",
			req:        requestHeaders("POST", "svc.local", "/up", "content-length", "4"),
			body:       "data",
			wantSeen:   seen{method: "POST", host: "svc.local", uri: "/up", header: nethttp.Header{"Content-Length": {"4"}}, body: "data"},
			wantStatus: 200,
			wantBody:   "body of /up",
		},
		{
			name:       "headers_only_response",
			req:        requestHeaders("GET", "svc.local", "/empty"),
			wantSeen:   seen{method: "GET", host: "svc.local", uri: "/empty", header: nethttp.Header{}},
			wantStatus: 204,
		},
		{
			// gRPC style: trailers both ways. x/net's server only
			// delivers declared request trailers, so the request
			// declares it as a gRPC client through Envoy would not
			// need to.
			name:     "grpc_trailers",
			req:      requestHeaders("POST", "svc.local", "/grpc", "content-type", "application/grpc", "trailer", "x-req-trailer"),
			body:     "msg",
			trailers: &hhttp.Headers{Fields: []hhttp.HeaderField{{Name: "x-req-trailer", Value: "t1"}}},
			wantSeen: seen{
				method: "POST", host: "svc.local", uri: "/grpc",
				header:  nethttp.Header{"Content-Type": {"application/grpc"}},
				body:    "msg",
				trailer: nethttp.Header{"X-Req-Trailer": {"t1"}},
			},
			wantStatus:  200,
			wantBody:    "reply",
			wantTrailer: &hhttp.Headers{Fields: []hhttp.HeaderField{{Name: "grpc-message", Value: "fine"}, {Name: "grpc-status", Value: "0"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewStream(context.Background(), be.addr, dialer(be.addr))
			if err != nil {
				t.Fatalf("NewStream: %v", err)
			}
			defer s.Close(nil)
			noBody := tc.body == "" && tc.trailers == nil
			if err := s.WriteHeaders(tc.req, noBody); err != nil {
				t.Fatalf("WriteHeaders: %v", err)
			}
			if tc.body != "" {
				if err := s.WriteData([]byte(tc.body), tc.trailers == nil); err != nil {
					t.Fatalf("WriteData: %v", err)
				}
			}
			if tc.trailers != nil {
				if err := s.WriteTrailers(tc.trailers); err != nil {
					t.Fatalf("WriteTrailers: %v", err)
				}
			}
			res := &hhttp.Headers{}
			endStream, err := s.ReadHeaders(res)
			if err != nil {
				t.Fatalf("ReadHeaders: %v", err)
			}
			var body []byte
			if !endStream {
				body, err = io.ReadAll(readerFunc(s.ReadBody))
				if err != nil {
					t.Fatalf("ReadBody: %v", err)
				}
			}
			if res.StatusCode() != tc.wantStatus {
				t.Errorf(":status = %d, want %d", res.StatusCode(), tc.wantStatus)
			}
			if endStream != (tc.wantBody == "") {
				t.Errorf("endStream = %v with want body %q", endStream, tc.wantBody)
			}
			if string(body) != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			// Sort: x/net writes trailers from a map.
			var gotTrailer *hhttp.Headers
			if tr := s.Trailers(); tr != nil {
				gotTrailer = tr.Clone()
				sortFields(gotTrailer)
			}
			if diff := cmp.Diff(tc.wantTrailer, gotTrailer); diff != "" {
				t.Errorf("response trailers (-want +got):\n%s", diff)
			}
			sv := <-got
			// x/net must not add user-agent or accept-encoding.
			if diff := cmp.Diff(tc.wantSeen, sv, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("backend saw (-want +got):\n%s", diff)
			}
		})
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections, want 1 (reuse)", n)
	}
}

func sortFields(h *hhttp.Headers) {
	f := h.Fields
	for i := 1; i < len(f); i++ {
		for j := i; j > 0 && f[j].Name < f[j-1].Name; j-- {
			f[j], f[j-1] = f[j-1], f[j]
		}
	}
}

func TestClientFullDuplex(t *testing.T) {
	// The backend echoes each chunk as it arrives: the client must send
	// chunk n+1 only after reading echo n, which needs streaming both ways.
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
				w.(nethttp.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	c := newTestClient(t, ClientOptions{})
	s, err := c.NewStream(context.Background(), be.addr, dialer(be.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(nil)
	if err := s.WriteHeaders(requestHeaders("POST", "x", "/echo"), false); err != nil {
		t.Fatal(err)
	}
	res := &hhttp.Headers{}
	if _, err := s.ReadHeaders(res); err != nil {
		t.Fatalf("ReadHeaders: %v", err)
	}
	buf := make([]byte, 64)
	for _, chunk := range []string{"one", "two", "three"} {
		if err := s.WriteData([]byte(chunk), false); err != nil {
			t.Fatalf("WriteData(%s): %v", chunk, err)
		}
		n, err := s.ReadBody(buf)
		if err != nil || string(buf[:n]) != chunk {
			t.Fatalf("ReadBody = %q, %v; want %q", buf[:n], err, chunk)
		}
	}
	if err := s.WriteData(nil, true); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReadBody(buf); err != io.EOF {
		t.Fatalf("ReadBody after end = %d, %v; want EOF", n, err)
	}
}

func TestClientPooling(t *testing.T) {
	hold := make(chan struct{})
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/hold" {
			<-hold
		}
		_, _ = w.Write([]byte("ok"))
	}))
	dial := dialer(be.addr)

	t.Run("sequential_and_concurrent_share_one_connection", func(t *testing.T) {
		c := newTestClient(t, ClientOptions{})
		before := be.accepted.Load()
		for range 5 {
			exchange(t, c, be.addr, dial, requestHeaders("GET", "a", "/"), "")
		}
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				exchange(t, c, be.addr, dial, requestHeaders("GET", "a", "/"), "")
			}()
		}
		wg.Wait()
		if got := be.accepted.Load() - before; got != 1 {
			t.Errorf("connections = %d, want 1", got)
		}
	})

	t.Run("max_concurrent_streams_opens_another_connection", func(t *testing.T) {
		c := newTestClient(t, ClientOptions{HTTP2: &hhttp.HTTP2Options{MaxConcurrentStreams: 2}})
		before := be.accepted.Load()
		var streams []hhttp.UpstreamStream
		for range 3 {
			s, err := c.NewStream(context.Background(), be.addr, dial)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteHeaders(requestHeaders("GET", "a", "/hold"), true); err != nil {
				t.Fatal(err)
			}
			streams = append(streams, s)
		}
		eventually(t, "2 connections for 3 streams at 2 per connection", func() bool { return be.accepted.Load()-before == 2 })
		for _, s := range streams {
			s.Close(nil)
		}
		if got := c.connCount(be.addr); got != 2 {
			t.Errorf("pooled connections = %d, want 2", got)
		}
		c.CloseIdle()
		if got := c.connCount(be.addr); got != 0 {
			t.Errorf("pooled connections after CloseIdle = %d, want 0", got)
		}
	})

	t.Run("unused_stream_returns_its_slot", func(t *testing.T) {
		c := newTestClient(t, ClientOptions{HTTP2: &hhttp.HTTP2Options{MaxConcurrentStreams: 1}})
		before := be.accepted.Load()
		for range 3 {
			s, err := c.NewStream(context.Background(), be.addr, dial)
			if err != nil {
				t.Fatal(err)
			}
			s.Close(errors.New("downstream went away before headers"))
		}
		exchange(t, c, be.addr, dial, requestHeaders("GET", "a", "/"), "")
		if got := be.accepted.Load() - before; got != 1 {
			t.Errorf("connections = %d, want 1", got)
		}
	})
	close(hold)
}

func TestClientResets(t *testing.T) {
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		switch r.URL.Path {
		case "/reset-before-headers":
			panic(nethttp.ErrAbortHandler)
		case "/reset-mid-body":
			w.WriteHeader(200)
			_, _ = w.Write([]byte("part"))
			w.(nethttp.Flusher).Flush()
			panic(nethttp.ErrAbortHandler)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	c := newTestClient(t, ClientOptions{})

	tests := []struct {
		name          string
		path          string
		wantHeaderErr bool
	}{
		{name: "before_headers", path: "/reset-before-headers", wantHeaderErr: true},
		{name: "mid_body", path: "/reset-mid-body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewStream(context.Background(), be.addr, dialer(be.addr))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteHeaders(requestHeaders("GET", "a", tc.path), true); err != nil {
				t.Fatal(err)
			}
			_, err = s.ReadHeaders(&hhttp.Headers{})
			if tc.wantHeaderErr != (err != nil) {
				t.Fatalf("ReadHeaders err = %v, want error %v", err, tc.wantHeaderErr)
			}
			if err == nil {
				_, err = io.ReadAll(readerFunc(s.ReadBody))
			}
			var se xhttp2.StreamError
			if !errors.As(err, &se) {
				t.Errorf("err = %v (%T), want a StreamError (RST_STREAM)", err, err)
			}
			s.Close(err)
		})
	}
	// A stream reset leaves the connection usable.
	_, body, _ := exchange(t, c, be.addr, dialer(be.addr), requestHeaders("GET", "a", "/"), "")
	if body != "ok" {
		t.Errorf("body after resets = %q, want ok", body)
	}
	if n := be.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections, want 1", n)
	}
}

func TestClientGoAway(t *testing.T) {
	// herald's own server as the upstream: draining it sends GOAWAY and the
	// client must move new streams to a new connection.
	// Only the first connection drains.
	drain := make(chan struct{})
	srv, err := NewServer(hhttp.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var first atomic.Bool
	ts := startLoopback(t, func(c net.Conn) {
		var d <-chan struct{}
		if first.CompareAndSwap(false, true) {
			d = drain
		}
		srv.ServeConn(c, streamFunc(func(s hhttp.ServerStream) {
			h := &hhttp.Headers{}
			h.SetStatus(200)
			_ = s.WriteHeaders(h, true)
		}), d)
	})
	c := newTestClient(t, ClientOptions{})
	dial := dialer(ts.addr)
	exchange(t, c, ts.addr, dial, requestHeaders("GET", "a", "/"), "")

	close(drain)
	hp := c.hostPool(ts.addr)
	hp.mu.Lock()
	cc := hp.conns[0].cc
	hp.mu.Unlock()
	eventually(t, "GOAWAY at the client", func() bool { return cc.State().Closing })

	s, err := c.NewStream(context.Background(), ts.addr, dial)
	if err != nil {
		t.Fatalf("NewStream after GOAWAY: %v", err)
	}
	s.Close(nil)
	// Accept runs on the server's goroutine: wait for it to count.
	eventually(t, "a second connection after GOAWAY", func() bool { return ts.accepted.Load() >= 2 })
	if n := ts.accepted.Load(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
	hp.mu.Lock()
	n, fresh := len(hp.conns), hp.conns[0].cc != cc
	hp.mu.Unlock()
	if n != 1 || !fresh {
		t.Errorf("pool holds %d connections (new one: %v), want only the new one", n, fresh)
	}
}

func TestClientConnectError(t *testing.T) {
	c := newTestClient(t, ClientOptions{})
	boom := errors.New("connect refused by test")
	_, err := c.NewStream(context.Background(), "dead", func(context.Context) (net.Conn, error) { return nil, boom })
	var ce *ConnectError
	if !errors.As(err, &ce) || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want *ConnectError wrapping the dial error", err)
	}

	c.Close()
	_, err = c.NewStream(context.Background(), "dead", dialer("127.0.0.1:1"))
	if !errors.Is(err, ErrClientClosed) {
		t.Fatalf("NewStream after Close: err = %v, want ErrClientClosed", err)
	}
}

func TestClientSettings(t *testing.T) {
	// The SETTINGS and connection WINDOW_UPDATE herald's client sends carry
	// Envoy's window defaults.
	type frames struct {
		settings map[string]uint32
		connWin  uint32
		err      error
	}
	got := make(chan frames, 1)
	ls := startLoopback(t, func(c net.Conn) {
		defer c.Close()
		var f frames
		defer func() { got <- f }()
		buf := make([]byte, len(Preface))
		if _, f.err = io.ReadFull(c, buf); f.err != nil {
			return
		}
		fr := xhttp2.NewFramer(c, c)
		for f.settings == nil || f.connWin == 0 {
			fm, err := fr.ReadFrame()
			if err != nil {
				f.err = err
				return
			}
			switch fm := fm.(type) {
			case *xhttp2.SettingsFrame:
				f.settings = map[string]uint32{}
				_ = fm.ForeachSetting(func(s xhttp2.Setting) error {
					f.settings[s.ID.String()] = s.Val
					return nil
				})
			case *xhttp2.WindowUpdateFrame:
				f.connWin = fm.Increment + 65535
			}
		}
	})
	c := newTestClient(t, ClientOptions{})
	s, err := c.NewStream(context.Background(), ls.addr, dialer(ls.addr))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	s.Close(nil)
	f := <-got
	if f.err != nil {
		t.Fatalf("reading client frames: %v", f.err)
	}
	if w := f.settings["INITIAL_WINDOW_SIZE"]; w != DefaultInitialStreamWindowSize {
		t.Errorf("INITIAL_WINDOW_SIZE = %d, want %d", w, DefaultInitialStreamWindowSize)
	}
	if f.connWin != DefaultInitialConnectionWindowSize {
		t.Errorf("connection window = %d, want %d", f.connWin, DefaultInitialConnectionWindowSize)
	}
}

// TestClientReadDeadline: SetReadDeadline resets a stream whose response
// (headers or body) does not arrive in time, with os.ErrDeadlineExceeded,
// and a deadline lifted in time changes nothing. The router's route and
// per-try timeouts use it for HTTP/2 upstreams.
func TestClientReadDeadline(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		switch r.URL.Path {
		case "/stall-headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		case "/stall-body":
			w.WriteHeader(200)
			_, _ = w.Write([]byte("part"))
			w.(nethttp.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	c := newTestClient(t, ClientOptions{})
	tests := []struct {
		name          string
		path          string
		lift          bool // remove the deadline before it fires
		wantHeaderErr bool
		wantBodyErr   bool
	}{
		{name: "headers_late", path: "/stall-headers", wantHeaderErr: true},
		{name: "body_late", path: "/stall-body", wantBodyErr: true},
		{name: "lifted", path: "/", lift: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewStream(context.Background(), be.addr, dialer(be.addr))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(nil)
			rd, ok := s.(interface{ SetReadDeadline(time.Time) error })
			if !ok {
				t.Fatalf("%T has no SetReadDeadline", s)
			}
			if err := s.WriteHeaders(requestHeaders("GET", "a", tc.path), true); err != nil {
				t.Fatal(err)
			}
			if tc.lift {
				rd.SetReadDeadline(time.Now().Add(time.Hour))
				rd.SetReadDeadline(time.Time{})
			} else {
				rd.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			}
			_, err = s.ReadHeaders(&hhttp.Headers{})
			if tc.wantHeaderErr {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("ReadHeaders err = %v, want os.ErrDeadlineExceeded", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadHeaders: %v", err)
			}
			body, err := io.ReadAll(readerFunc(s.ReadBody))
			if tc.wantBodyErr {
				if !errors.Is(err, os.ErrDeadlineExceeded) || string(body) != "part" {
					t.Fatalf("body %q, err %v; want \"part\" then os.ErrDeadlineExceeded", body, err)
				}
				return
			}
			if err != nil || string(body) != "ok" {
				t.Fatalf("body %q, err %v; want ok", body, err)
			}
		})
	}
}
