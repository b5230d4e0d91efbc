package integration

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herald-proxy/herald/internal/testutil"
)

// poolBackend is an h2c (prior knowledge) backend that counts the
// connections it accepted and has open; requests to /hold wait for
// release.
type poolBackend struct {
	addr    string
	open    atomic.Int64
	total   atomic.Int64
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func newPoolBackend(t *testing.T) *poolBackend {
	t.Helper()
	b := &poolBackend{held: make(chan struct{}, 16), release: make(chan struct{})}
	h := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/hold" {
			b.held <- struct{}{}
			<-b.release
		}
		io.WriteString(w, "backend")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http2.Server{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			b.total.Add(1)
			b.open.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// ServeConn returns once herald closes the connection.
				srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
				c.Close()
				b.open.Add(-1)
			}()
		}
	}()
	t.Cleanup(func() {
		b.releaseAll()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	b.addr = ln.Addr().String()
	return b
}

func (b *poolBackend) releaseAll() { b.once.Do(func() { close(b.release) }) }

// wantConns polls until the backend has accepted total connections and
// has open of them open.
func (b *poolBackend) wantConns(t *testing.T, total, open int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if gt, gopen := b.total.Load(), b.open.Load(); gt != total || gopen != open {
			return fmt.Errorf("backend accepted %d connections, %d open; want %d, %d open", gt, gopen, total, open)
		}
		return nil
	})
}

// poolsBootstrap is one listener whose /version answers version directly
// and whose other paths go to cluster backend, an HTTP/2 cluster at addr
// with connect_timeout and http2_protocol_options h2opts.
func poolsBootstrap(version, addr, connectTimeout, h2opts string) string {
	host, port, _ := net.SplitHostPort(addr)
	vhost := fmt.Sprintf(`            - name: vh
              domains: ["*"]
              routes:
              - match: { path: "/version" }
                direct_response: { status: 200, body: { inline_string: %q } }
              - match: { prefix: "/" }
                route: { cluster: backend }`, version)
	cluster := fmt.Sprintf(`  - name: backend
    type: STATIC
    connect_timeout: %s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: %s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }
`, connectTimeout, h2opts, host, port)
	return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: vhost})}, cluster)
}

// mustGet GETs path on a new connection and checks the body.
func mustGet(t *testing.T, addr, path, want string) {
	t.Helper()
	body, err := getBody(addr, path)
	if err != nil || body != want {
		t.Fatalf("GET %s: body %q, err %v; want %q", path, body, err, want)
	}
}

// TestUpstreamPoolsSurviveListenerUpdates: the HTTP/2 connection to a
// cluster's host belongs to the cluster, not to the listener's router, so
// reloads that change only routes keep it; a reload that changes the
// cluster drains it (herald closes it) and a new one serves. Envoy:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling
func TestUpstreamPoolsSurviveListenerUpdates(t *testing.T) {
	t.Parallel()
	b := newPoolBackend(t)
	h := testutil.Start(t, poolsBootstrap("v0", b.addr, "1s", "{}"))
	addr := h.ListenerAddr("web")

	for range 10 {
		mustGet(t, addr, "/", "backend")
	}
	b.wantConns(t, 1, 1)

	for i := 1; i <= 20; i++ {
		v := fmt.Sprintf("v%d", i)
		rewrite(t, h, poolsBootstrap(v, b.addr, "1s", "{}"))
		if st := sighup(t, h); !st.OK {
			t.Fatalf("reload %d: %+v", i, st)
		}
		mustGet(t, addr, "/version", v) // the new route config serves
		mustGet(t, addr, "/", "backend")
	}
	if gt, gopen := b.total.Load(), b.open.Load(); gt != 1 || gopen != 1 {
		t.Fatalf("after 20 route-only reloads the backend accepted %d connections, %d open; want the first one kept", gt, gopen)
	}

	// Changing the cluster replaces it: its pool drains, closing the idle
	// connection, and the next request opens a new one.
	rewrite(t, h, poolsBootstrap("v21", b.addr, "2s", "{}"))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("cluster reload: %+v", st)
	}
	b.wantConns(t, 1, 0)
	mustGet(t, addr, "/", "backend")
	b.wantConns(t, 2, 1)
}

