package http2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// rawClient speaks HTTP/2 frame by frame for protocol edge cases.
type rawClient struct {
	t   *testing.T
	c   net.Conn
	fr  *xhttp2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
}

// dialRaw connects, exchanges SETTINGS (the client's are settings) and
// returns once the server's SETTINGS arrived.
func dialRaw(t *testing.T, addr string, settings ...xhttp2.Setting) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, fr: xhttp2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.hb)
	if _, err := io.WriteString(c, Preface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	rc.waitFor("server SETTINGS", func(f xhttp2.Frame) bool {
		sf, ok := f.(*xhttp2.SettingsFrame)
		return ok && !sf.IsAck()
	})
	if err := rc.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// headers sends a header block; fields are name, value pairs in wire order.
func (rc *rawClient) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	rc.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := rc.fr.WriteHeaders(xhttp2.HeadersFrameParam{
		StreamID: id, BlockFragment: rc.hb.Bytes(), EndStream: end, EndHeaders: true,
	}); err != nil {
		rc.t.Fatal(err)
	}
}

var getReq = []string{":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/"}

func req(method string, extra ...string) []string {
	f := []string{":method", method, ":scheme", "http", ":authority", "example.com", ":path", "/"}
	return append(f, extra...)
}

// readFrame reads one frame with a deadline; nil on EOF.
func (rc *rawClient) readFrame() (xhttp2.Frame, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return rc.fr.ReadFrame()
}

// waitFor reads frames until match returns true.
func (rc *rawClient) waitFor(what string, match func(xhttp2.Frame) bool) xhttp2.Frame {
	rc.t.Helper()
	for {
		f, err := rc.readFrame()
		if err != nil {
			rc.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

// waitGoAway waits for a GOAWAY and returns it.
func (rc *rawClient) waitGoAway() *xhttp2.GoAwayFrame {
	rc.t.Helper()
	return rc.waitFor("GOAWAY", func(f xhttp2.Frame) bool {
		_, ok := f.(*xhttp2.GoAwayFrame)
		return ok
	}).(*xhttp2.GoAwayFrame)
}

// waitEOF reads until the server closes the connection.
func (rc *rawClient) waitEOF() {
	rc.t.Helper()
	for {
		if _, err := rc.readFrame(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatalf("connection still open")
			}
			return
		}
	}
}

func TestServerRawProtocolErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     hhttp.ServerOptions
		send     func(rc *rawClient)
		wantCode xhttp2.ErrCode
		wantRST  bool // RST_STREAM on stream 1 instead of GOAWAY
	}{
		{
			// Envoy terminates the connection on an invalid HEADERS
			// frame (override_stream_error_on_invalid_http_message
			// defaults to false).
			name:     "uppercase_header_name",
			send:     func(rc *rawClient) { rc.headers(1, true, req("GET", "X-Upper", "v")...) },
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name:     "connection_specific_header",
			send:     func(rc *rawClient) { rc.headers(1, true, req("GET", "connection", "close")...) },
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name:     "te_not_trailers",
			send:     func(rc *rawClient) { rc.headers(1, true, req("GET", "te", "gzip")...) },
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name:     "missing_path",
			send:     func(rc *rawClient) { rc.headers(1, true, ":method", "GET", ":scheme", "http") },
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name: "pseudo_after_regular",
			send: func(rc *rawClient) {
				rc.headers(1, true, ":method", "GET", "x-a", "1", ":scheme", "http", ":path", "/")
			},
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name: "content_length_mismatch",
			send: func(rc *rawClient) {
				rc.headers(1, false, req("POST", "content-length", "5")...)
				_ = rc.fr.WriteData(1, true, []byte("abc"))
			},
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			name:     "even_stream_id",
			send:     func(rc *rawClient) { rc.headers(2, true, getReq...) },
			wantCode: xhttp2.ErrCodeProtocol,
		},
		{
			// max_consecutive_inbound_frames_with_empty_payload = 1.
			name: "empty_data_flood",
			send: func(rc *rawClient) {
				rc.headers(1, false, req("POST")...)
				for range 3 {
					_ = rc.fr.WriteData(1, false, nil)
				}
			},
			wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{
			// Envoy: header list over max_headers_count resets the
			// stream (http2.too_many_headers).
			name:     "too_many_headers",
			opts:     hhttp.ServerOptions{MaxRequestHeadersCount: 6},
			send:     func(rc *rawClient) { rc.headers(1, true, req("GET", "a", "1", "b", "2", "c", "3")...) },
			wantCode: xhttp2.ErrCodeInternal,
			wantRST:  true,
		},
		{
			name: "over_max_concurrent_streams",
			opts: hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{MaxConcurrentStreams: 1}},
			send: func(rc *rawClient) {
				rc.headers(3, false, req("POST")...) // stays open: the handler waits for the body
				rc.headers(1+4, true, getReq...)
			},
			wantCode: xhttp2.ErrCodeRefusedStream,
			wantRST:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.opts, streamFunc(h2specHandler), nil)
			rc := dialRaw(t, ts.addr)
			tc.send(rc)
			if tc.wantRST {
				f := rc.waitFor("RST_STREAM", func(f xhttp2.Frame) bool {
					_, ok := f.(*xhttp2.RSTStreamFrame)
					return ok
				}).(*xhttp2.RSTStreamFrame)
				if f.ErrCode != tc.wantCode {
					t.Errorf("RST_STREAM code = %v, want %v", f.ErrCode, tc.wantCode)
				}
				return
			}
			ga := rc.waitGoAway()
			if ga.ErrCode != tc.wantCode {
				t.Errorf("GOAWAY code = %v, want %v", ga.ErrCode, tc.wantCode)
			}
			rc.waitEOF()
		})
	}
}

