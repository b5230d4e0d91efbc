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
