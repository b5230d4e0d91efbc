package bench

import (
	"fmt"
	"strings"
)

// Topology is what every proxy under test is configured with: the ports it
// listens on (all on 127.0.0.1) and the two HTTP/1.1 and two TCP echo
// backends it balances over, round robin.
type Topology struct {
	HTTPPort     int    // HTTP/1.1 listener
	H2Port       int    // HTTP/2 cleartext (prior knowledge) listener
	TCPPort      int    // TCP proxy listener
	HTTPBackends [2]int // HTTP/1.1 keep-alive backends
	TCPBackends  [2]int // TCP echo backends
	Dir          string // scratch directory for pid, error log and temp files
}

// HeraldConfig returns an Envoy v3 bootstrap for herald: an HTTP connection
// manager (codec AUTO, so HTTP/1.1 and h2c prior knowledge) on HTTPPort and
// H2Port routing everything to a STATIC ROUND_ROBIN cluster of the two HTTP
// backends (upstream connections are pooled and kept alive by default), and a
// tcp_proxy on TCPPort to the two echo backends. No access log, no admin.
func HeraldConfig(t Topology) string {
	var b strings.Builder
	b.WriteString("static_resources:\n  listeners:\n")
	for _, l := range []struct {
		name string
		port int
	}{{"http", t.HTTPPort}, {"h2c", t.H2Port}} {
		fmt.Fprintf(&b, `  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: %d } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: http_backends }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, l.name, l.port, l.name)
	}
	fmt.Fprintf(&b, `  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: %d } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: tcp_backends
  clusters:
`, t.TCPPort)
	for _, c := range []struct {
		name  string
		ports [2]int
	}{{"http_backends", t.HTTPBackends}, {"tcp_backends", t.TCPBackends}} {
		fmt.Fprintf(&b, `  - name: %s
    type: STATIC
    connect_timeout: 1s
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } }
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } }
`, c.name, c.name, c.ports[0], c.ports[1])
	}
	return b.String()
}

// NginxConfig returns an nginx.conf: one worker, no daemon, access_log off,
// an upstream block with keepalive (HTTP/1.1 to the backends, Connection
// cleared), an h2c listener (nginx 1.22 spells it `listen ... http2`; the
// `http2 on;` directive only exists from 1.25.1), and, when streamModule is
// not empty, a stream block (round robin over the echo backends) after
// load_module streamModule. Keep-alive request limits are lifted on both
// sides, as herald and HAProxy have none by default.
func NginxConfig(t Topology, streamModule string) string {
	var b strings.Builder
	if streamModule != "" {
		fmt.Fprintf(&b, "load_module %s;\n", streamModule)
	}
	fmt.Fprintf(&b, `worker_processes 1;
daemon off;
master_process on;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    upstream backends {
        server 127.0.0.1:%[2]d;
        server 127.0.0.1:%[3]d;
        keepalive 128;
        keepalive_requests 1000000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:%[4]d;
        listen 127.0.0.1:%[5]d http2;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, t.Dir, t.HTTPBackends[0], t.HTTPBackends[1], t.HTTPPort, t.H2Port)
	if streamModule != "" {
		fmt.Fprintf(&b, `stream {
    upstream echo {
        server 127.0.0.1:%d;
        server 127.0.0.1:%d;
    }
    server {
        listen 127.0.0.1:%d;
        proxy_pass echo;
    }
}
`, t.TCPBackends[0], t.TCPBackends[1], t.TCPPort)
	}
	return b.String()
}

// HAProxyConfig returns a haproxy.cfg: one thread, no log, HTTP mode with
// http-reuse always (upstream keep-alive shared between clients), roundrobin
// over the two backends, an h2c bind (proto h2), and a mode tcp frontend for
// the echo backends.
func HAProxyConfig(t Topology) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn 4096
    pidfile %[1]s/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always

frontend fe_http
    bind 127.0.0.1:%[2]d
    bind 127.0.0.1:%[3]d proto h2
    default_backend be_http

backend be_http
    balance roundrobin
    server s1 127.0.0.1:%[4]d
    server s2 127.0.0.1:%[5]d

frontend fe_tcp
    mode tcp
    bind 127.0.0.1:%[6]d
    default_backend be_tcp

backend be_tcp
    mode tcp
    balance roundrobin
    server t1 127.0.0.1:%[7]d
    server t2 127.0.0.1:%[8]d
`, t.Dir, t.HTTPPort, t.H2Port, t.HTTPBackends[0], t.HTTPBackends[1], t.TCPPort, t.TCPBackends[0], t.TCPBackends[1])
}

// WrkScript is the wrk Lua script the harness passes with -s: its done hook
// prints one line that ParseWrk reads, with latencies in microseconds
// (wrk --latency prints only fixed percentiles and rounds them for humans).
const WrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HARNESS requests=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`
