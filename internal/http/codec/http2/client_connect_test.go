package http2

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func headersOf(fields ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i+1 < len(fields); i += 2 {
		h.Add(fields[i], fields[i+1])
	}
	return h
}

// TestClientExtendedConnect: a request with HTTP/1.1 upgrade headers goes
// to an allow_connect HTTP/2 upstream as an extended CONNECT (herald's own
// server turns it back into the upgrade, so the handler sees what the
// client was given), the upstream's 200 comes back as 101 with the upgrade
// headers, and the stream carries the tunnel both ways.
func TestClientExtendedConnect(t *testing.T) {
	seen := make(chan []string, 1)
	opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{AllowConnect: true}}
	ts := startServer(t, opts, tunnelHandler(seen, 200), nil)
	c := newTestClient(t, ClientOptions{})
	s, err := c.NewStream(context.Background(), ts.addr, dialer(ts.addr))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	defer s.Close(nil)
	req := headersOf(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/chat",
		"upgrade", "websocket", "connection", "upgrade", "content-length", "0", "sec-websocket-key", "k")
	if err := s.WriteHeaders(req, false); err != nil {
		t.Fatalf("WriteHeaders: %v", err)
	}
	got := <-seen
	// The upstream saw CONNECT + :protocol websocket (its codec made the
	// upgrade of it again); content-length: 0 was dropped on the way.
	for _, want := range [][2]string{{":method", "GET"}, {":path", "/chat"}, {"upgrade", "websocket"}, {"connection", "upgrade"}, {"sec-websocket-key", "k"}} {
		if !hasPair(got, want[0], want[1]) {
			t.Errorf("upstream request %q lacks %s: %s", got, want[0], want[1])
		}
	}
	if hasName(got, "content-length") {
		t.Errorf("upstream request %q carries content-length", got)
	}

	var res hhttp.Headers
	end, err := s.ReadHeaders(&res)
	if err != nil {
		t.Fatalf("ReadHeaders: %v", err)
	}
	if end {
		t.Fatal("tunnel response ended the stream")
	}
	if res.StatusCode() != 101 || res.Get("upgrade") != "websocket" || res.Get("connection") != "upgrade" || res.Get("x-tunnel") != "yes" {
		t.Errorf("response = %v, want 101 with upgrade: websocket, connection: upgrade", res.Fields)
	}
	if err := s.WriteData([]byte("ping"), false); err != nil {
		t.Fatalf("WriteData: %v", err)
	}
	buf := make([]byte, 16)
	n, err := s.ReadBody(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("ReadBody = %q, %v; want the echo", buf[:n], err)
	}
	// Half-close: END_STREAM our way, the upstream's follows.
	if err := s.WriteData(nil, true); err != nil {
		t.Fatalf("WriteData(end): %v", err)
	}
	if rest, err := io.ReadAll(bodyOf(s)); err != nil || len(rest) != 0 {
		t.Errorf("after half-close read %q, %v; want EOF", rest, err)
	}
}

// TestClientExtendedConnectNotAdvertised: without
// SETTINGS_ENABLE_CONNECT_PROTOCOL from the upstream the upgrade is not
// sent and fails before any response headers.
func TestClientExtendedConnectNotAdvertised(t *testing.T) {
	ts := startServer(t, hhttp.ServerOptions{}, tunnelHandler(make(chan []string, 1), 200), nil)
	c := newTestClient(t, ClientOptions{})
	s, err := c.NewStream(context.Background(), ts.addr, dialer(ts.addr))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	defer s.Close(nil)
	req := headersOf(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/chat",
		"upgrade", "websocket", "connection", "Upgrade")
	if err := s.WriteHeaders(req, false); err != nil {
		t.Fatalf("WriteHeaders: %v", err)
	}
	var res hhttp.Headers
	if _, err := s.ReadHeaders(&res); !errors.Is(err, ErrExtendedConnectNotSupported) {
		t.Errorf("ReadHeaders error = %v, want ErrExtendedConnectNotSupported", err)
	}
}