// recorder captures what the handler saw.
type recorder struct {
	headers  chan []hhttp.HeaderField
	trailers chan []hhttp.HeaderField
	body     chan string
}

func TestServerRawRequestShape(t *testing.T) {
	rec := recorder{
		headers:  make(chan []hhttp.HeaderField, 1),
		trailers: make(chan []hhttp.HeaderField, 1),
		body:     make(chan string, 1),
	}
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		rec.headers <- append([]hhttp.HeaderField(nil), s.RequestHeaders().Fields...)
		b, _ := io.ReadAll(bodyReader{s})
		rec.body <- string(b)
		if tr := s.RequestTrailers(); tr != nil {
			rec.trailers <- append([]hhttp.HeaderField(nil), tr.Fields...)
		} else {
			rec.trailers <- nil
		}
		h := &hhttp.Headers{}
		h.SetStatus(200)
		// Response headers keep the order given.
		h.Add("x-z", "1")
		h.Add("x-a", "2")
		h.Add("connection", "keep-alive") // dropped: connection-specific
		_ = s.WriteHeaders(h, true)
	}), nil)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, false, ":method", "POST", ":scheme", "https", ":path", "/p", "host", "h.example",
		"x-b", "1", "cookie", "a=1", "x-a", "2", "cookie", "b=2")
	_ = rc.fr.WriteData(1, false, []byte("body"))
	rc.headers(1, true, "x-undeclared-trailer", "t1")

	wantHeaders := []hhttp.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "https"},
		{Name: ":path", Value: "/p"},
		{Name: ":authority", Value: "h.example"}, // from host, which is removed
		{Name: "x-b", Value: "1"},
		{Name: "x-a", Value: "2"},
		{Name: "cookie", Value: "a=1; b=2"},
	}
	if diff := cmp.Diff(wantHeaders, <-rec.headers); diff != "" {
		t.Errorf("request headers (-want +got):\n%s", diff)
	}
	if got := <-rec.body; got != "body" {
		t.Errorf("body = %q, want %q", got, "body")
	}
	wantTrailers := []hhttp.HeaderField{{Name: "x-undeclared-trailer", Value: "t1"}}
	if diff := cmp.Diff(wantTrailers, <-rec.trailers); diff != "" {
		t.Errorf("request trailers (-want +got):\n%s", diff)
	}
	mh := rc.waitFor("response HEADERS", func(f xhttp2.Frame) bool {
		_, ok := f.(*xhttp2.MetaHeadersFrame)
		return ok
	}).(*xhttp2.MetaHeadersFrame)
	var got []string
	for _, f := range mh.Fields {
		got = append(got, f.Name+"="+f.Value)
	}
	if diff := cmp.Diff([]string{":status=200", "x-z=1", "x-a=2"}, got); diff != "" {
		t.Errorf("response headers (-want +got):\n%s", diff)
	}
	if !mh.StreamEnded() {
		t.Errorf("response HEADERS without END_STREAM")
	}
}

