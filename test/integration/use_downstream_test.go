package integration

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestUpstreamUseDownstreamProtocol: a cluster with
// use_downstream_protocol_config speaks the downstream request's protocol
// upstream — HTTP/2 (h2c) for an HTTP/2 client, HTTP/1.1 for an HTTP/1.1
// one — as Envoy's ClusterInfoImpl::upstreamHttpProtocol
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/upstreams/http/v3/http_protocol_options.proto#extensions-upstreams-http-v3-httpprotocoloptions-usedownstreamhttpconfig).
func TestUpstreamUseDownstreamProtocol(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &nethttp.Server{Handler: h2c.NewHandler(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, r.Proto)
	}), &http2.Server{})}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })

	ap := netip.MustParseAddrPort(ln.Addr().String())
	cluster := fmt.Sprintf(`  - name: b
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        use_downstream_protocol_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: b
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } }
`, ap.Port())
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: catchAllVhost("b")})}, cluster))
	url := "http://" + h.ListenerAddr("web") + "/"

	for _, tc := range []struct {
		name   string
		client *nethttp.Client
		want   string
	}{
		{name: "HTTP/1.1 downstream", client: newClient(), want: "HTTP/1.1"},
		{name: "HTTP/2 downstream", client: &nethttp.Client{Transport: h2cTransport()}, want: "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				resp, err := tc.client.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != tc.want {
					t.Fatalf("response %d %q, want 200 %q (the backend's r.Proto)", resp.StatusCode, body, tc.want)
				}
			}
		})
	}
	waitStats(t, h, map[string]int64{
		"cluster.b.upstream_cx_http1_total": 1,
		"cluster.b.upstream_cx_http2_total": 1,
	})
}

// TestUpstreamUseDownstreamProtocolTLS: over TLS the HTTP/2 connections
// of a use_downstream_protocol_config cluster offer ALPN h2 (the HTTP/2
// pool's fallback; no alpn_protocols configured) and the HTTP/1.1 ones
// http/1.1, so a backend offering both speaks each client's protocol.
func TestUpstreamUseDownstreamProtocolTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend, conns := protoBackend(t, f.server, true)
	cluster := autoConfigCluster(f, "b", backend, "")
	const auto = "        auto_config: {  }\n"
	if !strings.Contains(cluster, auto) {
		t.Fatalf("cluster block has no %q", auto)
	}
	cluster = strings.Replace(cluster, auto, "        use_downstream_protocol_config: { http2_protocol_options: {} }\n", 1)
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: catchAllVhost("b")})}, cluster))
	url := "http://" + h.ListenerAddr("web") + "/"
	for _, tc := range []struct {
		name   string
		client *nethttp.Client
		want   string
	}{
		{name: "HTTP/1.1 downstream", client: newClient(), want: "proto=HTTP/1.1 body="},
		{name: "HTTP/2 downstream", client: &nethttp.Client{Transport: h2cTransport()}, want: "proto=HTTP/2.0 body="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				resp, err := tc.client.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != tc.want {
					t.Fatalf("response %d %q, want 200 %q", resp.StatusCode, body, tc.want)
				}
			}
		})
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("backend accepted %d TLS connections, want 2 (one per protocol, reused)", n)
	}
}
