package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go/http3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// protoBackend is an HTTPS server answering "proto=<r.Proto> body=<request
// body>", offering ALPN h2 only when h2 is set; conns counts the TCP
// connections it accepted.
func protoBackend(t *testing.T, cert tls.Certificate, h2 bool) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "proto=%s body=%s", r.Proto, b)
	}))
	srv.EnableHTTP2 = h2
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ConnState = func(_ net.Conn, s nethttp.ConnState) {
		if s == nethttp.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), conns
}

// autoConfigCluster is a TLS cluster with auto_config (autoFields inside
// its braces) trusting the test CA.
func autoConfigCluster(f *tlsFiles, name, backend, autoFields string) string {
	return staticCluster(name, backend) + fmt.Sprintf(`    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        auto_config: { %s }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: example.com
        common_tls_context:
          validation_context:
            trusted_ca: { filename: %q }
`, autoFields, f.ca)
}

// TestUpstreamAutoConfig: an auto_config cluster offers ALPN h2,http/1.1
// and speaks what each backend chose (Envoy's mixed connection pool);
// later requests reuse the connection of the negotiated protocol.
func TestUpstreamAutoConfig(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	tests := []struct {
		name       string
		h2         bool
		autoFields string
		wantProto  string
	}{
		{name: "backend offers h2", h2: true, wantProto: "HTTP/2.0"},
		{name: "backend speaks only http/1.1", h2: false, wantProto: "HTTP/1.1"},
		// Each protocol's options are accepted inside auto_config.
		{name: "with both protocols' options", h2: true, wantProto: "HTTP/2.0",
			autoFields: "http_protocol_options: {}, http2_protocol_options: { max_concurrent_streams: 100 }"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend, conns := protoBackend(t, f.server, tc.h2)
			h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: catchAllVhost("c")})},
				autoConfigCluster(f, "c", backend, tc.autoFields)))
			url := "http://" + h.ListenerAddr("in") + "/"
			c := newClient()
			post := func(body string) error {
				resp, err := c.Post(url, "text/plain", strings.NewReader(body))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if want := "proto=" + tc.wantProto + " body=" + body; resp.StatusCode != 200 || string(b) != want {
					return fmt.Errorf("got %d %q, want 200 %q", resp.StatusCode, b, want)
				}
				return nil
			}
			// The first request learns the protocol.
			if err := post("first"); err != nil {
				t.Fatal(err)
			}
			code, _, body := get(t, c, url, "")
			if want := "proto=" + tc.wantProto + " body="; code != 200 || body != want {
				t.Fatalf("GET: got %d %q, want 200 %q", code, body, want)
			}
			// Later ones go to the pool of that protocol: HTTP/2 streams
			// share the one connection, HTTP/1.1 requests in sequence
			// reuse it.
			if tc.h2 {
				var wg sync.WaitGroup
				errs := make(chan error, 16)
				for i := range 16 {
					wg.Go(func() {
						if err := post(fmt.Sprintf("req-%d", i)); err != nil {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			} else {
				for i := range 8 {
					if err := post(fmt.Sprintf("req-%d", i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("backend accepted %d connections, want 1", n)
			}
			if n := h.Stat("cluster.c.upstream_cx_total"); n != 1 {
				t.Errorf("cluster.c.upstream_cx_total = %d, want 1", n)
			}
		})
	}
}

// TestUpstreamAutoConfigNeedsTLS: auto_config on a plaintext cluster is a
// config error, as Envoy's "ALPN configured for cluster ... which has a
// non-ALPN transport socket".
func TestUpstreamAutoConfigNeedsTLS(t *testing.T) {
	t.Parallel()
	cfg := bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: catchAllVhost("c")})},
		staticCluster("c", "127.0.0.1:1")+`    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        auto_config: {}
`)
	code, out := runHerald(t, "--mode", "validate", "--config-yaml", cfg)
	if code == 0 || !strings.Contains(out, "ALPN configured for cluster c which has a non-ALPN transport socket") {
		t.Fatalf("validate: exit %d, output %q; want a failure naming the non-ALPN transport socket", code, out)
	}
}

