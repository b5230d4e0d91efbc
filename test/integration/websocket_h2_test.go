package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/herald-proxy/herald/internal/testutil"
)

// WebSocket and CONNECT over HTTP/2 hops
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades,
// "Websocket over HTTP/2 hops" and "CONNECT support"): with allow_connect
// in the connection manager's http2_protocol_options herald advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL and takes an extended CONNECT (RFC 8441,
// :protocol websocket) as the HTTP/1.1 upgrade it stands for; toward an
// HTTP/2 cluster it sends an HTTP/1.1 upgrade as an extended CONNECT.
//
// The HTTP/2 WebSocket client is x/net's Transport (it sends a ":protocol"
// entry of Request.Header as the pseudo-header, once the server's SETTINGS
// allowed it) with gobwas/ws framing the messages over the stream's
// request and response bodies.

// wsH2Key is a Sec-WebSocket-Key for extended CONNECTs. RFC 8441 §5 leaves
// the key/accept exchange out, and Envoy's H2->H1 transform does not make
// one up (envoyproxy/envoy#8547), so an RFC 6455 backend behind it needs the
// HTTP/2 client to send one, as here.
const wsH2Key = "dGhlIHNhbXBsZSBub25jZQ=="

// h2UpgradeListener renders a listener with an HTTP connection manager;
// transportSocket is a filter chain's transport_socket block (indented 6
// spaces) or empty, hcmExtra HttpConnectionManager fields (indented 10).
func h2UpgradeListener(name, transportSocket, hcmExtra, vhosts string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
%s          route_config:
            name: local_route
            virtual_hosts:
%s
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
%s`, name, name, hcmExtra, vhosts, transportSocket)
}

// downstreamTLS is a transport_socket block terminating TLS with ALPN h2.
func downstreamTLS(f *tlsFiles) string {
	return fmt.Sprintf(`      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2"]
            tls_certificates:
            - certificate_chain: { filename: %q }
              private_key: { filename: %q }
`, f.serverCert, f.serverKey)
}

// h2cTransport is an x/net client speaking h2c with prior knowledge.
func h2cTransport() *http2.Transport {
	return &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
}

// h2Tunnel is one CONNECT stream: the request body is written through w
// (closing it ends the request with END_STREAM), the response body is read
// from res.Body.
type h2Tunnel struct {
	res *nethttp.Response
	w   *io.PipeWriter
}

// Read reads the response body.
func (tu *h2Tunnel) Read(p []byte) (int, error) { return tu.res.Body.Read(p) }

// Write writes the request body.
func (tu *h2Tunnel) Write(p []byte) (int, error) { return tu.w.Write(p) }

// openH2Tunnel sends a CONNECT (extended when protocol is set) with the
// extra header fields and returns once the response headers arrived.
func openH2Tunnel(t *testing.T, ctx context.Context, tr *http2.Transport, url, authority, protocol string, hdr map[string]string) (*h2Tunnel, error) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodConnect, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	if authority != "" {
		req.Host = authority
	}
	if protocol != "" {
		req.Header[":protocol"] = []string{protocol}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, err
	}
	tu := &h2Tunnel{res: res, w: pw}
	t.Cleanup(func() {
		pw.CloseWithError(errors.New("test over"))
		res.Body.Close()
	})
	return tu, nil
}

// wsMessage is the i-th message of an exchange: mostly short text, now and
// then a binary message of a size that varies up to 100 KiB (split across
// DATA frames, and across flow-control windows).
func wsMessage(i int) (ws.OpCode, []byte) {
	if i%97 == 96 {
		n := 1 + (i*7919)%(100<<10)
		b := bytes.Repeat([]byte{byte(i)}, n)
		return ws.OpBinary, b
	}
	return ws.OpText, []byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", i%300)))
}

// echoOverTunnel exchanges n WebSocket messages over an extended CONNECT
// stream and checks each echo, then closes the WebSocket and the stream.
func echoOverTunnel(t *testing.T, tu *h2Tunnel, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		op, msg := wsMessage(i)
		if err := wsutil.WriteClientMessage(tu, op, msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, gotOp, err := wsutil.ReadServerData(tu)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if gotOp != op || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: got %v %.40q (%d bytes), want %v %.40q (%d bytes)", i, gotOp, got, len(got), op, msg, len(msg))
		}
	}
	// The closing handshake: the backend answers our close frame with its
	// own and closes its connection, which ends the response stream.
	if err := wsutil.WriteClientMessage(tu, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "done")); err != nil {
		t.Fatalf("close frame: %v", err)
	}
	_, _, err := wsutil.ReadServerData(tu)
	var closed wsutil.ClosedError
	if !errors.As(err, &closed) || closed.Code != ws.StatusNormalClosure {
		t.Fatalf("after our close frame: %v, want the backend's close frame (1000)", err)
	}
	tu.w.Close()
	if rest, err := io.ReadAll(tu.res.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end of the response stream: %q, %v; want END_STREAM", rest, err)
	}
}

// TestWebSocketOverHTTP2Downstream: an HTTP/2 client (h2c and TLS) opens a
// WebSocket with an extended CONNECT; herald upgrades to the HTTP/1.1
// backend and relays 10,000 messages both ways.
func TestWebSocketOverHTTP2Downstream(t *testing.T) {
	t.Parallel()
	backend := upgradeBackend(t)
	files := newTLSFiles(t)
	hcmExtra := `          http2_protocol_options: { allow_connect: true }
          upgrade_configs:
          - upgrade_type: websocket
`
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/ws-off" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: websocket, enabled: false }]
              - match: { prefix: "/custom" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: X-Custom }]
              - match: { prefix: "/" }
                route: { cluster: web }`
	h := testutil.Start(t, bootstrap([]string{
		h2UpgradeListener("h2c", "", hcmExtra, vhosts),
		h2UpgradeListener("h2tls", downstreamTLS(files), hcmExtra, vhosts),
	}, staticCluster("web", backend)))
	tlsTr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: files.roots, ServerName: "example.com"}}

	tests := []struct {
		name   string
		tr     *http2.Transport
		url    string
		prefix string
	}{
		{name: "h2c", tr: h2cTransport(), url: "http://" + h.ListenerAddr("h2c"), prefix: "http.h2c."},
		{name: "TLS h2", tr: tlsTr, url: "https://" + h.ListenerAddr("h2tls"), prefix: "http.h2tls."},
	}
	// Both listeners at once; the group returns when both are done.
	t.Run("group", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				exchangeOverH2(t, h, tc.tr, tc.url, tc.prefix)
			})
		}
	})
	for _, tc := range tests {
		// The 10,000-message exchange, the custom upgrade and the one
		// the backend refused were allowed upgrades; the 403 was not.
		if got := h.Stat(tc.prefix + "downstream_cx_upgrades_total"); got != 3 {
			t.Errorf("%s: downstream_cx_upgrades_total = %d, want 3", tc.name, got)
		}
		if got := h.Stat(tc.prefix + "downstream_rq_http2_total"); got != 4 {
			t.Errorf("%s: downstream_rq_http2_total = %d, want 4", tc.name, got)
		}
		waitStat(t, h, tc.prefix+"downstream_cx_upgrades_active", 0)
	}
}