// TestUpstreamPoolsClusterHTTP2Options: the cluster's
// http2_protocol_options reach the router's streams. With
// max_concurrent_streams 1 two concurrent requests need two connections;
// with the default (Envoy: 2147483647) they share one.
func TestUpstreamPoolsClusterHTTP2Options(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		h2opts    string
		wantConns int64
	}{
		{name: "default", h2opts: "{}", wantConns: 1},
		{name: "max_concurrent_streams 1", h2opts: "{ max_concurrent_streams: 1 }", wantConns: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newPoolBackend(t)
			h := testutil.Start(t, poolsBootstrap("v0", b.addr, "1s", tc.h2opts))
			addr := h.ListenerAddr("web")

			errs := make(chan error, 2)
			for range 2 {
				go func() {
					body, err := getBody(addr, "/hold")
					if err == nil && body != "backend" {
						err = fmt.Errorf("body %q", body)
					}
					errs <- err
				}()
			}
			for range 2 {
				select {
				case <-b.held:
				case err := <-errs:
					t.Fatalf("request ended before reaching the backend: %v", err)
				case <-time.After(5 * time.Second):
					t.Fatal("two requests did not reach the backend")
				}
			}
			// Both streams are open at the backend now.
			gotConns := b.total.Load()
			b.releaseAll()
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("GET /hold: %v", err)
				}
			}
			if gotConns != tc.wantConns {
				t.Errorf("two concurrent streams used %d connections, want %d", gotConns, tc.wantConns)
			}
			if log := h.Output(); strings.Contains(log, "panic") {
				t.Errorf("herald log has a panic:\n%s", log)
			}
		})
	}
}

// withMaxRequestsPerConnection adds common_http_protocol_options
// max_requests_per_connection n to the HttpProtocolOptions of a cluster
// rendered with explicit_http_config at the usual indentation.
func withMaxRequestsPerConnection(t *testing.T, cfg string, n int) string {
	t.Helper()
	const at = "        explicit_http_config:"
	if strings.Count(cfg, at) != 1 {
		t.Fatalf("config has %d explicit_http_config blocks, want 1", strings.Count(cfg, at))
	}
	return strings.Replace(cfg, at, fmt.Sprintf("        common_http_protocol_options: { max_requests_per_connection: %d }\n%s", n, at), 1)
}

// waitStats polls admin /stats until every stat has its value.
func waitStats(t *testing.T, h *testutil.Herald, want map[string]int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		for name, w := range want {
			if got := h.Stat(name); got != w {
				return fmt.Errorf("%s = %d, want %d", name, got, w)
			}
		}
		return nil
	})
}

// TestUpstreamPoolsMaxRequestsPerConnection: an HTTP/2 cluster's
// common_http_protocol_options.max_requests_per_connection 2 spreads 5
// sequential requests over 3 connections: each spent connection takes no
// new stream and is closed by herald once its last stream ended (Envoy's
// pool drains it: ConnPoolImplBase::attachStreamToClient). Admin /stats
// shows the connections: upstream_cx_total and upstream_cx_http2_total 3,
// upstream_cx_max_requests 2, upstream_cx_destroy 2 (local), one active
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/upstream/cluster_manager/cluster_stats).
func TestUpstreamPoolsMaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	b := newPoolBackend(t)
	h := testutil.Start(t, withMaxRequestsPerConnection(t, poolsBootstrap("v0", b.addr, "1s", "{}"), 2))
	addr := h.ListenerAddr("web")
	for range 5 {
		mustGet(t, addr, "/", "backend")
	}
	b.wantConns(t, 3, 1)
	waitStats(t, h, map[string]int64{
		"cluster.backend.upstream_cx_total":         3,
		"cluster.backend.upstream_cx_http2_total":   3,
		"cluster.backend.upstream_cx_max_requests":  2,
		"cluster.backend.upstream_cx_destroy":       2,
		"cluster.backend.upstream_cx_destroy_local": 2,
		"cluster.backend.upstream_cx_active":        1,
		"cluster.backend.upstream_rq_total":         5,
	})
}

// TestUpstreamPoolsHTTP2Stats: a pooled HTTP/2 connection counts once in
// upstream_cx_total and upstream_cx_http2_total however many requests it
// carries, never in upstream_cx_max_requests without the limit, and a
// cluster change that drains it counts its destroy.
func TestUpstreamPoolsHTTP2Stats(t *testing.T) {
	t.Parallel()
	b := newPoolBackend(t)
	h := testutil.Start(t, poolsBootstrap("v0", b.addr, "1s", "{}"))
	addr := h.ListenerAddr("web")
	for range 4 {
		mustGet(t, addr, "/", "backend")
	}
	b.wantConns(t, 1, 1)
	waitStats(t, h, map[string]int64{
		"cluster.backend.upstream_cx_total":        1,
		"cluster.backend.upstream_cx_http2_total":  1,
		"cluster.backend.upstream_cx_max_requests": 0,
		"cluster.backend.upstream_cx_active":       1,
		"cluster.backend.upstream_cx_destroy":      0,
	})
	rewrite(t, h, poolsBootstrap("v1", b.addr, "2s", "{}"))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("cluster reload: %+v", st)
	}
	b.wantConns(t, 1, 0)
	waitStats(t, h, map[string]int64{
		"cluster.backend.upstream_cx_active":        0,
		"cluster.backend.upstream_cx_destroy":       1,
		"cluster.backend.upstream_cx_destroy_local": 1,
	})
}

