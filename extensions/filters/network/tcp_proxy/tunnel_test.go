package tcpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	// A STATIC cluster with the default round_robin policy (an internal
	// test cannot import extensions/all, which imports this package).
	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream"
)

// TestServeConnH2TunnelFilterState runs a connection through an HTTP/2
// tunnel in process (under -race) and checks what
// propagate_response_headers and propagate_response_trailers leave in the
// connection's filter state.
func TestServeConnH2TunnelFilterState(t *testing.T) {
	backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-resp", "yes")
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		io.Copy(w, r.Body)
		w.Header().Set(nethttp.TrailerPrefix+"x-trailer", "done")
	}))
	host, port, _ := net.SplitHostPort(backend)
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	var cl clusterv3.Cluster
	clusterYAML := fmt.Sprintf(`
name: tunnel
type: STATIC
connect_timeout: 1s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }
load_assignment:
  cluster_name: tunnel
  endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: %q, port_value: %s } } } }] }]
`, host, port)
	if _, err := bootstrap.Unmarshal("cluster.yaml", []byte(clusterYAML), &cl); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Apply(context.Background(), []*clusterv3.Cluster{&cl}, func(int) string { return "clusters[0]" }); err != nil {
		t.Fatal(err)
	}
	ctx, _ := tcpBuildContext(t)
	ctx.Clusters, ctx.Stats = mgr, store
	nf, err := Build(parseTCPProxy(t, `
stat_prefix: db
cluster: tunnel
tunneling_config: { hostname: "h:1", propagate_response_headers: true, propagate_response_trailers: true }
`, false), ctx)
	if err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := network.NewConn(context.Background(), server, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nf.(*Filter).ServeConn(c)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("ping"))
	client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v; want \"ping\"", got, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after both sides ended")
	}
	rh, _ := c.FilterState(FilterStateResponseHeaders).(*hhttp.Headers)
	if rh == nil || rh.Get(":status") != "200" || rh.Get("x-resp") != "yes" {
		t.Errorf("%s = %+v, want :status 200 and x-resp: yes", FilterStateResponseHeaders, rh)
	}
	tr, _ := c.FilterState(FilterStateResponseTrailers).(*hhttp.Headers)
	if tr == nil || tr.Get("x-trailer") != "done" {
		t.Errorf("%s = %+v, want x-trailer: done", FilterStateResponseTrailers, tr)
	}
}

// h1ConnectBackend answers one CONNECT per connection with 200 and then
// echoes the tunnel's bytes until the client half-closes.
func h1ConnectBackend(t *testing.T) string {
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
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if l == "\r\n" {
						break
					}
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
					return
				}
				io.Copy(c, br)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTunnelConnectionStats: a tunnel's upstream connection counts
// upstream_cx_http1_total or upstream_cx_http2_total by the cluster's
// protocol, as Envoy's HTTP connection pools' ActiveClients do.
func TestTunnelConnectionStats(t *testing.T) {
	h2Backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		io.Copy(w, r.Body)
	}))
	h1Backend := h1ConnectBackend(t)
	tests := []struct {
		name            string
		backend         string
		protocolOptions string
		wantH1, wantH2  uint64
	}{
		{name: "HTTP/1.1", backend: h1Backend, wantH1: 1},
		{name: "HTTP/2", backend: h2Backend, wantH2: 1, protocolOptions: `
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(tc.backend)
			store := stats.NewStore()
			mgr := upstream.NewManager(store)
			t.Cleanup(mgr.Close)
			var cl clusterv3.Cluster
			clusterYAML := fmt.Sprintf(`
name: tunnel
type: STATIC
connect_timeout: 1s%s
load_assignment:
  cluster_name: tunnel
  endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: %q, port_value: %s } } } }] }]
`, tc.protocolOptions, host, port)
			if _, err := bootstrap.Unmarshal("cluster.yaml", []byte(clusterYAML), &cl); err != nil {
				t.Fatal(err)
			}
			if err := mgr.Apply(context.Background(), []*clusterv3.Cluster{&cl}, func(int) string { return "clusters[0]" }); err != nil {
				t.Fatal(err)
			}
			ctx, _ := tcpBuildContext(t)
			ctx.Clusters, ctx.Stats = mgr, store
			nf, err := Build(parseTCPProxy(t, "stat_prefix: db\ncluster: tunnel\ntunneling_config: { hostname: \"h:1\" }\n", false), ctx)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c := network.NewConn(context.Background(), server, nil)
			done := make(chan struct{})
			go func() {
				defer close(done)
				nf.(*Filter).ServeConn(c)
			}()
			client.SetDeadline(time.Now().Add(10 * time.Second))
			client.Write([]byte("ping"))
			client.(*net.TCPConn).CloseWrite()
			if got, err := io.ReadAll(client); err != nil || string(got) != "ping" {
				t.Fatalf("echo = %q, %v; want \"ping\"", got, err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ServeConn did not return after both sides ended")
			}
			if got := store.Counter("cluster.tunnel.upstream_cx_http1_total").Value(); got != tc.wantH1 {
				t.Errorf("upstream_cx_http1_total = %d, want %d", got, tc.wantH1)
			}
			if got := store.Counter("cluster.tunnel.upstream_cx_http2_total").Value(); got != tc.wantH2 {
				t.Errorf("upstream_cx_http2_total = %d, want %d", got, tc.wantH2)
			}
		})
	}
}
