package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

// TestMain fails the package when a test leaves a goroutine of this
// package, grpc or go-control-plane running (grpc-go's leak check idea).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(10 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func checkLeaks(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "xds.TestMain") || strings.Contains(g, "xds.checkLeaks") {
				continue
			}
			if strings.Contains(g, "herald/internal/xds.") || strings.Contains(g, "google.golang.org/grpc") ||
				strings.Contains(g, "go-control-plane/pkg") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked goroutines:\n%s", strings.Join(leaked, "\n\n"))
		}
		// Polling interval for goroutines to finish, not a wait for an event.
		time.Sleep(10 * time.Millisecond)
	}
}

const testNode = "herald-test"

var fastBackoff = &backoffConfig{base: 20 * time.Millisecond, max: 200 * time.Millisecond}

// controlPlane is go-control-plane's real xDS server with a snapshot
// cache, on loopback, recording every request it receives.
type controlPlane struct {
	t     *testing.T
	cache cachev3.SnapshotCache
	addr  atomic.Value // string
	srv   *grpc.Server

	mu       sync.Mutex
	sotw     []*discoveryv3.DiscoveryRequest
	delta    []*discoveryv3.DeltaDiscoveryRequest
	raw      []*discoveryv3.DiscoveryRequest
	streams  int
	stopOnce sync.Once
}

func newControlPlane(t *testing.T, ads bool) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, cache: cachev3.NewSnapshotCache(ads, cachev3.IDHash{}, nil)}
	cp.start()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *controlPlane) start() {
	cp.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cp.t.Fatal(err)
	}
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			cp.mu.Lock()
			cp.streams++
			cp.mu.Unlock()
			return nil
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			cp.mu.Lock()
			cp.streams++
			cp.mu.Unlock()
			return nil
		},
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			cp.mu.Lock()
			cp.sotw = append(cp.sotw, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
			cp.mu.Unlock()
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			cp.mu.Lock()
			cp.delta = append(cp.delta, proto.Clone(r).(*discoveryv3.DeltaDiscoveryRequest))
			cp.mu.Unlock()
			return nil
		},
	}
	xs := serverv3.NewServer(context.Background(), cp.cache, cb)
	// Requests as they came off the wire: go-control-plane fills the node
	// into later requests of a stream before its callbacks see them.
	gs := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, &rawRecorder{ServerStream: ss, cp: cp})
	}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	routeservice.RegisterScopedRoutesDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, xs)
	cp.srv = gs
	cp.addr.Store(lis.Addr().String())
	go func() { _ = gs.Serve(lis) }()
}

type rawRecorder struct {
	grpc.ServerStream
	cp *controlPlane
}

func (r *rawRecorder) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if req, ok := m.(*discoveryv3.DiscoveryRequest); ok && err == nil {
		r.cp.mu.Lock()
		r.cp.raw = append(r.cp.raw, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
		r.cp.mu.Unlock()
	}
	return err
}

func (cp *controlPlane) rawRequests() []*discoveryv3.DiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), cp.raw...)
}

func (cp *controlPlane) stop() { cp.srv.Stop() }

// restart stops the server (closing every stream) and serves the same
// cache on a new port.
func (cp *controlPlane) restart() {
	cp.srv.Stop()
	cp.start()
}

func (cp *controlPlane) dial(ctx context.Context, cluster string) (net.Conn, error) {
	if cluster != "xds_cluster" {
		return nil, fmt.Errorf("unknown cluster %q", cluster)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", cp.addr.Load().(string))
}

func (cp *controlPlane) set(version string, res map[string][]types.Resource) {
	cp.t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *controlPlane) sotwRequests() []*discoveryv3.DiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), cp.sotw...)
}

func (cp *controlPlane) deltaRequests() []*discoveryv3.DeltaDiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryRequest(nil), cp.delta...)
}

func (cp *controlPlane) streamCount() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.streams
}

// waitSotw waits for a request the server saw that matches.
func (cp *controlPlane) waitSotw(t *testing.T, what string, match func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	var got *discoveryv3.DiscoveryRequest
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, r := range cp.sotwRequests() {
			if match(r) {
				got = r
				return nil
			}
		}
		return fmt.Errorf("server saw no %s", what)
	})
	return got
}

func (cp *controlPlane) waitDelta(t *testing.T, what string, match func(*discoveryv3.DeltaDiscoveryRequest) bool) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	var got *discoveryv3.DeltaDiscoveryRequest
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, r := range cp.deltaRequests() {
			if match(r) {
				got = r
				return nil
			}
		}
		return fmt.Errorf("server saw no %s", what)
	})
	return got
}

// recorder is an Apply callback that keeps every update and can fail.
type recorder struct {
	mu      sync.Mutex
	updates []Update
	fail    func(Update) error
}

func (r *recorder) callbacks() Callbacks { return Callbacks{Apply: r.apply} }

func (r *recorder) apply(u Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(u); err != nil {
			return err
		}
	}
	r.updates = append(r.updates, u)
	return nil
}

func (r *recorder) setFail(f func(Update) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// waitVersion waits for an accepted update with version_info v.
func (r *recorder) waitVersion(t *testing.T, v string) Update {
	t.Helper()
	var got Update
	testutil.Eventually(t, 5*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, u := range r.updates {
			if u.VersionInfo == v {
				got = u
				return nil
			}
		}
		return fmt.Errorf("no update with version %q among %d", v, len(r.updates))
	})
	return got
}

func (r *recorder) lastUpdate() (Update, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.updates) == 0 {
		return Update{}, false
	}
	return r.updates[len(r.updates)-1], true
}

func resourceNames(rs []*Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func cluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
	}
}

func endpoints(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}}},
			}},
		}}}},
	}
}

func listener(name string, port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	}
}

func routeConfig(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name: "vh", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}},
		}},
	}
}

// newTestClient is a client on cp with fast reconnects.
func newTestClient(t *testing.T, cp *controlPlane, ads *corev3.ApiConfigSource, st *stats.Store) *Client {
	t.Helper()
	c, err := NewClient(ads, Options{
		Node:        &corev3.Node{Id: testNode, Cluster: "test"},
		DialCluster: cp.dial,
		Stats:       st,
		Logger:      slog.New(slog.DiscardHandler),
		backoff:     fastBackoff,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func envoyGrpc(apiType corev3.ApiConfigSource_ApiType) *corev3.ApiConfigSource {
	return &corev3.ApiConfigSource{
		ApiType:             apiType,
		TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds_cluster"},
		}}},
	}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func apiSource(api *corev3.ApiConfigSource) *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: api},
	}
}

// subscribe starts a subscription stopped at cleanup.
func subscribe(t *testing.T, c *Client, src *corev3.ConfigSource, typeURL string, names []string, rec *recorder, sc stats.Scope) Subscription {
	t.Helper()
	s, err := c.Subscribe(src, typeURL, names, rec.callbacks(), sc)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	return s
}

func waitReady(t *testing.T, s Subscription) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not ready")
	}
}

func counter(st *stats.Store, name string) uint64 { return st.Counter(name).Value() }

var errBoom = errors.New("boom")
