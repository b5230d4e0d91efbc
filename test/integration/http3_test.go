package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// http3RouteConfig is the route configuration both listeners of
// TestHTTP3Downstream share; vhostExtra are virtual host fields indented
// 14 spaces (the TCP listener's alt-svc).
func http3RouteConfig(vhostExtra string) string {
	return `          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
` + vhostExtra + `              routes:
              - match: { path: "/direct" }
                direct_response: { status: 200, body: { inline_string: "direct answer" } }
              - match: { prefix: "/proxy" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`
}

// quicListenerYAML renders a QUIC listener (UDP, quic_options, the QUIC
// transport socket, codec_type HTTP3).
func quicListenerYAML(f *tlsFiles, name string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { protocol: UDP, address: 127.0.0.1, port_value: 0 } }
    udp_listener_config:
      quic_options:
        idle_timeout: 30s
        quic_protocol_options: { max_concurrent_streams: 50 }
      downstream_socket_config: { prefer_gro: true }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            common_tls_context:
              tls_certificates:
              - certificate_chain: { filename: %q }
                private_key: { filename: %q }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          codec_type: HTTP3
%s`, name, f.serverCert, f.serverKey, name, http3RouteConfig(""))
}

// altSvc is what the TCP listener advertises, as in Envoy's HTTP/3 example
// (configs/envoyproxy_io_proxy_http3_downstream.yaml): a response header
// added by the TCP listener's virtual host.
const altSvc = `h3=":443"; ma=86400`

func tcpListenerYAML(name string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
%s`, name, name, http3RouteConfig(`              response_headers_to_add:
              - header: { key: alt-svc, value: '`+altSvc+`' }
`))
}

// exchange is one request and what came back.
type exchange struct {
	status int
	body   string
	header nethttp.Header
	proto  int
}

func doRequest(t *testing.T, rt nethttp.RoundTripper, method, url string, body []byte) exchange {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s body: %v", method, url, err)
	}
	return exchange{status: resp.StatusCode, body: string(b), header: resp.Header, proto: resp.ProtoMajor}
}

// TestHTTP3Downstream: quic-go's HTTP/3 client gets the same answers from
// the QUIC listener as an HTTP/1.1 client from the TCP listener, for the
// same routes (direct_response, proxied with bodies both ways, no route),
// through the same connection manager, filters and router.
func TestHTTP3Downstream(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("x-backend-method", r.Method)
		w.Header().Set("x-backend-got", fmt.Sprint(len(b)))
		w.Header().Set("x-backend-proto", r.Proto)
		if len(r.TransferEncoding) > 0 {
			w.Header().Set("x-backend-te", strings.Join(r.TransferEncoding, ","))
		}
		if r.URL.Query().Get("echo") != "" {
			w.Write(b)
			return
		}
		io.WriteString(w, "backend saw "+r.Method+" "+r.URL.Path)
	}))
	h := testutil.Start(t, bootstrap([]string{tcpListenerYAML("tcp"), quicListenerYAML(f, "h3")}, staticCluster("backend", backend)))
	tcpAddr := h.ListenerAddr("tcp")
	h3Addr := h.ListenerAddr("h3")

	h1 := &nethttp.Transport{DisableCompression: true}
	t.Cleanup(h1.CloseIdleConnections)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots, ServerName: "example.com"}, DisableCompression: true}
	t.Cleanup(func() { h3.Close() })

	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		wantStatus int
		wantBody   string
		wantHeader map[string]string
	}{
		{name: "direct_response", method: "GET", path: "/direct", wantStatus: 200, wantBody: "direct answer"},
		{name: "proxied GET", method: "GET", path: "/proxy/a", wantStatus: 200, wantBody: "backend saw GET /proxy/a",
			// A bodiless GET reaches the HTTP/1.1 upstream without body
			// framing from either codec.
			wantHeader: map[string]string{"x-backend-method": "GET", "x-backend-got": "0", "x-backend-proto": "HTTP/1.1", "x-backend-te": ""}},
		{name: "proxied POST with a body", method: "POST", path: "/proxy/b", body: []byte("hello body"), wantStatus: 200,
			wantBody: "backend saw POST /proxy/b", wantHeader: map[string]string{"x-backend-got": "10"}},
		// 256 KiB up and back down: flow control both ways.
		{name: "large body echoed", method: "PUT", path: "/proxy/echo?echo=1", body: big, wantStatus: 200,
			wantBody: string(big), wantHeader: map[string]string{"x-backend-got": fmt.Sprint(len(big))}},
		{name: "no route", method: "GET", path: "/nowhere", wantStatus: 404, wantBody: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			over1 := doRequest(t, h1, tc.method, "http://"+tcpAddr+tc.path, tc.body)
			over3 := doRequest(t, h3, tc.method, "https://"+h3Addr+tc.path, tc.body)
			if over3.proto != 3 {
				t.Fatalf("HTTP/3 client got HTTP/%d", over3.proto)
			}
			for _, got := range []struct {
				via string
				ex  exchange
			}{{"HTTP/1.1", over1}, {"HTTP/3", over3}} {
				if got.ex.status != tc.wantStatus || got.ex.body != tc.wantBody {
					t.Errorf("over %s: got %d %.60q, want %d %.60q", got.via, got.ex.status, got.ex.body, tc.wantStatus, tc.wantBody)
				}
				for k, v := range tc.wantHeader {
					if g := got.ex.header.Get(k); g != v {
						t.Errorf("over %s: %s = %q, want %q", got.via, k, g, v)
					}
				}
				if got.ex.header.Get("server") != "envoy" {
					t.Errorf("over %s: server = %q, want envoy (the connection manager's)", got.via, got.ex.header.Get("server"))
				}
			}
			// alt-svc comes from the TCP listener's route configuration
			// only, on responses to requests that matched a route.
			if g := over1.header.Get("alt-svc"); g != altSvc && tc.wantStatus != 404 {
				t.Errorf("TCP listener alt-svc = %q, want %q", g, altSvc)
			}
			if g := over3.header.Get("alt-svc"); g != "" {
				t.Errorf("QUIC listener alt-svc = %q, want none", g)
			}
		})
	}
	waitStat(t, h, "http.h3.downstream_rq_http3_total", int64(len(tests)))
	waitStat(t, h, "http.h3.downstream_rq_4xx", 1)
	waitStat(t, h, "http.h3.downstream_rq_2xx", int64(len(tests)-1))
	waitStat(t, h, "http.h3.downstream_cx_http3_total", 1)
	waitStat(t, h, "http.h3.downstream_cx_http3_active", 1)
	waitStat(t, h, "http.tcp.downstream_rq_http1_total", int64(len(tests)))
	waitStat(t, h, statPrefix(h3Addr)+"ssl.handshake", 1)

	// Listener drain: the QUIC connection gets GOAWAY and closes, and a new
	// request on a fresh connection is refused (the listener stops).
	t.Run("drain closes the QUIC connection", func(t *testing.T) {
		if code, body := h.Admin("POST", "/drain_listeners"); code != 200 {
			t.Fatalf("drain_listeners: %d %s", code, body)
		}
		waitStat(t, h, "http.h3.downstream_cx_http3_active", 0)
		waitStat(t, h, "http.h3.downstream_cx_destroy", 1)
	})
}

