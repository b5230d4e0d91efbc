package bench

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// hcmBootstrap is one HTTP connection manager listener ("http") whose
// single route is routeAction (YAML under "- match: { prefix: / }"),
// plus the given clusters.
func hcmBootstrap(routeAction, clusters string) string {
	return `static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: bench
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                ` + routeAction + `
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
` + clusters
}

// staticCluster is a STATIC cluster with one endpoint at addr.
func staticCluster(name, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`  - name: %s
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }
`, name, name, host, port)
}

func proxyHTTPAddr(b *testing.B) string {
	backend := startHTTPBackend(b)
	h := startHerald(b, hcmBootstrap("route: { cluster: backend }", staticCluster("backend", backend)))
	return h.addr(b, "http")
}

// BenchmarkDirect is the baseline: the raw client against the raw backend,
// no herald in between.
func BenchmarkDirect(b *testing.B) {
	benchHTTP(b, startHTTPBackend(b), 13)
}

// BenchmarkDirectParallel is the baseline of BenchmarkProxyHTTP1Parallel.
func BenchmarkDirectParallel(b *testing.B) {
	benchHTTPParallel(b, startHTTPBackend(b), 13)
}

// BenchmarkProxyHTTP1 is client → HCM + router → STATIC cluster →
// backend, sequential on one keep-alive connection.
func BenchmarkProxyHTTP1(b *testing.B) {
	benchHTTP(b, proxyHTTPAddr(b), 13)
}

// BenchmarkProxyHTTP1Parallel is BenchmarkProxyHTTP1 with one connection
// per goroutine (b.RunParallel).
func BenchmarkProxyHTTP1Parallel(b *testing.B) {
	benchHTTPParallel(b, proxyHTTPAddr(b), 13)
}

// BenchmarkProxyDirectResponse is a route with direct_response: the
// connection manager and router answer without an upstream.
func BenchmarkProxyDirectResponse(b *testing.B) {
	h := startHerald(b, hcmBootstrap(`direct_response: { status: 200, body: { inline_string: "Hello, World!" } }`, "    []\n"))
	benchHTTP(b, h.addr(b, "http"), 13)
}

// tcpPayload is the 64-byte message of BenchmarkProxyTCP.
var tcpPayload = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// BenchmarkProxyTCP is a 64-byte echo round trip through tcp_proxy on one
// connection.
func BenchmarkProxyTCP(b *testing.B) {
	echo := startEchoBackend(b)
	h := startHerald(b, `static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: echo
  clusters:
`+staticCluster("echo", echo))
	benchEcho(b, h.addr(b, "tcp"))
}

// BenchmarkDirectTCP is the baseline of BenchmarkProxyTCP.
func BenchmarkDirectTCP(b *testing.B) {
	benchEcho(b, startEchoBackend(b))
}

func benchEcho(b *testing.B, addr string) {
	c := dial(b, addr)
	got := make([]byte, len(tcpPayload))
	roundTrip := func() error {
		if _, err := c.Write(tcpPayload); err != nil {
			return err
		}
		_, err := io.ReadFull(c, got)
		return err
	}
	for range 10 {
		if err := roundTrip(); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	if string(got) != string(tcpPayload) {
		b.Fatalf("echo = %q, want %q", got, tcpPayload)
	}
	b.SetBytes(int64(len(tcpPayload)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := roundTrip(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyHTTP1Routes1000 is BenchmarkProxyHTTP1 with 999 prefix
// routes (/r0000/ … /r0998/) before the one that matches ("/"): the
// route-match cost of a large route table on the full request path.
func BenchmarkProxyHTTP1Routes1000(b *testing.B) {
	backend := startHTTPBackend(b)
	var routes strings.Builder
	for i := range 999 {
		fmt.Fprintf(&routes, "              - match: { prefix: \"/r%04d/\" }\n                route: { cluster: backend }\n", i)
	}
	routes.WriteString("              - match: { prefix: \"/\" }\n                route: { cluster: backend }\n")
	y := strings.Replace(hcmBootstrap("route: { cluster: backend }", staticCluster("backend", backend)),
		"              - match: { prefix: \"/\" }\n                route: { cluster: backend }\n", routes.String(), 1)
	if !strings.Contains(y, "/r0998/") {
		b.Fatal("route list not substituted")
	}
	h := startHerald(b, y)
	benchHTTP(b, h.addr(b, "http"), 13)
}
