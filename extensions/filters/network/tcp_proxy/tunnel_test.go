package tcpproxy

import (
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
