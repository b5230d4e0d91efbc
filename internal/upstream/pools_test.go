package upstream

import (
	"context"
	"errors"
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

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/testutil"
)

// h2Backend is an h2c server that counts the connections it has open and
// holds requests to /hold until release is closed.
type h2Backend struct {
	addr    string
	open    atomic.Int64
	total   atomic.Int64
	held    chan struct{} // a /hold request arrived
	release chan struct{}
	once    sync.Once
}

func newH2Backend(t *testing.T) *h2Backend {
	t.Helper()
	b := &h2Backend{held: make(chan struct{}, 16), release: make(chan struct{})}
	h := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(200)
			w.(nethttp.Flusher).Flush()
			b.held <- struct{}{}
			<-b.release
		}
		io.WriteString(w, "ok")
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
			b.open.Add(1)
			b.total.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// ServeConn returns when herald closes the connection.
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

func (b *h2Backend) releaseAll() { b.once.Do(func() { close(b.release) }) }

// waitOpen polls until the backend has want connections open.
func (b *h2Backend) waitOpen(t *testing.T, want int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := b.open.Load(); got != want {
			return fmt.Errorf("backend has %d connections open, want %d", got, want)
		}
		return nil
	})
}

// h2Cluster is a STATIC cluster of one host at addr speaking HTTP/2 with
// the given http2_protocol_options (a YAML flow mapping).
func h2Cluster(name, addr, h2opts string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`
- name: %s
  connect_timeout: 1s
  http2_protocol_options: %s
  load_assignment:
    cluster_name: %s
    endpoints:
    - lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]
`, name, h2opts, name, host, port)
}

// openStream opens a GET for path on h's HTTP/2 pool and reads the
// response headers.
func openStream(t *testing.T, h *Host, path string) hhttp.UpstreamStream {
	t.Helper()
	c, err := h.HTTP2()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.NewStream(context.Background(), "", func(ctx context.Context) (net.Conn, error) {
		return h.Cluster().Dial(ctx, h)
	})
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	var req hhttp.Headers
	req.Add(":method", "GET")
	req.Add(":scheme", "http")
	req.Add(":authority", "backend")
	req.Add(":path", path)
	if err := s.WriteHeaders(&req, true); err != nil {
		t.Fatalf("WriteHeaders: %v", err)
	}
	var resp hhttp.Headers
	if _, err := s.ReadHeaders(&resp); err != nil {
		t.Fatalf("ReadHeaders: %v", err)
	}
	if got := resp.StatusCode(); got != 200 {
		t.Fatalf("status = %d, want 200", got)
	}
	return s
}

// finish reads s's body to its end and closes it cleanly.
func finish(t *testing.T, s hhttp.UpstreamStream) {
	t.Helper()
	buf := make([]byte, 64)
	var body strings.Builder
	for {
		n, err := s.ReadBody(buf)
		body.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ReadBody: %v", err)
		}
	}
	s.Close(nil)
	if body.String() != "ok" {
		t.Errorf("body = %q, want %q", body.String(), "ok")
	}
}

func get(t *testing.T, h *Host) { t.Helper(); finish(t, openStream(t, h, "/")) }

// TestHTTP2PoolSharedByCallers: every caller of a host gets the same
// client, so sequential requests share one connection, and the client
// carries the cluster's http2_protocol_options (max_concurrent_streams 1
// forces a second connection for a second concurrent stream).
func TestHTTP2PoolSharedByCallers(t *testing.T) {
	tests := []struct {
		name   string
		h2opts string
		// concurrent opens two streams at once instead of one after the
		// other.
		concurrent bool
		wantConns  int64
	}{
		{name: "sequential share one connection", h2opts: "{}", wantConns: 1},
		{name: "concurrent share one connection", h2opts: "{}", concurrent: true, wantConns: 1},
		{name: "max_concurrent_streams 1 opens another", h2opts: "{max_concurrent_streams: 1}", concurrent: true, wantConns: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newH2Backend(t)
			m, _ := newTestManager(t)
			if err := m.Apply(context.Background(), parseClusters(t, h2Cluster("a", b.addr, tc.h2opts)), prefix); err != nil {
				t.Fatal(err)
			}
			h := m.Cluster("a").Pick(nil)
			c1, _ := h.HTTP2()
			c2, _ := m.Cluster("a").Pick(nil).HTTP2()
			if c1 != c2 {
				t.Fatal("two callers got different HTTP/2 clients for one host")
			}
			if tc.concurrent {
				s1 := openStream(t, h, "/")
				s2 := openStream(t, h, "/")
				finish(t, s1)
				finish(t, s2)
			} else {
				get(t, h)
				get(t, h)
			}
			if got := b.total.Load(); got != tc.wantConns {
				t.Errorf("backend saw %d connections, want %d", got, tc.wantConns)
			}
		})
	}
}