// h3Backend is a quic-go HTTP/3 server on loopback UDP with the test CA's
// server certificate. It answers "proto=<r.Proto> body=<body>
// trailers=<request trailers>" with the response trailer x-checksum.
func h3Backend(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "x-checksum")
			fmt.Fprintf(w, "proto=%s body=%s trailers=%s", r.Proto, b, r.Trailer.Get("x-request-sum"))
			w.(nethttp.Flusher).Flush()
			w.Header().Set("x-checksum", fmt.Sprintf("len-%d", len(b)))
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(pc)
	}()
	t.Cleanup(func() {
		srv.Close()
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// h3Cluster is an HTTP/3 cluster (explicit http3_protocol_options, the
// QUIC transport socket) trusting the test CA.
func h3Cluster(f *tlsFiles, name, backend string) string {
	return staticCluster(name, backend) + fmt.Sprintf(`    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http3_protocol_options:
            quic_protocol_options: { initial_stream_window_size: 1048576, idle_network_timeout: 60s }
    transport_socket:
      name: envoy.transport_sockets.quic
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport
        upstream_tls_context:
          sni: example.com
          common_tls_context:
            validation_context:
              trusted_ca: { filename: %q }
              match_typed_subject_alt_names:
              - san_type: DNS
                matcher: { exact: example.com }
`, f.ca)
}

// TestUpstreamHTTP3: an HTTP/1.1 request reaches an HTTP/3 backend through
// an HTTP/3 cluster with its body and trailers, and the response comes
// back with its trailers; requests share the QUIC connection.
func TestUpstreamHTTP3(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := h3Backend(t, f.server)
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{
		name: "in", vhosts: catchAllVhost("h3"),
		hcmExtra: "          http_protocol_options: { enable_trailers: true }\n",
	})}, h3Cluster(f, "h3", backend)))
	url := "http://" + h.ListenerAddr("in") + "/"
	c := newClient()
	tests := []struct {
		name        string
		body        string
		trailer     string // request trailer x-request-sum; needs a chunked body
		want        string
		wantTrailer string
	}{
		{name: "GET", want: "proto=HTTP/3.0 body= trailers=", wantTrailer: "len-0"},
		{name: "POST with a body", body: "hello over quic", want: "proto=HTTP/3.0 body=hello over quic trailers=", wantTrailer: "len-15"},
		{name: "chunked body with trailers", body: "streamed", trailer: "s-8", want: "proto=HTTP/3.0 body=streamed trailers=s-8", wantTrailer: "len-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			var body io.Reader
			if tc.body != "" {
				method, body = "POST", strings.NewReader(tc.body)
			}
			req, err := nethttp.NewRequest(method, url, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.trailer != "" {
				// Unknown length: Go sends the body chunked, then the
				// trailer.
				req.Body = io.NopCloser(strings.NewReader(tc.body))
				req.ContentLength = -1
				req.Trailer = nethttp.Header{"X-Request-Sum": {tc.trailer}}
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || string(b) != tc.want {
				t.Fatalf("got %d %q, want 200 %q\nherald log:\n%s", resp.StatusCode, b, tc.want, h.Output())
			}
			if got := resp.Trailer.Get("x-checksum"); got != tc.wantTrailer {
				t.Errorf("response trailer x-checksum = %q, want %q", got, tc.wantTrailer)
			}
		})
	}
	if n := h.Stat("cluster.h3.upstream_cx_total"); n != 1 {
		t.Errorf("cluster.h3.upstream_cx_total = %d, want 1 (one QUIC connection for every request)", n)
	}
	if n := h.Stat("cluster.h3.upstream_rq_total"); n != int64(len(tests)) {
		t.Errorf("cluster.h3.upstream_rq_total = %d, want %d", n, len(tests))
	}
}

// TestUpstreamHTTP3Unreachable: an HTTP/3 host that does not answer is a
// connect failure (503 after connect_timeout), counted as one.
func TestUpstreamHTTP3Unreachable(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	// A bound UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: catchAllVhost("h3")})},
		h3Cluster(f, "h3", pc.LocalAddr().String())))
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("in")+"/", "")
	if code != 503 || !strings.Contains(body, "upstream connect error") {
		t.Fatalf("got %d %q, want 503 upstream connect error", code, body)
	}
	waitStat(t, h, "cluster.h3.upstream_cx_connect_fail", 1)
	waitStat(t, h, "cluster.h3.upstream_cx_connect_timeout", 1)
}