// autoConfigVersionBootstrap is one listener whose /version answers
// version directly and whose other paths go to auto_config cluster c.
func autoConfigVersionBootstrap(f *tlsFiles, version, backend string) string {
	vhost := fmt.Sprintf(`            - name: vh
              domains: ["*"]
              routes:
              - match: { path: "/version" }
                direct_response: { status: 200, body: { inline_string: %q } }
              - match: { prefix: "/" }
                route: { cluster: c }`, version)
	return bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: vhost})}, autoConfigCluster(f, "c", backend, ""))
}

// TestUpstreamPoolsAutoConfigSurvivesReloads: what an auto_config host
// negotiated (h2) is remembered by the host, not the route config, so
// after route-only reloads requests go straight to the host's HTTP/2
// connection: the backend sees no new TLS connection. Envoy's mixed pool
// is the cluster manager's and outlives listener updates
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling).
func TestUpstreamPoolsAutoConfigSurvivesReloads(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend, conns := protoBackend(t, f.server, true)
	h := testutil.Start(t, autoConfigVersionBootstrap(f, "v0", backend))
	addr := h.ListenerAddr("in")
	const want = "proto=HTTP/2.0 body="
	mustGet(t, addr, "/", want) // learns h2
	for i := 1; i <= 5; i++ {
		v := fmt.Sprintf("v%d", i)
		rewrite(t, h, autoConfigVersionBootstrap(f, v, backend))
		if st := sighup(t, h); !st.OK {
			t.Fatalf("reload %d: %+v", i, st)
		}
		mustGet(t, addr, "/version", v) // the new route config serves
		mustGet(t, addr, "/", want)
		if n := conns.Load(); n != 1 {
			t.Fatalf("after reload %d the backend accepted %d TLS connections, want 1", i, n)
		}
	}
	waitStats(t, h, map[string]int64{
		"cluster.c.upstream_cx_total":       1,
		"cluster.c.upstream_cx_http2_total": 1,
		"cluster.c.upstream_cx_active":      1,
		"cluster.c.upstream_rq_total":       6,
	})
}

// TestUpstreamPoolsHTTP3MaxRequestsPerConnection: an HTTP/3 cluster's
// max_requests_per_connection 2 spreads 5 sequential requests over 3 QUIC
// connections, counted in upstream_cx_http3_total, with 2 spent by
// upstream_cx_max_requests and closed.
func TestUpstreamPoolsHTTP3MaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := h3Backend(t, f.server)
	h := testutil.Start(t, withMaxRequestsPerConnection(t, bootstrap([]string{extraHCMListener(hcmSpec{
		name: "in", vhosts: catchAllVhost("h3"),
	})}, h3Cluster(f, "h3", backend)), 2))
	addr := h.ListenerAddr("in")
	for range 5 {
		mustGet(t, addr, "/", "proto=HTTP/3.0 body= trailers=")
	}
	waitStats(t, h, map[string]int64{
		"cluster.h3.upstream_cx_total":        3,
		"cluster.h3.upstream_cx_http3_total":  3,
		"cluster.h3.upstream_cx_max_requests": 2,
		"cluster.h3.upstream_cx_destroy":      2,
		"cluster.h3.upstream_cx_active":       1,
	})
}

// TestUpstreamPoolsHTTP1MaxRequestsPerConnection: on an HTTP/1.1 cluster
// max_requests_per_connection 2 spreads 5 sequential requests over 3
// keep-alive connections (herald closes a connection after its 2nd
// request instead of pooling it), counted in upstream_cx_http1_total and
// upstream_cx_max_requests as Envoy's cluster stats do.
func TestUpstreamPoolsHTTP1MaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	opened, closed := 0, 0
	srv := &nethttp.Server{
		Handler: nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) { io.WriteString(w, "backend") }),
		ConnState: func(_ net.Conn, s nethttp.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch s {
			case nethttp.StateNew:
				opened++
			case nethttp.StateClosed:
				closed++
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := poolsBootstrap("v0", ln.Addr().String(), "1s", "{}")
	if strings.Count(cfg, "http2_protocol_options: {}") != 1 {
		t.Fatal("bootstrap has no http2_protocol_options to turn into HTTP/1.1")
	}
	cfg = strings.Replace(cfg, "http2_protocol_options: {}", "http_protocol_options: {}", 1)
	h := testutil.Start(t, withMaxRequestsPerConnection(t, cfg, 2))
	addr := h.ListenerAddr("web")
	for range 5 {
		mustGet(t, addr, "/", "backend")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if opened != 3 || closed != 2 {
			return fmt.Errorf("backend connections opened %d closed %d, want 3 and 2", opened, closed)
		}
		return nil
	})
	waitStats(t, h, map[string]int64{
		"cluster.backend.upstream_cx_total":        3,
		"cluster.backend.upstream_cx_http1_total":  3,
		"cluster.backend.upstream_cx_http2_total":  0,
		"cluster.backend.upstream_cx_max_requests": 2,
		"cluster.backend.upstream_cx_active":       1,
		"cluster.backend.upstream_rq_total":        5,
	})
}