// exchangeOverH2 runs TestWebSocketOverHTTP2Downstream's cases on one
// listener.
func exchangeOverH2(t *testing.T, h *testutil.Herald, tr *http2.Transport, url, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("10,000 messages echo", func(t *testing.T) {
		tu, err := openH2Tunnel(t, ctx, tr, url+"/ws", "", "websocket",
			map[string]string{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": wsH2Key})
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		// The backend's 101 goes out as 200 without the upgrade
		// fields (Envoy's transformUpgradeResponseFromH1toH2).
		if tu.res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", tu.res.StatusCode)
		}
		for _, f := range []string{"Upgrade", "Connection"} {
			if v := tu.res.Header.Get(f); v != "" {
				t.Errorf("response carries %s: %q", f, v)
			}
		}
		if got := h.Stat(prefix + "downstream_cx_upgrades_active"); got != 1 {
			t.Errorf("downstream_cx_upgrades_active = %d during the exchange, want 1", got)
		}
		echoOverTunnel(t, tu, 10000)
		waitStat(t, h, prefix+"downstream_cx_upgrades_active", 0)
	})

	t.Run("custom upgrade type, each direction ending on its own", func(t *testing.T) {
		tu, err := openH2Tunnel(t, ctx, tr, url+"/custom", "", "x-custom", nil)
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		if tu.res.StatusCode != 200 || tu.res.Header.Get("X-Backend") != "custom" {
			t.Fatalf("status %d, headers %v; want 200 with the backend's x-backend", tu.res.StatusCode, tu.res.Header)
		}
		for _, w := range []string{"abc", "hello"} {
			io.WriteString(tu, w)
			got := make([]byte, len(w))
			if _, err := io.ReadFull(tu, got); err != nil {
				t.Fatalf("reading the echo of %q: %v", w, err)
			}
			if string(got) != strings.ToUpper(w) {
				t.Errorf("echo %q, want %q", got, strings.ToUpper(w))
			}
		}
		// END_STREAM reaches the HTTP/1.1 backend as a half-close; it
		// answers with what it still has and closes, which ends the
		// response stream.
		io.WriteString(tu, "last")
		tu.w.Close()
		rest, err := io.ReadAll(tu)
		if err != nil || string(rest) != "LAST" {
			t.Errorf("after END_STREAM got %q, %v; want LAST and the end", rest, err)
		}
	})

	t.Run("the backend's refusal passes through", func(t *testing.T) {
		// Without a Sec-WebSocket-Key (RFC 8441 clients send
		// none) the RFC 6455 backend answers 400, which herald
		// forwards as Envoy does.
		tu, err := openH2Tunnel(t, ctx, tr, url+"/ws", "", "websocket",
			map[string]string{"Sec-WebSocket-Version": "13"})
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		if tu.res.StatusCode != 400 {
			t.Fatalf("status %d, want the backend's 400", tu.res.StatusCode)
		}
		if _, err := io.ReadAll(tu.res.Body); err != nil {
			t.Errorf("reading the 400's body: %v", err)
		}
	})

	t.Run("WebSocket disabled on the route gets 403", func(t *testing.T) {
		before := h.Stat(prefix + "downstream_rq_ws_on_non_ws_route")
		tu, err := openH2Tunnel(t, ctx, tr, url+"/ws-off", "", "websocket",
			map[string]string{"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": wsH2Key})
		if err != nil {
			t.Fatalf("extended CONNECT: %v", err)
		}
		if tu.res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", tu.res.StatusCode)
		}
		waitStat(t, h, prefix+"downstream_rq_ws_on_non_ws_route", before+1)
	})
}