// TestClientPlainConnect: a CONNECT without upgrade headers goes out with
// :method and :authority only, as Envoy strips :scheme, :path and
// :protocol from it.
func TestClientPlainConnect(t *testing.T) {
	tests := []struct {
		name string
		req  *hhttp.Headers
	}{
		{name: "authority_only", req: headersOf(":method", "CONNECT", ":authority", "example.com:443")},
		{
			name: "with_path_scheme_protocol",
			req:  headersOf(":method", "CONNECT", ":scheme", "http", ":authority", "example.com:443", ":path", "/x", ":protocol", "bytestream"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan []string, 1)
			ts := startServer(t, hhttp.ServerOptions{}, tunnelHandler(seen, 200), nil)
			c := newTestClient(t, ClientOptions{})
			s, err := c.NewStream(context.Background(), ts.addr, dialer(ts.addr))
			if err != nil {
				t.Fatalf("NewStream: %v", err)
			}
			defer s.Close(nil)
			if err := s.WriteHeaders(tc.req, false); err != nil {
				t.Fatalf("WriteHeaders: %v", err)
			}
			got := <-seen
			want := []string{":authority", "example.com:443", ":method", "CONNECT"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("upstream request (-want +got):\n%s", diff)
			}
			var res hhttp.Headers
			if _, err := s.ReadHeaders(&res); err != nil || res.StatusCode() != 200 {
				t.Fatalf("ReadHeaders = %v, %v; want 200", res.Fields, err)
			}
			if err := s.WriteData([]byte("raw"), true); err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(bodyOf(s)); err != nil || string(b) != "raw" {
				t.Errorf("tunnel returned %q, %v", b, err)
			}
		})
	}
}

// TestClientHTTP2Options: a cluster's http2_protocol_options
// (ClientOptions.HTTP2, one Client per cluster's pools) shape its
// connections: max_concurrent_streams 1 makes two concurrent streams use
// two connections where the default client shares one.
func TestClientHTTP2Options(t *testing.T) {
	hold := make(chan struct{})
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		<-hold
		h := &hhttp.Headers{}
		h.SetStatus(200)
		_ = s.WriteHeaders(h, true)
	}), nil)
	defer close(hold)
	tests := []struct {
		name      string
		opts      *hhttp.HTTP2Options
		wantConns int
	}{
		{name: "client_defaults", opts: nil, wantConns: 1},
		{name: "max_concurrent_streams_1", opts: &hhttp.HTTP2Options{MaxConcurrentStreams: 1}, wantConns: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, ClientOptions{HTTP2: tc.opts})
			for range 2 {
				s, err := c.NewStream(context.Background(), ts.addr, dialer(ts.addr))
				if err != nil {
					t.Fatalf("NewStream: %v", err)
				}
				defer s.Close(nil)
				if err := s.WriteHeaders(requestHeaders("POST", "a", "/"), false); err != nil {
					t.Fatal(err)
				}
			}
			if n := c.connCount(ts.addr); n != tc.wantConns {
				t.Errorf("connections = %d, want %d", n, tc.wantConns)
			}
		})
	}
}

// TestClientKeepalive: connection_keepalive on a client PINGs an upstream
// that has gone silent and closes the connection when the PING is not
// answered within the timeout, failing the stream in flight.
func TestClientKeepalive(t *testing.T) {
	pinged := make(chan struct{}, 1)
	// An upstream that completes the handshake, then reads everything and
	// answers nothing, PINGs included.
	ls := startLoopback(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, len(Preface))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		fr := xhttp2.NewFramer(c, c)
		_ = fr.WriteSettings()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *xhttp2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *xhttp2.PingFrame:
				select {
				case pinged <- struct{}{}:
				default:
				}
			}
		}
	})
	ka := hhttp.KeepaliveOptions{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond}
	c := newTestClient(t, ClientOptions{HTTP2: &hhttp.HTTP2Options{Keepalive: ka}})
	s, err := c.NewStream(context.Background(), ls.addr, dialer(ls.addr))
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	defer s.Close(nil)
	if err := s.WriteHeaders(requestHeaders("GET", "a", "/"), true); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		var res hhttp.Headers
		_, err := s.ReadHeaders(&res)
		errc <- err
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("no keepalive PING reached the upstream")
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("ReadHeaders succeeded on a connection that stopped answering")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived the keepalive timeout")
	}
}

func hasPair(fields []string, name, value string) bool {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == name && fields[i+1] == value {
			return true
		}
	}
	return false
}

func hasName(fields []string, name string) bool {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i] == name {
			return true
		}
	}
	return false
}

type upstreamBody struct{ s hhttp.UpstreamStream }

func (b upstreamBody) Read(p []byte) (int, error) { return b.s.ReadBody(p) }

func bodyOf(s hhttp.UpstreamStream) io.Reader { return upstreamBody{s} }