// TestPoolsDrainedWhenClusterRetired: a cluster replaced by a config
// change, removed, or a host leaving its cluster drains the host's HTTP/2
// pool: an idle connection closes at once; a busy one serves its stream
// to the end and closes then; an unchanged cluster keeps its connection.
func TestPoolsDrainedWhenClusterRetired(t *testing.T) {
	tests := []struct {
		name string
		// retire takes cluster "a" (at backend addr) away from its host.
		retire   func(t *testing.T, m *Manager, addr string)
		wantKept bool
	}{
		{
			name: "cluster changed",
			retire: func(t *testing.T, m *Manager, addr string) {
				apply(t, m, h2Cluster("a", addr, "{initial_stream_window_size: 131072}"))
			},
		},
		{
			name:   "cluster removed",
			retire: func(t *testing.T, m *Manager, addr string) { apply(t, m, "") },
		},
		{
			name: "host removed",
			retire: func(t *testing.T, m *Manager, addr string) {
				updaterFor("a").Success(nil)
			},
		},
		{
			// An unrelated cluster changing leaves a's pools alone.
			name: "other cluster changed",
			retire: func(t *testing.T, m *Manager, addr string) {
				apply(t, m, h2Cluster("a", addr, "{}")+h2Cluster("b", addr, "{}"))
			},
			wantKept: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newH2Backend(t)
			m, _ := newTestManager(t)
			apply(t, m, h2Cluster("a", b.addr, "{}"))
			h := m.Cluster("a").Pick(nil)
			get(t, h)
			b.waitOpen(t, 1)

			tc.retire(t, m, b.addr)
			if tc.wantKept {
				get(t, h)
				if got, open := b.total.Load(), b.open.Load(); got != 1 || open != 1 {
					t.Errorf("backend saw %d connections, %d open; want the one kept", got, open)
				}
				return
			}
			b.waitOpen(t, 0) // idle: closed by the drain
		})
		t.Run(tc.name+" busy", func(t *testing.T) {
			if tc.wantKept {
				t.Skip("nothing is drained")
			}
			b := newH2Backend(t)
			m, _ := newTestManager(t)
			apply(t, m, h2Cluster("a", b.addr, "{}"))
			h := m.Cluster("a").Pick(nil)
			s := openStream(t, h, "/hold")
			<-b.held

			tc.retire(t, m, b.addr)
			if got := b.open.Load(); got != 1 {
				t.Errorf("busy connection closed by the drain: %d open", got)
			}
			// A request that picked the retired host before it went gets
			// a connection of its own, closed when its stream ends.
			get(t, h)
			b.releaseAll()
			finish(t, s) // the held stream ends cleanly
			b.waitOpen(t, 0)
			if got := b.total.Load(); got != 2 {
				t.Errorf("backend saw %d connections, want 2 (the drained one, the straggler's)", got)
			}
		})
	}
}

// tryGet is get for goroutines other than the test's: a GET of / on h's
// HTTP/2 pool, read to its end; it reports what went wrong.
func tryGet(h *Host) error {
	c, err := h.HTTP2()
	if err != nil {
		return err
	}
	s, err := c.NewStream(context.Background(), "", func(ctx context.Context) (net.Conn, error) {
		return h.Cluster().Dial(ctx, h)
	})
	if err != nil {
		return err
	}
	defer s.Close(nil)
	var req hhttp.Headers
	req.Add(":method", "GET")
	req.Add(":scheme", "http")
	req.Add(":authority", "backend")
	req.Add(":path", "/")
	if err := s.WriteHeaders(&req, true); err != nil {
		return err
	}
	var resp hhttp.Headers
	if _, err := s.ReadHeaders(&resp); err != nil {
		return err
	}
	if got := resp.StatusCode(); got != 200 {
		return fmt.Errorf("status = %d, want 200", got)
	}
	body, err := io.ReadAll(readerFunc(s.ReadBody))
	if err != nil || string(body) != "ok" {
		return fmt.Errorf("body = %q, %v; want \"ok\"", body, err)
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestPoolsRetireRacesRequests: requests that picked a host keep working
// while, and after, its cluster is removed, and no connection outlives
// them: the ones made before the drain close with their last stream, the
// ones made after with their only one. The host's HTTP/2 client may be
// made before the retirement or only after it (then it starts drained).
// Run under -race.
func TestPoolsRetireRacesRequests(t *testing.T) {
	tests := []struct {
		name string
		// warm makes the host's client and a connection before retiring.
		warm bool
	}{
		{name: "client made before retirement", warm: true},
		{name: "client made after retirement", warm: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newH2Backend(t)
			m, _ := newTestManager(t)
			apply(t, m, h2Cluster("a", b.addr, "{}"))
			h := m.Cluster("a").Pick(nil)
			if tc.warm {
				get(t, h)
			}
			const workers, each = 4, 10
			errs := make(chan error, workers*each)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range workers {
				wg.Go(func() {
					<-start
					for range each {
						if err := tryGet(h); err != nil {
							errs <- err
						}
					}
				})
			}
			close(start)
			apply(t, m, "") // retire cluster a while the workers run
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("request on the retired host: %v", err)
			}
			get(t, h) // a straggler after the drain still gets through
			b.waitOpen(t, 0)
		})
	}
}

// TestManagerCloseDrainsPools: closing the manager (server shutdown) drains
// every host's pools as stopping a cluster does.
func TestManagerCloseDrainsPools(t *testing.T) {
	b := newH2Backend(t)
	m, _ := newTestManager(t)
	apply(t, m, h2Cluster("a", b.addr, "{}"))
	get(t, m.Cluster("a").Pick(nil))
	b.waitOpen(t, 1)
	m.Close()
	b.waitOpen(t, 0)
}

func apply(t *testing.T, m *Manager, clusters string) {
	t.Helper()
	if err := m.Apply(context.Background(), parseClusters(t, clusters), prefix); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHostHTTP2 is the request path's lookup of a host's HTTP/2
// client once it exists: an atomic load, no allocation.
func BenchmarkHostHTTP2(b *testing.B) {
	h := &Host{cluster: &Cluster{}}
	if _, err := h.HTTP2(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.HTTP2(); err != nil {
			b.Fatal(err)
		}
	}
}