// TestHTTP3ConfigErrors: QUIC pieces on the wrong kind of listener are
// refused at load, naming the field.
func TestHTTP3ConfigErrors(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	tests := []struct {
		name     string
		listener string
		wantErr  string
	}{
		{name: "HTTP3 codec on a TCP listener",
			listener: strings.Replace(tcpListenerYAML("tcp"), "stat_prefix: tcp\n", "stat_prefix: tcp\n          codec_type: HTTP3\n", 1),
			wantErr:  "static_resources.listeners[0].filter_chains[0]: HTTP/3 codec configured on non-QUIC listener"},
		{name: "AUTO codec on a QUIC listener",
			listener: strings.Replace(quicListenerYAML(f, "h3"), "codec_type: HTTP3", "codec_type: AUTO", 1),
			wantErr:  "static_resources.listeners[0].filter_chains[0]: Non-HTTP/3 codec configured on QUIC listener"},
		{name: "unsupported quic_options field",
			listener: strings.Replace(quicListenerYAML(f, "h3"), "idle_timeout: 30s", "idle_timeout: 30s\n        send_disable_active_migration: true", 1),
			wantErr:  "static_resources.listeners[0].udp_listener_config.quic_options.send_disable_active_migration: send_disable_active_migration is not supported by herald"},
		{name: "UDP without quic_options",
			listener: strings.Replace(quicListenerYAML(f, "h3"), "      quic_options:\n        idle_timeout: 30s\n        quic_protocol_options: { max_concurrent_streams: 50 }\n", "", 1),
			wantErr:  "udp_listener_config.quic_options: UDP listeners without quic_options (udp_proxy) are not supported by herald yet"},
		{name: "unsupported downstream_socket_config field",
			listener: strings.Replace(quicListenerYAML(f, "h3"), "prefer_gro: true", "max_rx_datagram_size: 9000", 1),
			wantErr:  "udp_listener_config.downstream_socket_config.max_rx_datagram_size: max_rx_datagram_size is not supported by herald"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bootstrap([]string{tc.listener}, staticCluster("backend", "127.0.0.1:1"))
			code, out := runHerald(t, "--mode", "validate", "-c", writeFile(t, "envoy.yaml", cfg))
			if code == 0 || !strings.Contains(out, tc.wantErr) {
				t.Fatalf("exit %d, output:\n%s\nwant it to contain %q", code, out, tc.wantErr)
			}
		})
	}
}
