package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"

	_ "github.com/herald-proxy/herald/extensions/all"
)

// newTestServer is a Server with what Apply needs and nothing running.
func newTestServer(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store := stats.NewStore()
	s := &Server{
		log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		store:          store,
		ctx:            ctx,
		clusters:       upstream.NewManager(store),
		files:          accesslog.NewFileManager(0),
		clusterUpdated: map[string]time.Time{},
		opts:           Options{DrainTime: time.Second},
	}
	s.lmStats = newListenerManagerStats(store)
	t.Cleanup(func() {
		for _, l := range s.listeners() {
			l.CloseAll()
		}
		s.clusters.Close()
		s.files.Close()
		cancel()
	})
	return s
}

// directListener is a listener answering direct_response body on addr.
func directListener(name, addr, body string) string {
	return `  - name: ` + name + `
    address: { socket_address: { address: 127.0.0.1, port_value: ` + addr + ` } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "` + body + `" } } } ] } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`
}

func clusterYAML(name, port string) string {
	return `  - name: ` + name + `
    load_assignment: { cluster_name: ` + name + `, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ` + port + ` } } } } ] } ] }
`
}

func resources(t *testing.T, listeners, clusters []string) Resources {
	t.Helper()
	y := "static_resources:\n  listeners:\n" + strings.Join(listeners, "")
	if len(clusters) > 0 {
		y += "  clusters:\n" + strings.Join(clusters, "")
	}
	cfg, err := bootstrap.Load(bootstrap.Options{YAML: y})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return staticResources(cfg)
}

func TestApplyDiff(t *testing.T) {
	type set struct{ listeners, clusters []string }
	start := set{
		listeners: []string{directListener("a", "0", "a"), directListener("b", "0", "b")},
		clusters:  []string{clusterYAML("one", "1"), clusterYAML("two", "2")},
	}
	tests := []struct {
		name string
		next set
		// rename renames the second new listener after loading.
		rename  string
		want    Changes
		wantErr string
	}{
		{name: "nothing changed", next: start},
		{name: "route body changed", next: set{
			listeners: []string{directListener("a", "0", "a2"), directListener("b", "0", "b")},
			clusters:  start.clusters,
		}, want: Changes{ListenersModified: []string{"a"}}},
		{name: "listener added and removed, cluster changed", next: set{
			listeners: []string{directListener("a", "0", "a"), directListener("c", "0", "c")},
			clusters:  []string{clusterYAML("one", "1"), clusterYAML("two", "3"), clusterYAML("three", "3")},
		}, want: Changes{ListenersAdded: []string{"c"}, ListenersRemoved: []string{"b"}, ClustersAdded: []string{"three"}, ClustersModified: []string{"two"}}},
		{name: "cluster removed", next: set{listeners: start.listeners, clusters: []string{clusterYAML("one", "1")}},
			want: Changes{ClustersRemoved: []string{"two"}}},
		// Two listeners with one name: nothing is applied.
		{name: "duplicate listener name rejected", next: set{
			listeners: []string{directListener("a", "0", "a"), directListener("a2", "0", "a2")},
		}, rename: "a", wantErr: `static_resources.listeners[1].name: duplicate listener "a" (first at static_resources.listeners[0])`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			if _, err := s.Apply(context.Background(), resources(t, start.listeners, start.clusters), 0); err != nil {
				t.Fatalf("start: %v", err)
			}
			before := map[string]string{}
			for _, l := range s.listeners() {
				before[l.Name()] = l.Bound().String()
			}
			next := resources(t, tc.next.listeners, tc.next.clusters)
			if tc.rename != "" {
				// After the loader, which would refuse it already (xDS
				// resources do not go through it).
				next.Listeners[1].Name = tc.rename
			}
			got, err := s.Apply(context.Background(), next, 0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if n := len(s.listeners()); n != 2 {
					t.Errorf("after a rejected update %d listeners run, want the 2 from before", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("changes (-want +got):\n%s", d)
			}
			// Kept and modified listeners keep their socket.
			for _, l := range s.listeners() {
				if addr, ok := before[l.Name()]; ok && addr != l.Bound().String() {
					t.Errorf("listener %s moved from %s to %s", l.Name(), addr, l.Bound())
				}
			}
		})
	}
}

func TestApplyBadListenerChangesNothing(t *testing.T) {
	s := newTestServer(t)
	start := resources(t, []string{directListener("a", "0", "a")}, []string{clusterYAML("one", "1")})
	if _, err := s.Apply(context.Background(), start, 0); err != nil {
		t.Fatal(err)
	}
	l := s.listeners()[0]
	// A new listener that cannot bind (the port a holds) and a changed
	// cluster: the bind fails, so the cluster must not change either.
	port := l.Bound().Port()
	next := resources(t, []string{directListener("a", "0", "a"), directListener("x", strconv.Itoa(int(port)), "x")}, []string{clusterYAML("one", "2")})
	if _, err := s.Apply(context.Background(), next, 0); err == nil || !strings.Contains(err.Error(), "static_resources.listeners[1].address") {
		t.Fatalf("err = %v, want a bind error at static_resources.listeners[1].address", err)
	}
	if got := s.clusters.Cluster("one").Config().GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); got != 1 {
		t.Errorf("cluster one changed to port %d by a rejected update", got)
	}
	if ls := s.listeners(); len(ls) != 1 || ls[0] != l {
		t.Errorf("listeners changed by a rejected update: %v", ls)
	}
}

