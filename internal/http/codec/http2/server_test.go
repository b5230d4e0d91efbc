package http2

import (
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// echoHandler answers with the request's pseudo-headers and selected fields
// as response headers, the request body as response body and the request
// trailers as response trailers.
func echoHandler(s hhttp.ServerStream) {
	req := s.RequestHeaders()
	var body []byte
	buf := make([]byte, 1024)
	for {
		n, err := s.ReadBody(buf)
		body = append(body, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	res := &hhttp.Headers{}
	res.SetStatus(200)
	for _, f := range req.Fields {
		if strings.HasPrefix(f.Name, ":") || strings.HasPrefix(f.Name, "x-") {
			res.Add("echo-"+strings.TrimPrefix(f.Name, ":"), f.Value)
		}
	}
	res.Add("echo-end-stream", fmt.Sprint(s.RequestEndStream()))
	res.Add("echo-protocol", s.Protocol())
	t := s.RequestTrailers()
	if len(body) == 0 && t == nil {
		_ = s.WriteHeaders(res, true)
		return
	}
	if err := s.WriteHeaders(res, false); err != nil {
		return
	}
	if t == nil {
		_ = s.WriteData(body, true)
		return
	}
	if err := s.WriteData(body, false); err != nil {
		return
	}
	_ = s.WriteTrailers(t)
}

func TestServerExchange(t *testing.T) {
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(echoHandler), nil)
	client := &nethttp.Client{Transport: h2cTransport(t)}
	base := "http://" + ts.addr

	tests := []struct {
		name        string
		newRequest  func() *nethttp.Request
		wantStatus  int
		wantHeader  map[string]string
		wantBody    string
		wantTrailer nethttp.Header
	}{
		{
			name: "get",
			newRequest: func() *nethttp.Request {
				r, _ := nethttp.NewRequest("GET", base+"/a/b?q=1&r=%2F", nil)
				r.Host = "example.com"
				r.Header.Set("X-Mixed-Case", "v1")
				return r
			},
			wantStatus: 200,
			wantHeader: map[string]string{
				"Echo-Method":       "GET",
				"Echo-Path":         "/a/b?q=1&r=%2F",
				"Echo-Authority":    "example.com",
				"Echo-Scheme":       "http",
				"Echo-X-Mixed-Case": "v1",
				"Echo-End-Stream":   "true",
				"Echo-Protocol":     "HTTP/2",
			},
		},
		{
			name: "post_with_body",
			newRequest: func() *nethttp.Request {
				r, _ := nethttp.NewRequest("POST", base+"/upload", strings.NewReader("hello body"))
				return r
			},
			wantStatus: 200,
			wantHeader: map[string]string{"Echo-Method": "POST", "Echo-End-Stream": "false"},
			wantBody:   "hello body",
		},
		{
			// Request trailers arrive when declared (x/net drops
			// undeclared ones) and are echoed as response trailers.
			name: "trailers_both_ways",
			newRequest: func() *nethttp.Request {
				pr, pw := io.Pipe()
				r, _ := nethttp.NewRequest("POST", base+"/grpc", pr)
				r.Trailer = nethttp.Header{"X-Checksum": nil}
				go func() {
					_, _ = pw.Write([]byte("payload"))
					r.Trailer.Set("X-Checksum", "abc")
					pw.Close()
				}()
				return r
			},
			wantStatus:  200,
			wantBody:    "payload",
			wantTrailer: nethttp.Header{"X-Checksum": {"abc"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := client.Do(tc.newRequest())
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			for k, want := range tc.wantHeader {
				if got := res.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if string(body) != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			// Envoy's codec adds none of these; x/net would.
			for _, k := range []string{"Content-Type", "Date", "Content-Length"} {
				if v, ok := res.Header[k]; ok {
					t.Errorf("unexpected header %s: %q", k, v)
				}
			}
			if tc.wantTrailer != nil {
				if diff := cmp.Diff(tc.wantTrailer, res.Trailer); diff != "" {
					t.Errorf("trailers (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestServerResponseShapes(t *testing.T) {
	tests := []struct {
		name        string
		handler     func(s hhttp.ServerStream)
		wantHeader  nethttp.Header
		wantBody    string
		wantTrailer nethttp.Header
	}{
		{
			name: "headers_only_keeps_given_headers",
			handler: func(s hhttp.ServerStream) {
				h := &hhttp.Headers{}
				h.SetStatus(204)
				h.Add("x-a", "1")
				h.Add("x-a", "2")
				_ = s.WriteHeaders(h, true)
			},
			wantHeader: nethttp.Header{"X-A": {"1", "2"}},
		},
		{
			name: "content_length_passthrough",
			handler: func(s hhttp.ServerStream) {
				h := &hhttp.Headers{}
				h.SetStatus(200)
				h.Add("content-type", "text/plain")
				h.Add("content-length", "5")
				h.Add("date", "Mon, 02 Jan 2006 15:04:05 GMT")
				_ = s.WriteHeaders(h, false)
				_ = s.WriteData([]byte("hel"), false)
				_ = s.WriteData([]byte("lo"), true)
			},
			wantHeader: nethttp.Header{
				"Content-Type":   {"text/plain"},
				"Content-Length": {"5"},
				"Date":           {"Mon, 02 Jan 2006 15:04:05 GMT"},
			},
			wantBody: "hello",
		},
		{
			name: "grpc_trailers",
			handler: func(s hhttp.ServerStream) {
				h := &hhttp.Headers{}
				h.SetStatus(200)
				h.Add("content-type", "application/grpc")
				_ = s.WriteHeaders(h, false)
				_ = s.WriteData([]byte("msg"), false)
				tr := &hhttp.Headers{}
				tr.Add("grpc-status", "0")
				tr.Add("grpc-message", "ok")
				_ = s.WriteTrailers(tr)
			},
			wantHeader:  nethttp.Header{"Content-Type": {"application/grpc"}},
			wantBody:    "msg",
			wantTrailer: nethttp.Header{"Grpc-Status": {"0"}, "Grpc-Message": {"ok"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, hhttp.ServerOptions{}, streamFunc(tc.handler), nil)
			client := &nethttp.Client{Transport: h2cTransport(t)}
			res, err := client.Get("http://" + ts.addr + "/")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if diff := cmp.Diff(tc.wantHeader, res.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if string(body) != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			if tc.wantTrailer != nil {
				if diff := cmp.Diff(tc.wantTrailer, res.Trailer); diff != "" {
					t.Errorf("trailers (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestServerConcurrentStreams(t *testing.T) {
	const n = 50
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	go func() {
		arrived.Wait()
		close(release)
	}()
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		arrived.Done()
		<-release // every stream is in flight at once on one connection
		h := &hhttp.Headers{}
		h.SetStatus(200)
		_ = s.WriteHeaders(h, false)
		_ = s.WriteData([]byte(s.RequestHeaders().Path()), true)
	}), nil)
	client := &nethttp.Client{Transport: h2cTransport(t)}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/s%d", i)
			res, err := client.Get("http://" + ts.addr + path)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil || string(b) != path {
				errs <- fmt.Errorf("%s: body %q, err %v", path, b, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := ts.accepted.Load(); got != 1 {
		t.Errorf("accepted connections = %d, want 1", got)
	}
}

func TestServerDrain(t *testing.T) {
	drain := make(chan struct{})
	inFlight := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		if s.RequestHeaders().Path() == "/slow" {
			close(inFlight)
			<-release
		}
		h := &hhttp.Headers{}
		h.SetStatus(200)
		_ = s.WriteHeaders(h, false)
		_ = s.WriteData([]byte("done"), true)
	}), drain)

	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	cc, err := h2cTransport(t).NewClientConn(nc)
	if err != nil {
		t.Fatalf("NewClientConn: %v", err)
	}
	defer cc.Close()

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		req, _ := nethttp.NewRequest("GET", "http://"+ts.addr+"/slow", nil)
		res, err := cc.RoundTrip(req)
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		slow <- result{body: string(b), err: err}
	}()
	<-inFlight

	close(drain)
	eventually(t, "GOAWAY at the client", func() bool { return cc.State().Closing })

	req, _ := nethttp.NewRequest("GET", "http://"+ts.addr+"/new", nil)
	if _, err := cc.RoundTrip(req); err == nil {
		t.Errorf("new stream after GOAWAY succeeded, want refusal")
	}

	close(release)
	r := <-slow
	if r.err != nil || r.body != "done" {
		t.Errorf("in-flight stream: body %q, err %v; want %q, nil", r.body, r.err, "done")
	}
	eventually(t, "connection closed after drain", func() bool { return cc.State().Closed })
}

func TestServerResets(t *testing.T) {
	tests := []struct {
		name    string
		opts    hhttp.ServerOptions
		headers int // extra request headers
		value   string
		handler func(s hhttp.ServerStream)
	}{
		{
			// Envoy resets (http2.too_many_headers) beyond max_headers_count.
			name:    "too_many_headers",
			opts:    hhttp.ServerOptions{MaxRequestHeadersCount: 10},
			headers: 11,
			value:   "v",
		},
		{
			// Within x/net's SETTINGS limit, over Envoy's byte limit.
			name:    "headers_too_large",
			opts:    hhttp.ServerOptions{MaxRequestHeadersBytes: 1024},
			headers: 1,
			value:   strings.Repeat("v", 1100),
		},
		{
			// Returning without ending the response must not look
			// like a complete response.
			name: "handler_returns_mid_body",
			handler: func(s hhttp.ServerStream) {
				h := &hhttp.Headers{}
				h.SetStatus(200)
				_ = s.WriteHeaders(h, false)
				_ = s.WriteData([]byte("partial"), false)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			called := make(chan struct{}, 1)
			handler := tc.handler
			if handler == nil {
				handler = func(s hhttp.ServerStream) {
					called <- struct{}{}
					echoHandler(s)
				}
			}
			ts := startServer(t, tc.opts, streamFunc(handler), nil)
			client := &nethttp.Client{Transport: h2cTransport(t)}
			req, _ := nethttp.NewRequest("GET", "http://"+ts.addr+"/", nil)
			for i := range tc.headers {
				req.Header.Set(fmt.Sprintf("x-h%d", i), tc.value)
			}
			res, err := client.Do(req)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			var se xhttp2.StreamError
			if !errors.As(err, &se) || se.Code != xhttp2.ErrCodeInternal {
				t.Fatalf("err = %v, want RST_STREAM INTERNAL_ERROR", err)
			}
			if len(called) != 0 {
				t.Errorf("handler ran for a rejected request")
			}
		})
	}
}

func TestPeekedConn(t *testing.T) {
	srv, err := NewServer(hhttp.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sniffed := make(chan bool, 1)
	ts := startLoopback(t, func(c net.Conn) {
		// What codec_type AUTO does: peek the preface, then hand over.
		buf := make([]byte, len(Preface))
		if _, err := io.ReadFull(c, buf); err != nil {
			c.Close()
			return
		}
		sniffed <- IsPreface(buf)
		srv.ServeConn(NewPeekedConn(c, buf), streamFunc(echoHandler), nil)
	})
	client := &nethttp.Client{Transport: h2cTransport(t)}
	res, err := client.Get("http://" + ts.addr + "/peek")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	res.Body.Close()
	if got := res.Header.Get("Echo-Path"); got != "/peek" {
		t.Errorf("Echo-Path = %q, want /peek", got)
	}
	if !<-sniffed {
		t.Errorf("IsPreface = false on a real client preface")
	}
}

func TestNewServerOptions(t *testing.T) {
	tests := []struct {
		name      string
		opts      hhttp.ServerOptions
		wantErr   string
		wantDrain time.Duration
	}{
		{name: "defaults", opts: hhttp.ServerOptions{}, wantDrain: 5 * time.Second},
		{name: "drain_timeout", opts: hhttp.ServerOptions{DrainTimeout: 250 * time.Millisecond}, wantDrain: 250 * time.Millisecond},
		{name: "https", opts: hhttp.ServerOptions{Scheme: "https"}},
		{name: "bad_scheme", opts: hhttp.ServerOptions{Scheme: "ftp"}, wantErr: `scheme "ftp"`},
		{
			name:    "window_too_small",
			opts:    hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{InitialStreamWindowSize: 1000}},
			wantErr: "initial_stream_window_size 1000",
		},
		{
			name:    "too_many_streams",
			opts:    hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{MaxConcurrentStreams: 1 << 31}},
			wantErr: "max_concurrent_streams 2147483648",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := NewServer(tc.opts)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("NewServer: %v", err)
			}
			if tc.wantDrain != 0 && srv.drainTimeout != tc.wantDrain {
				t.Errorf("drain timeout = %v, want %v (HCM drain_timeout, Envoy default 5 s)", srv.drainTimeout, tc.wantDrain)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("NewServer err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestServerSettings(t *testing.T) {
	// The SETTINGS herald's server advertises carry Envoy's defaults.
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(echoHandler), nil)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, Preface); err != nil {
		t.Fatal(err)
	}
	fr := xhttp2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*xhttp2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	got := map[string]uint32{}
	_ = sf.ForeachSetting(func(s xhttp2.Setting) error {
		got[s.ID.String()] = s.Val
		return nil
	})
	want := map[string]uint32{
		"MAX_CONCURRENT_STREAMS": DefaultMaxConcurrentStreams,
		"INITIAL_WINDOW_SIZE":    DefaultInitialStreamWindowSize,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("SETTINGS %s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// frameWriteRecorder records, for each Write on the server connection, the
// (type, stream) of the frames it carried.
type frameWriteRecorder struct {
	net.Conn
	mu     *sync.Mutex
	writes *[][]frameRef
}

type frameRef struct {
	typ    xhttp2.FrameType
	stream uint32
}

func (w frameWriteRecorder) Write(p []byte) (int, error) {
	var frames []frameRef
	for b := p; len(b) >= 9; {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		frames = append(frames, frameRef{xhttp2.FrameType(b[3]), uint32(b[5]&0x7f)<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])})
		if 9+n > len(b) {
			break
		}
		b = b[9+n:]
	}
	w.mu.Lock()
	*w.writes = append(*w.writes, frames)
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// TestServerDeferHeadersFlush: after DeferHeadersFlush the response HEADERS
// wait for the DATA and both leave in the same write; without it the
// HEADERS leave on their own before any DATA is written.
func TestServerDeferHeadersFlush(t *testing.T) {
	for _, deferFlush := range []bool{false, true} {
		t.Run(fmt.Sprintf("defer=%v", deferFlush), func(t *testing.T) {
			var mu sync.Mutex
			var writes [][]frameRef
			headersSeen := make(chan struct{})
			var stalled atomic.Bool
			srv, err := NewServer(hhttp.ServerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			h := streamFunc(func(s hhttp.ServerStream) {
				if deferFlush {
					s.(hhttp.HeadersDeferrer).DeferHeadersFlush()
				}
				_ = s.WriteHeaders(respHeadersH2(200), false)
				if !deferFlush {
					// The client has the headers before any data exists.
					select {
					case <-headersSeen:
					case <-time.After(10 * time.Second):
						stalled.Store(true)
					}
				}
				_ = s.WriteData([]byte("body"), true)
			})
			ls := startLoopback(t, func(c net.Conn) {
				srv.ServeConn(frameWriteRecorder{Conn: c, mu: &mu, writes: &writes}, h, nil)
			})
			c := &nethttp.Client{Transport: h2cTransport(t)}
			resp, err := c.Get("http://" + ls.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			close(headersSeen)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "body" {
				t.Fatalf("response %d %q, want 200 body", resp.StatusCode, body)
			}
			if !deferFlush {
				if stalled.Load() {
					t.Error("the client never saw the HEADERS before the DATA was written")
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, w := range writes {
				hasHeaders, hasData := false, false
				for _, f := range w {
					hasHeaders = hasHeaders || f.typ == xhttp2.FrameHeaders && f.stream == 1
					hasData = hasData || f.typ == xhttp2.FrameData && f.stream == 1
				}
				if hasHeaders && !hasData {
					t.Errorf("HEADERS written without their DATA: writes %v", writes)
				}
			}
		})
	}
}

func respHeadersH2(code int) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, strconv.Itoa(code))
	return h
}