// TestWebSocketOverHTTP2Hop is Envoy's "Websocket over HTTP/2 hops": an
// HTTP/1.1 WebSocket client talks to herald A, whose cluster speaks
// HTTP/2 to herald B (allow_connect), which upgrades to the HTTP/1.1
// backend: A sends the upgrade as an extended CONNECT and turns B's 200
// back into a 101. A CONNECT forwarded by A crosses the same hop as a
// plain HTTP/2 CONNECT that B terminates.
func TestWebSocketOverHTTP2Hop(t *testing.T) {
	t.Parallel()
	backend := upgradeBackend(t)
	echo := testutil.TCPEcho(t)
	hcmB := `          http2_protocol_options: { allow_connect: true }
          upgrade_configs:
          - upgrade_type: websocket
          - upgrade_type: CONNECT
`
	vhostsB := `            - name: vh
              domains: ["*"]
              routes:
              - match: { connect_matcher: {} }
                route:
                  cluster: echo
                  upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }]
              - match: { prefix: "/ws-off" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: websocket, enabled: false }]
              - match: { prefix: "/" }
                route: { cluster: web }`
	b := testutil.Start(t, bootstrap([]string{
		h2UpgradeListener("b", "", hcmB, vhostsB),
		h2UpgradeListener("bnoconnect", "", "          upgrade_configs:\n          - upgrade_type: websocket\n", catchAllVhost("web")),
	}, staticCluster("web", backend), staticCluster("echo", echo)))
	h2Cluster := func(name, addr string) string {
		return staticCluster(name, addr) + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
	}
	hcmA := `          upgrade_configs:
          - upgrade_type: websocket
          - upgrade_type: CONNECT
`
	vhostsA := `            - name: vh
              domains: ["*"]
              routes:
              - match: { connect_matcher: {} }
                route: { cluster: b }
              - match: { prefix: "/noconnect" }
                route: { cluster: bnoconnect, prefix_rewrite: "/ws" }
              - match: { prefix: "/" }
                route: { cluster: b }`
	a := testutil.Start(t, bootstrap([]string{h2UpgradeListener("a", "", hcmA, vhostsA)},
		h2Cluster("b", b.ListenerAddr("b")), h2Cluster("bnoconnect", b.ListenerAddr("bnoconnect"))))
	addr := a.ListenerAddr("a")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dial := func(t *testing.T, path string) *websocket.Conn {
		t.Helper()
		c, res, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if res.StatusCode != 101 {
			t.Fatalf("handshake status %d, want 101", res.StatusCode)
		}
		c.SetReadLimit(1 << 20)
		return c
	}
	wsType := func(op ws.OpCode) websocket.MessageType {
		if op == ws.OpBinary {
			return websocket.MessageBinary
		}
		return websocket.MessageText
	}

	t.Run("10,000 messages echo", func(t *testing.T) {
		c := dial(t, "/ws")
		for i := 0; i < 10000; i++ {
			op, msg := wsMessage(i)
			if err := c.Write(ctx, wsType(op), msg); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			gotTyp, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if gotTyp != wsType(op) || !bytes.Equal(got, msg) {
				t.Fatalf("message %d: got %v %.40q, want %v %.40q", i, gotTyp, got, wsType(op), msg)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Errorf("close handshake: %v", err)
		}
	})

	t.Run("concurrent WebSockets, each written without waiting", func(t *testing.T) {
		// Several streams share A's HTTP/2 connection to B; the client
		// writes all its messages (8 MB a stream) without waiting for the
		// echoes, so both directions of every hop fill their buffers and
		// flow-control windows at once: a direction blocked on its window
		// must not stall the other.
		const streams, n = 4, 200
		// big is the i-th message of stream s: 16 to 64 KiB.
		big := func(s, i int) (ws.OpCode, []byte) {
			return ws.OpBinary, bytes.Repeat([]byte{byte(s*n + i)}, 16<<10+(i*4099)%(48<<10))
		}
		errs := make(chan error, streams)
		for s := 0; s < streams; s++ {
			c := dial(t, "/ws")
			go func() {
				werr := make(chan error, 1)
				go func() {
					for i := 0; i < n; i++ {
						op, msg := big(s, i)
						if err := c.Write(ctx, wsType(op), msg); err != nil {
							werr <- fmt.Errorf("write %d: %w", i, err)
							return
						}
					}
					werr <- nil
				}()
				for i := 0; i < n; i++ {
					op, msg := big(s, i)
					typ, got, err := c.Read(ctx)
					if err != nil {
						errs <- fmt.Errorf("stream %d read %d: %w", s, i, err)
						return
					}
					if typ != wsType(op) || !bytes.Equal(got, msg) {
						errs <- fmt.Errorf("stream %d message %d: got %.40q, want %.40q", s, i, got, msg)
						return
					}
				}
				if err := <-werr; err != nil {
					errs <- err
					return
				}
				errs <- c.Close(websocket.StatusNormalClosure, "done")
			}()
		}
		for s := 0; s < streams; s++ {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("B refusing the upgrade: its 403 reaches the client", func(t *testing.T) {
		_, res, err := websocket.Dial(ctx, "ws://"+addr+"/ws-off", nil)
		if err == nil || res == nil || res.StatusCode != 403 {
			t.Fatalf("dial: %v, response %v; want B's 403", err, res)
		}
	})

	t.Run("B without allow_connect: no tunnel, an error answer", func(t *testing.T) {
		// B does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL: A
		// cannot send the extended CONNECT (x/net refuses where Envoy
		// sends it and gets reset) and answers 503.
		_, res, err := websocket.Dial(ctx, "ws://"+addr+"/noconnect", nil)
		if err == nil || res == nil || res.StatusCode != 503 {
			t.Fatalf("dial: %v, response %v; want 503", err, res)
		}
	})

	t.Run("CONNECT forwarded by A, terminated by B", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n")
		br := bufio.NewReader(c)
		res, err := nethttp.ReadResponse(br, &nethttp.Request{Method: nethttp.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		for i := 0; i < 100; i++ {
			msg := fmt.Sprintf("message %d;%s", i, strings.Repeat("z", (i*257)%9000))
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("round trip %d: %v", i, err)
			}
			if string(got) != msg {
				t.Fatalf("round trip %d: got %.40q, want %.40q", i, got, msg)
			}
		}
		io.WriteString(c, "last")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "last" {
			t.Errorf("after the half-close got %q, %v; want \"last\" and the end", rest, err)
		}
	})

	t.Run("stats", func(t *testing.T) {
		// A: 1 + 4 WebSockets, the refused one (B's 403), the one B
		// could not take, and the CONNECT: all allowed by A.
		if got := a.Stat("http.a.downstream_cx_upgrades_total"); got != 8 {
			t.Errorf("herald a: downstream_cx_upgrades_total = %d, want 8", got)
		}
		// B: the 5 WebSockets and the CONNECT, over HTTP/2; the 403
		// was not allowed.
		if got := b.Stat("http.b.downstream_cx_upgrades_total"); got != 6 {
			t.Errorf("herald b: downstream_cx_upgrades_total = %d, want 6", got)
		}
		if got := b.Stat("http.b.downstream_rq_ws_on_non_ws_route"); got != 1 {
			t.Errorf("herald b: downstream_rq_ws_on_non_ws_route = %d, want 1", got)
		}
		if got := b.Stat("http.b.downstream_rq_http2_total"); got != 7 {
			t.Errorf("herald b: downstream_rq_http2_total = %d, want 7", got)
		}
		if got := b.Stat("http.bnoconnect.downstream_rq_total"); got != 0 {
			t.Errorf("herald b: a request reached the listener without allow_connect (%d)", got)
		}
		waitStat(t, a, "http.a.downstream_cx_upgrades_active", 0)
		waitStat(t, b, "http.b.downstream_cx_upgrades_active", 0)
	})
}

// TestConnectOverHTTP2Downstream: a plain CONNECT (:method and :authority)
// on an HTTP/2 stream, terminated by herald (connect_matcher route with
// connect_config) to a TCP backend: bytes both ways, and each direction's
// end (END_STREAM one way, a TCP half-close the other) crosses on its own.
func TestConnectOverHTTP2Downstream(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	// greeter says hello and half-closes at once, then reports what it
	// reads until the client's end.
	got := make(chan string, 1)
	greeter := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "hello")
			c.(*net.TCPConn).CloseWrite()
			b, _ := io.ReadAll(c)
			got <- string(b)
		}()
		return ln.Addr().String()
	}()
	hcmExtra := `          http2_protocol_options: { allow_connect: true }
          upgrade_configs:
          - upgrade_type: CONNECT
`
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match:
                  connect_matcher: {}
                  headers: [{ name: x-greeter, present_match: true }]
                route:
                  cluster: greeter
                  upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }]
              - match:
                  connect_matcher: {}
                  headers: [{ name: x-deny, present_match: true }]
                route:
                  cluster: echo
                  upgrade_configs: [{ upgrade_type: CONNECT, enabled: false }]
              - match: { connect_matcher: {} }
                route:
                  cluster: echo
                  upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }]`
	h := testutil.Start(t, bootstrap([]string{h2UpgradeListener("l", "", hcmExtra, vhosts)},
		staticCluster("echo", echo), staticCluster("greeter", greeter)))
	url := "http://" + h.ListenerAddr("l")
	tr := h2cTransport()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("echo, then the client's END_STREAM ends both directions", func(t *testing.T) {
		tu, err := openH2Tunnel(t, ctx, tr, url, "tunnel.example:443", "", nil)
		if err != nil {
			t.Fatalf("CONNECT: %v", err)
		}
		if tu.res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", tu.res.StatusCode)
		}
		for i := 0; i < 200; i++ {
			msg := fmt.Sprintf("message %d;%s", i, strings.Repeat("y", (i*131)%5000))
			if _, err := io.WriteString(tu, msg); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, len(msg))
			if _, err := io.ReadFull(tu, b); err != nil {
				t.Fatalf("round trip %d: %v", i, err)
			}
			if string(b) != msg {
				t.Fatalf("round trip %d: got %.40q, want %.40q", i, b, msg)
			}
		}
		io.WriteString(tu, "last")
		// END_STREAM: herald half-closes the TCP connection, the echo
		// server answers with the rest and its own half-close.
		tu.w.Close()
		rest, err := io.ReadAll(tu)
		if err != nil {
			t.Fatalf("reading to END_STREAM: %v", err)
		}
		if string(rest) != "last" {
			t.Errorf("after END_STREAM got %q, want \"last\" and the end", rest)
		}
	})

	t.Run("the upstream's half-close first, then the client's", func(t *testing.T) {
		tu, err := openH2Tunnel(t, ctx, tr, url, "tunnel.example:443", "", map[string]string{"X-Greeter": "1"})
		if err != nil {
			t.Fatalf("CONNECT: %v", err)
		}
		if tu.res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", tu.res.StatusCode)
		}
		// The upstream's FIN comes as END_STREAM while our direction
		// stays open.
		b, err := io.ReadAll(tu)
		if err != nil || string(b) != "hello" {
			t.Fatalf("response %q, %v; want hello and END_STREAM", b, err)
		}
		if _, err := io.WriteString(tu, "still here"); err != nil {
			t.Fatalf("writing after the response ended: %v", err)
		}
		tu.w.Close()
		select {
		case s := <-got:
			if s != "still here" {
				t.Errorf("upstream read %q, want \"still here\"", s)
			}
		case <-ctx.Done():
			t.Fatal("the upstream never saw the client's end")
		}
	})

	t.Run("CONNECT disabled on its route gets 403", func(t *testing.T) {
		tu, err := openH2Tunnel(t, ctx, tr, url, "tunnel.example:443", "", map[string]string{"X-Deny": "1"})
		if err != nil {
			t.Fatalf("CONNECT: %v", err)
		}
		if tu.res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", tu.res.StatusCode)
		}
	})

	t.Run("stats", func(t *testing.T) {
		if got := h.Stat("http.l.downstream_cx_upgrades_total"); got != 2 {
			t.Errorf("downstream_cx_upgrades_total = %d, want 2", got)
		}
		if got := h.Stat("http.l.downstream_rq_ws_on_non_ws_route"); got != 1 {
			t.Errorf("downstream_rq_ws_on_non_ws_route = %d, want 1", got)
		}
		waitStat(t, h, "http.l.downstream_cx_upgrades_active", 0)
	})
}

// TestExtendedConnectSetting: herald advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL only with allow_connect; without it a
// request carrying :protocol is malformed (RFC 8441 §3: a client must not
// send it unless the server advertised the setting), and herald, as
// Envoy's codec by default (no override_stream_error_on_invalid_http_message),
// ends the connection with GOAWAY(PROTOCOL_ERROR).
func TestExtendedConnectSetting(t *testing.T) {
	t.Parallel()
	backend := upgradeBackend(t)
	upgrades := `          upgrade_configs:
          - upgrade_type: websocket