func TestRestartOnlyChanges(t *testing.T) {
	tests := []struct {
		name      string
		old, next string
		want      []string
	}{
		{name: "static resources only", old: "static_resources: {}", next: "static_resources: { clusters: [ { name: c } ] }"},
		{name: "admin and node", old: "node: { id: a }", next: "node: { id: b }\nadmin: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } }",
			want: []string{"node", "admin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parse := func(y string) *bootstrapv3.Bootstrap {
				b, _, err := bootstrap.Parse("x.yaml", []byte(y))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			got := restartOnlyChanges(parse(tc.old), parse(tc.next))
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// pongServer answers a TCP health check's "ping" with "pong" only once
// release is closed.
func pongServer(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				<-release
				c.Write([]byte("pong"))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestApplyWarmsChangedCluster(t *testing.T) {
	s := newTestServer(t)
	listeners := []string{directListener("a", "0", "a")}
	if _, err := s.Apply(context.Background(), resources(t, listeners, []string{clusterYAML("c", "1")}), 0); err != nil {
		t.Fatal(err)
	}
	old := s.clusters.Cluster("c")
	release := make(chan struct{})
	_, port, _ := net.SplitHostPort(pongServer(t, release))
	// The changed cluster health-checks its host; it is Ready only after
	// that first check, which the server holds back.
	changed := clusterYAML("c", port) + `    health_checks:
    - { timeout: 10s, interval: 10s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: { send: { text: "70696e67" }, receive: [ { text: "706f6e67" } ] } }
`
	done := make(chan error, 1)
	go func() {
		_, err := s.Apply(context.Background(), resources(t, listeners, []string{changed}), 10*time.Second)
		done <- err
	}()
	// While it warms, the old cluster serves.
	deadline := time.Now().Add(5 * time.Second)
	for s.store.Gauge("cluster_manager.warming_clusters").Value() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the changed cluster never started warming")
		}
		runtime.Gosched()
	}
	if got := s.clusters.Cluster("c"); got != old {
		t.Fatal("the changed cluster serves before it warmed")
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply did not finish once the cluster warmed")
	}
	if got := s.clusters.Cluster("c"); got == old {
		t.Error("the warmed cluster was not swapped in")
	}
	if v := s.store.Gauge("cluster_manager.warming_clusters").Value(); v != 0 {
		t.Errorf("cluster_manager.warming_clusters = %d after warming, want 0", v)
	}
}

func TestApplyRenamedListenerTakesOverSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	s := newTestServer(t)
	if _, err := s.Apply(context.Background(), resources(t, []string{directListener("old", port, "x")}, nil), 0); err != nil {
		t.Fatal(err)
	}
	l := s.listeners()[0]
	// Same fixed address, new name: binding anew would fail while the old
	// socket is open, so the new listener takes it over.
	got, err := s.Apply(context.Background(), resources(t, []string{directListener("new", port, "x")}, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := Changes{ListenersAdded: []string{"new"}, ListenersRemoved: []string{"old"}}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	if ls := s.listeners(); len(ls) != 1 || ls[0] != l || l.Name() != "new" {
		t.Errorf("listeners %v: want the old socket running as \"new\"", ls)
	}
}
