package bench

import (
	"encoding/json"
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
	TCPBackends  [2]int // TCP echo (or sink) backends
	Dir          string // scratch directory for pid, error log and temp files
	// Routes, when > 0, replaces the single catch-all route with that many
	// prefix routes RoutePrefix(0) … RoutePrefix(Routes-1), all to the HTTP
	// backends, in one virtual host (the routes-1000 scenario).
	Routes int
	// MaxConns is how many downstream connections each proxy must accept at
	// once (the idle scenario); 0 means 4096.
	MaxConns int
	// FDLimit is the open-file limit the proxies run with (nginx's
	// worker_rlimit_nofile); 0 means 16384.
	FDLimit int
}

func (t Topology) maxConns() int {
	if t.MaxConns > 0 {
		return t.MaxConns
	}
	return 4096
}

func (t Topology) fdLimit() int {
	if t.FDLimit > 0 {
		return t.FDLimit
	}
	return 16384
}

// heraldRoutes is the routes list of herald's virtual host, indented for
// HeraldConfig.
func (t Topology) heraldRoutes() string {
	if t.Routes <= 0 {
		return `              - match: { prefix: "/" }
                route: { cluster: http_backends }
`
	}
	var b strings.Builder
	for i := range t.Routes {
		fmt.Fprintf(&b, "              - match: { prefix: %q }\n                route: { cluster: http_backends }\n", RoutePrefix(i))
	}
	return b.String()
}

// HeraldConfig returns an Envoy v3 bootstrap for herald: an HTTP connection
// manager (codec AUTO, so HTTP/1.1 and h2c prior knowledge) on HTTPPort and
// H2Port routing everything to a STATIC ROUND_ROBIN cluster of the two HTTP
// backends (upstream connections are pooled and kept alive by default), and a
// tcp_proxy on TCPPort to the two echo backends. No access log, no admin.
// With t.Routes > 0 the virtual host has that many prefix routes, matched in
// order (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_routing).
// herald needs no connection limit: Envoy's HCM idle_timeout defaults to 1 h.
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
%s          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, l.name, l.port, l.name, t.heraldRoutes())
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
// sides, as herald and HAProxy have none by default, and keep-alive timeouts
// are 300 s. Responses larger than the proxy buffers are streamed, not
// spooled to temporary files (proxy_max_temp_file_size 0). With t.Routes > 0
// the server has that many prefix `location` blocks instead of `location /`.
func NginxConfig(t Topology, streamModule string) string {
	var b strings.Builder
	if streamModule != "" {
		fmt.Fprintf(&b, "load_module %s;\n", streamModule)
	}
	fmt.Fprintf(&b, `worker_processes 1;
worker_rlimit_nofile %[6]d;
daemon off;
master_process on;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections %[7]d; multi_accept on; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_max_temp_file_size 0;
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
`, t.Dir, t.HTTPBackends[0], t.HTTPBackends[1], t.HTTPPort, t.H2Port, t.fdLimit(), t.maxConns()+1024)
	if t.Routes <= 0 {
		b.WriteString("        location / { proxy_pass http://backends; }\n")
	}
	for i := range t.Routes {
		fmt.Fprintf(&b, "        location %s { proxy_pass http://backends; }\n", RoutePrefix(i))
	}
	b.WriteString("    }\n}\n")
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
// the echo backends; maxconn t.MaxConns (global and per frontend) and 300 s
// client and keep-alive timeouts. HAProxy reserves two descriptors per
// connection and refuses to start when the open-file limit is lower than
// that (strict-limits); an idle downstream connection needs one, so
// `no strict-limits` lets 10,000 idle connections fit a 20,000 limit. With t.Routes > 0 the HTTP frontend has
// that many `use_backend … if { path_beg … }` rules, evaluated in order.
func HAProxyConfig(t Topology) string {
	var rules strings.Builder
	for i := range t.Routes {
		fmt.Fprintf(&rules, "    use_backend be_http if { path_beg %s }\n", RoutePrefix(i))
	}
	return fmt.Sprintf(`global
    nbthread 1
    maxconn %[9]d
    no strict-limits
    pidfile %[1]s/haproxy.pid

defaults
    mode http
    maxconn %[9]d
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always

frontend fe_http
    bind 127.0.0.1:%[2]d
    bind 127.0.0.1:%[3]d proto h2
%[10]s    default_backend be_http

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
`, t.Dir, t.HTTPPort, t.H2Port, t.HTTPBackends[0], t.HTTPBackends[1], t.TCPPort, t.TCPBackends[0], t.TCPBackends[1],
		t.maxConns(), rules.String())
}

// CaddyConfig returns Caddy's JSON config: admin endpoint off, logs at ERROR,
// one server listening on HTTPPort and H2Port with protocols h1 and h2c
// (prior knowledge), a 300 s idle timeout, and reverse_proxy round robin over
// the two HTTP backends with upstream keep-alive (128 idle connections per
// host, like nginx's keepalive 128). With t.Routes > 0 the server has that
// many routes, each a path matcher "RoutePrefix(i)*" with its own
// reverse_proxy handler, terminal, evaluated in order. Stock Caddy has no
// layer-4 proxy, so TCPPort is not used.
// https://caddyserver.com/docs/json/apps/http/servers/
func CaddyConfig(t Topology) string {
	type obj = map[string]any
	proxy := obj{
		"handler":   "reverse_proxy",
		"upstreams": []obj{{"dial": fmt.Sprintf("127.0.0.1:%d", t.HTTPBackends[0])}, {"dial": fmt.Sprintf("127.0.0.1:%d", t.HTTPBackends[1])}},
		"load_balancing": obj{
			"selection_policy": obj{"policy": "round_robin"},
		},
		"transport": obj{
			"protocol":   "http",
			"keep_alive": obj{"enabled": true, "max_idle_conns_per_host": 128, "idle_timeout": "300s"},
		},
	}
	routes := []obj{{"handle": []obj{proxy}}}
	if t.Routes > 0 {
		routes = routes[:0]
		for i := range t.Routes {
			routes = append(routes, obj{
				"match":    []obj{{"path": []string{RoutePrefix(i) + "*"}}},
				"handle":   []obj{proxy},
				"terminal": true,
			})
		}
	}
	cfg := obj{
		"admin":   obj{"disabled": true, "config": obj{"persist": false}},
		"logging": obj{"logs": obj{"default": obj{"level": "ERROR"}}},
		"apps": obj{"http": obj{"servers": obj{"bench": obj{
			"listen":          []string{fmt.Sprintf("127.0.0.1:%d", t.HTTPPort), fmt.Sprintf("127.0.0.1:%d", t.H2Port)},
			"protocols":       []string{"h1", "h2c"},
			"idle_timeout":    "300s",
			"automatic_https": obj{"disable": true},
			"routes":          routes,
		}}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // maps of strings, numbers and bools always marshal
	}
	return string(b) + "\n"
}

// WrkScript is the wrk Lua script the harness passes with -s: its done hook
// prints one line that ParseWrk reads, with latencies in microseconds
// (wrk --latency prints only fixed percentiles and rounds them for humans).
const WrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HARNESS requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d p999_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`