`
	vhostsOn := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/ws-off" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: websocket, enabled: false }]
              - match: { prefix: "/" }
                route: { cluster: web }`
	h := testutil.Start(t, bootstrap([]string{
		h2UpgradeListener("on", "", "          http2_protocol_options: { allow_connect: true }\n"+upgrades, vhostsOn),
		h2UpgradeListener("off", "", upgrades, catchAllVhost("web")),
	}, staticCluster("web", backend)))

	// handshake opens an h2c connection and returns the server's first
	// SETTINGS.
	handshake := func(t *testing.T, addr string) (net.Conn, *http2.Framer, map[http2.SettingID]uint32) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			t.Fatalf("first frame %v, want the server's SETTINGS", f)
		}
		settings := map[http2.SettingID]uint32{}
		sf.ForeachSetting(func(s http2.Setting) error {
			settings[s.ID] = s.Val
			return nil
		})
		return c, fr, settings
	}

	t.Run("advertised with allow_connect", func(t *testing.T) {
		_, _, settings := handshake(t, h.ListenerAddr("on"))
		if v, ok := settings[http2.SettingEnableConnectProtocol]; !ok || v != 1 {
			t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d (sent %v), want 1", v, ok)
		}
	})

	t.Run("not advertised without allow_connect", func(t *testing.T) {
		_, _, settings := handshake(t, h.ListenerAddr("off"))
		if v, ok := settings[http2.SettingEnableConnectProtocol]; ok {
			t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d sent without allow_connect", v)
		}
	})

	t.Run("x/net's client refuses to send it without the setting", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := openH2Tunnel(t, ctx, h2cTransport(), "http://"+h.ListenerAddr("off")+"/ws", "", "websocket", nil)
		if err == nil || !strings.Contains(err.Error(), "extended connect not supported") {
			t.Fatalf("extended CONNECT without the setting: %v, want x/net's refusal", err)
		}
	})

	// extendedConnect sends an extended CONNECT for path on stream 1.
	extendedConnect := func(t *testing.T, fr *http2.Framer, path string) {
		t.Helper()
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, f := range [][2]string{
			{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "http"},
			{":path", path}, {":authority", "example.com"}, {"sec-websocket-version", "13"},
		} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("refused upgrade: 403, then the connection closes", func(t *testing.T) {
		// Envoy's connection manager refuses the upgrade with 403 and
		// marks the connection to close (saw_connection_close_), which on
		// HTTP/2 closes it once no stream is active
		// (ConnectionManagerImpl::checkForDeferredClose); herald sends
		// GOAWAY(NO_ERROR) first.
		c, fr, _ := handshake(t, h.ListenerAddr("on"))
		extendedConnect(t, fr, "/ws-off")
		var status string
		for status == "" {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("waiting for the response: %v", err)
			}
			if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == 1 {
				status = mh.PseudoValue("status")
			}
		}
		if status != "403" {
			t.Fatalf("status %s, want 403", status)
		}
		var goAway *http2.GoAwayFrame
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the connection stays open after the refused upgrade")
				}
				break
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				goAway = g
			}
		}
		if goAway == nil || goAway.ErrCode != http2.ErrCodeNo || goAway.LastStreamID != 1 {
			t.Errorf("GOAWAY before the close: %v, want NO_ERROR with last stream 1", goAway)
		}
		c.Close()
	})

	t.Run(":protocol without allow_connect: GOAWAY(PROTOCOL_ERROR)", func(t *testing.T) {
		_, fr, _ := handshake(t, h.ListenerAddr("off"))
		extendedConnect(t, fr, "/ws")
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection ended without GOAWAY: %v", err)
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				if f.ErrCode != http2.ErrCodeProtocol {
					t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", f.ErrCode)
				}
				return
			case *http2.MetaHeadersFrame:
				t.Fatalf("stream %d answered; want the connection refused", f.StreamID)
			}
		}
	})
}