// bodyReader adapts ServerStream.ReadBody to io.Reader.
type bodyReader struct{ s hhttp.ServerStream }

func (r bodyReader) Read(p []byte) (int, error) { return r.s.ReadBody(p) }

func TestServerRawStreamLifecycle(t *testing.T) {
	t.Run("end_stream_before_handler_returns", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
			h := &hhttp.Headers{}
			h.SetStatus(200)
			_ = s.WriteHeaders(h, false)
			_ = s.WriteData([]byte("x"), true)
			<-release // END_STREAM must already be on the wire
		}), nil)
		rc := dialRaw(t, ts.addr)
		rc.headers(1, true, getReq...)
		rc.waitFor("DATA with END_STREAM", func(f xhttp2.Frame) bool {
			df, ok := f.(*xhttp2.DataFrame)
			return ok && df.StreamEnded()
		})
	})

	t.Run("peer_reset_cancels_stream", func(t *testing.T) {
		got := make(chan error, 2)
		ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
			ctx := s.Context()
			buf := make([]byte, 10)
			_, err := s.ReadBody(buf)
			got <- err
			<-ctx.Done()
			got <- ctx.Err()
		}), nil)
		rc := dialRaw(t, ts.addr)
		rc.headers(1, false, req("POST")...)
		_ = rc.fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
		var se xhttp2.StreamError
		if err := <-got; !errors.As(err, &se) || se.Code != xhttp2.ErrCodeCancel {
			t.Errorf("ReadBody err = %v, want stream error CANCEL", err)
		}
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Errorf("ctx.Err() = %v, want context.Canceled", err)
		}
	})

	t.Run("flow_control_blocks_until_window_update", func(t *testing.T) {
		wrote := make(chan error, 1)
		ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
			h := &hhttp.Headers{}
			h.SetStatus(200)
			_ = s.WriteHeaders(h, false)
			wrote <- s.WriteData([]byte("0123456789"), true)
		}), nil)
		rc := dialRaw(t, ts.addr, xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 4})
		rc.headers(1, true, getReq...)
		df := rc.waitFor("first DATA", func(f xhttp2.Frame) bool {
			_, ok := f.(*xhttp2.DataFrame)
			return ok
		}).(*xhttp2.DataFrame)
		if got := string(df.Data()); got != "0123" {
			t.Fatalf("first DATA = %q, want the 4-byte window %q", got, "0123")
		}
		select {
		case err := <-wrote:
			t.Fatalf("WriteData returned (%v) with the window exhausted", err)
		default:
		}
		_ = rc.fr.WriteWindowUpdate(1, 100)
		var rest []byte
		rc.waitFor("last DATA", func(f xhttp2.Frame) bool {
			df, ok := f.(*xhttp2.DataFrame)
			if ok {
				rest = append(rest, df.Data()...)
			}
			return ok && df.StreamEnded()
		})
		if string(rest) != "456789" {
			t.Errorf("rest = %q, want %q", rest, "456789")
		}
		if err := <-wrote; err != nil {
			t.Errorf("WriteData: %v", err)
		}
	})

	t.Run("receive_window_replenished", func(t *testing.T) {
		ts := startServer(t, hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{InitialStreamWindowSize: 65535}},
			streamFunc(h2specHandler), nil)
		rc := dialRaw(t, ts.addr)
		rc.headers(1, false, req("POST")...)
		chunk := make([]byte, 16384)
		for range 3 {
			_ = rc.fr.WriteData(1, false, chunk)
		}
		wu := rc.waitFor("stream WINDOW_UPDATE", func(f xhttp2.Frame) bool {
			w, ok := f.(*xhttp2.WindowUpdateFrame)
			return ok && w.StreamID == 1
		}).(*xhttp2.WindowUpdateFrame)
		if wu.Increment < 32768 {
			t.Errorf("WINDOW_UPDATE increment = %d, want >= half the window", wu.Increment)
		}
	})
}

