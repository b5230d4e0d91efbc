package router

import (
	"bytes"
	"context"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// TestEarlyResponseRetry: an HTTP/2 upstream resets the first attempt, or
// answers 503, while the request body still streams (the codec reports
// ErrRequestBodyAborted); when the retry policy retries it, the retry must
// receive the rest of the request and answer, not wait for a body the
// stream goroutine is blocked from sending.
func TestEarlyResponseRetry(t *testing.T) {
	tests := []struct {
		name    string
		retryOn string
		// first answers the first attempt after reading one body byte.
		first func(w nethttp.ResponseWriter)
	}{
		{name: "reset", retryOn: "reset", first: func(nethttp.ResponseWriter) { panic(nethttp.ErrAbortHandler) }},
		{name: "early 503", retryOn: "5xx", first: func(w nethttp.ResponseWriter) {
			w.WriteHeader(503)
			w.(nethttp.Flusher).Flush()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testEarlyResponseRetry(t, tt.retryOn, tt.first) })
	}
}

func testEarlyResponseRetry(t *testing.T, retryOn string, first func(nethttp.ResponseWriter)) {
	reset := make(chan struct{}, 1)
	var attempts atomic.Int32
	srv := &nethttp.Server{Handler: h2c.NewHandler(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if attempts.Add(1) == 1 {
			buf := make([]byte, 1)
			io.ReadFull(r.Body, buf)
			reset <- struct{}{}
			first(w)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(200)
		w.Write(b)
	}), &http2.Server{MaxUploadBufferPerStream: 65535, MaxUploadBufferPerConnection: 65535})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	opts, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	cl := &clusterv3.Cluster{
		Name:                 "h2",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts,
		},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: "h2",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
				}}},
			}}}}}},
		},
	}
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.Apply(ctx, []*clusterv3.Cluster{cl}, func(int) string { return "clusters" }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	c, err := NewAsyncClient(mgr, store, "h2", AsyncOptions{
		Timeout: 5 * time.Second,
		Retry:   &routev3.RetryPolicy{RetryOn: retryOn},
	})
	if err != nil {
		t.Fatal(err)
	}

	s := &asyncStream{ctx: ctx, client: c, maxBody: 1 << 20}
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "POST")
	h.Add(hhttp.Path, "/")
	h.Add(hhttp.Authority, "h2.local")
	h.Add(hhttp.Scheme, "http")
	s.info.RequestHeaders = h
	f := c.cfg.NewFilter(s).(*Filter)
	f.DecodeHeaders(h, false)
	f.DecodeData([]byte("a"), false)
	<-reset
	// Larger than the upstream's flow-control window, so the write is still
	// blocked when x/net sees the reset or the 503: it fails with
	// ErrRequestBodyAborted. Below the 1 MiB buffer limit, so the request
	// stays retriable.
	big := bytes.Repeat([]byte("b"), 512<<10)
	f.DecodeData(big, false)
	f.DecodeData([]byte("c"), true)
	f.OnDestroy()
	if !s.done {
		t.Fatalf("no response")
	}
	want := "a" + string(big) + "c"
	if got := s.resp.Headers.StatusCode(); got != 200 || string(s.resp.Body) != want {
		t.Fatalf("response = %d, %d body bytes, want 200 and %d (details %q)", got, len(s.resp.Body), len(want), s.resp.Details)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("attempts = %d, want 2", n)
	}
}
