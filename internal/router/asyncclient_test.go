package router_test

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream"
)

func staticCluster(name string, addrs ...string) *clusterv3.Cluster {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
			}}},
		}}})
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}},
		},
	}
}

func asyncManager(t *testing.T, clusters ...*clusterv3.Cluster) (*upstream.Manager, *stats.Store) {
	t.Helper()
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.Apply(ctx, clusters, func(i int) string { return "clusters" }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return mgr, store
}

func request(method, path string, hdrs ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, method)
	h.Add(hhttp.Path, path)
	h.Add(hhttp.Authority, "auth.local")
	for i := 0; i+1 < len(hdrs); i += 2 {
		h.Add(hdrs[i], hdrs[i+1])
	}
	return h
}

func TestAsyncClientSend(t *testing.T) {
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100)))
			return
		}
		w.Header().Set("x-method", r.Method)
		w.Header().Set("x-got", r.Header.Get("x-in"))
		w.WriteHeader(nethttp.StatusCreated)
		w.Write([]byte("echo:" + string(body)))
	}))
	mgr, store := asyncManager(t, staticCluster("auth", backend), staticCluster("down", testutil.ClosedPort(t)))

	tests := []struct {
		name      string
		cluster   string
		timeout   time.Duration
		req       *hhttp.Headers
		body      string
		maxBody   int
		wantCode  int
		wantBody  string
		wantHdr   [2]string
		details   string
		truncated bool
	}{
		{name: "get", cluster: "auth", req: request("GET", "/check", "x-in", "v1"), wantCode: 201,
			wantBody: "echo:", wantHdr: [2]string{"x-got", "v1"}, details: "via_upstream"},
		{name: "post body", cluster: "auth", req: request("POST", "/check"), body: "hello", wantCode: 201,
			wantBody: "echo:hello", wantHdr: [2]string{"x-method", "POST"}, details: "via_upstream"},
		{name: "body kept up to maxBody", cluster: "auth", req: request("GET", "/big"), maxBody: 10, wantCode: 200,
			wantBody: "xxxxxxxxxx", details: "via_upstream", truncated: true},
		{name: "timeout is a local 504", cluster: "auth", timeout: 50 * time.Millisecond, req: request("GET", "/slow"),
			wantCode: 504, wantBody: "upstream request timeout", details: "upstream_response_timeout"},
		{name: "connect failure is a local 503", cluster: "down", req: request("GET", "/"), wantCode: 503,
			details: "upstream_reset_before_response_started{remote_connection_failure"},
		{name: "unknown cluster is a local 503", cluster: "nope", req: request("GET", "/"), wantCode: 503,
			details: "cluster_not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := router.NewAsyncClient(mgr, store, tc.cluster, router.AsyncOptions{Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, err := c.Send(context.Background(), tc.req, body, tc.maxBody)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if resp.Status() != tc.wantCode {
				t.Errorf("status = %d, want %d", resp.Status(), tc.wantCode)
			}
			if tc.wantBody != "" && string(resp.Body) != tc.wantBody {
				t.Errorf("body = %q, want %q", resp.Body, tc.wantBody)
			}
			if tc.wantHdr[0] != "" && resp.Headers.Get(tc.wantHdr[0]) != tc.wantHdr[1] {
				t.Errorf("%s = %q, want %q", tc.wantHdr[0], resp.Headers.Get(tc.wantHdr[0]), tc.wantHdr[1])
			}
			if !strings.HasPrefix(resp.Details, tc.details) {
				t.Errorf("details = %q, want prefix %q", resp.Details, tc.details)
			}
			if resp.Truncated != tc.truncated {
				t.Errorf("truncated = %v, want %v", resp.Truncated, tc.truncated)
			}
		})
	}
	// Async requests count in the cluster's stats like proxied ones.
	if got := store.Counter("cluster.auth.upstream_rq_total").Value(); got < 4 {
		t.Errorf("cluster.auth.upstream_rq_total = %d, want >= 4", got)
	}
}

func TestAsyncClientContextCancel(t *testing.T) {
	entered := make(chan struct{}, 1)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	mgr, store := asyncManager(t, staticCluster("auth", backend))
	c, err := router.NewAsyncClient(mgr, store, "auth", router.AsyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, request("GET", "/hang"), nil, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, router.ErrAsyncReset) {
			t.Errorf("Send after cancel = %v, want ErrAsyncReset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
	}
}