func TestServerRawGoAway(t *testing.T) {
	t.Run("drain_two_step", func(t *testing.T) {
		drain := make(chan struct{})
		release := make(chan struct{})
		srv, err := NewServer(hhttp.ServerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srv.drainTimeout = 20 * time.Millisecond
		ts := startLoopback(t, func(c net.Conn) {
			srv.ServeConn(c, streamFunc(func(s hhttp.ServerStream) {
				<-release
				h := &hhttp.Headers{}
				h.SetStatus(204)
				_ = s.WriteHeaders(h, true)
			}), drain)
		})
		rc := dialRaw(t, ts.addr)
		rc.headers(1, true, getReq...)
		close(drain)
		if ga := rc.waitGoAway(); ga.LastStreamID != 1<<31-1 || ga.ErrCode != xhttp2.ErrCodeNo {
			t.Errorf("first GOAWAY = (%d, %v), want (2^31-1, NO_ERROR)", ga.LastStreamID, ga.ErrCode)
		}
		if ga := rc.waitGoAway(); ga.LastStreamID != 1 || ga.ErrCode != xhttp2.ErrCodeNo {
			t.Errorf("final GOAWAY = (%d, %v), want (1, NO_ERROR)", ga.LastStreamID, ga.ErrCode)
		}
		rc.headers(3, true, getReq...) // after the final GOAWAY: refused
		rc.waitFor("REFUSED_STREAM", func(f xhttp2.Frame) bool {
			r, ok := f.(*xhttp2.RSTStreamFrame)
			return ok && r.StreamID == 3 && r.ErrCode == xhttp2.ErrCodeRefusedStream
		})
		close(release)
		rc.waitFor("response on stream 1", func(f xhttp2.Frame) bool {
			h, ok := f.(*xhttp2.MetaHeadersFrame)
			return ok && h.StreamID == 1
		})
		rc.waitEOF()
	})

	t.Run("idle_timeout", func(t *testing.T) {
		ts := startServer(t, hhttp.ServerOptions{IdleTimeout: 20 * time.Millisecond}, streamFunc(h2specHandler), nil)
		rc := dialRaw(t, ts.addr)
		if ga := rc.waitGoAway(); ga.ErrCode != xhttp2.ErrCodeNo {
			t.Errorf("GOAWAY code = %v, want NO_ERROR", ga.ErrCode)
		}
		rc.waitEOF()
	})

	// Envoy does nothing with a client's GOAWAY (ConnectionManagerImpl::
	// onGoAway): the connection stays usable — a PING sent after it is
	// answered (h2spec http2/7/1) — until the client closes it.
	t.Run("client_goaway_keeps_the_connection", func(t *testing.T) {
		ts := startServer(t, hhttp.ServerOptions{}, streamFunc(h2specHandler), nil)
		rc := dialRaw(t, ts.addr)
		rc.headers(1, true, getReq...)
		rc.waitFor("response", func(f xhttp2.Frame) bool {
			d, ok := f.(*xhttp2.DataFrame)
			return ok && d.StreamEnded()
		})
		_ = rc.fr.WriteGoAway(0, xhttp2.ErrCode(0x1ff), nil)
		_ = rc.fr.WritePing(false, [8]byte{'h', '2', 's', 'p', 'e', 'c'})
		rc.waitFor("PING ack", func(f xhttp2.Frame) bool {
			p, ok := f.(*xhttp2.PingFrame)
			return ok && p.IsAck()
		})
	})
}

func TestServerRawHandlerIncomplete(t *testing.T) {
	// A handler that returns mid-response resets the stream, so a
	// truncated body never looks complete.
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		h := &hhttp.Headers{}
		h.SetStatus(200)
		_ = s.WriteHeaders(h, false)
		_ = s.WriteData([]byte(strings.Repeat("p", 10)), false)
	}), nil)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, getReq...)
	f := rc.waitFor("RST_STREAM", func(f xhttp2.Frame) bool {
		_, ok := f.(*xhttp2.RSTStreamFrame)
		return ok
	}).(*xhttp2.RSTStreamFrame)
	if f.ErrCode != xhttp2.ErrCodeInternal {
		t.Errorf("RST_STREAM code = %v, want INTERNAL_ERROR", f.ErrCode)
	}
}
