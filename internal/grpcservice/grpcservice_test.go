package grpcservice_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	"github.com/herald-proxy/herald/internal/grpcservice"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// healthServer starts a grpc.health.v1 server on loopback and returns its
// address and the metadata of the last call.
func healthServer(t *testing.T) (string, <-chan metadata.MD) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mds := make(chan metadata.MD, 16)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		select {
		case mds <- md:
		default:
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), mds
}

func manager(t *testing.T, name, addr string) *upstream.Manager {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
				}}},
			}}}},
		}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.Apply(ctx, []*clusterv3.Cluster{c}, func(int) string { return "clusters" }); err != nil {
		t.Fatal(err)
	}
	return mgr
}

func envoyGrpc(cluster string) *corev3.GrpcService {
	return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}
}

func TestEnvoyGrpcCallsThroughCluster(t *testing.T) {
	addr, mds := healthServer(t)
	mgr := manager(t, "hc", addr)
	gs := envoyGrpc("hc")
	gs.InitialMetadata = []*corev3.HeaderValue{{Key: "x-tenant", Value: "blue"}}
	gs.Timeout = durationpb.New(2 * time.Second)
	s, err := grpcservice.New(gs, mgr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := s.CallContext(context.Background(), 0)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 2*time.Second {
		t.Errorf("call deadline = %v, %v; want within the service's 2s timeout", dl, ok)
	}
	resp, err := healthpb.NewHealthClient(s.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check through cluster: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status = %v, want SERVING", resp.GetStatus())
	}
	md := <-mds
	if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "blue" {
		t.Errorf("initial_metadata x-tenant = %v, want [blue]", got)
	}
	if got := md.Get(":authority"); len(got) != 1 || got[0] != "hc" {
		t.Errorf(":authority = %v, want the cluster name", got)
	}

	// The same target shares one connection (reloads do not leak).
	s2, err := grpcservice.New(envoyGrpc("hc"), mgr)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Conn != s.Conn {
		t.Error("two services naming the same cluster got different connections")
	}
}

func TestGoogleGrpcTarget(t *testing.T) {
	addr, _ := healthServer(t)
	s, err := grpcservice.New(&corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{
		GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: addr, StatPrefix: "x"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := s.CallContext(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(s.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestUnknownClusterFailsTheCall(t *testing.T) {
	addr, _ := healthServer(t)
	mgr := manager(t, "hc", addr)
	s, err := grpcservice.New(envoyGrpc("missing"), mgr)
	if err != nil {
		t.Fatalf("New must not need the cluster yet (it may come later): %v", err)
	}
	ctx, cancel := s.CallContext(context.Background(), time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(s.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a call to an unknown cluster succeeded")
	}
}

func TestRefusedFields(t *testing.T) {
	tests := []struct {
		name    string
		gs      *corev3.GrpcService
		wantErr string
	}{
		{name: "nil", gs: nil, wantErr: "grpc_service: required"},
		{name: "no target", gs: &corev3.GrpcService{}, wantErr: "target_specifier"},
		{name: "retry policy", gs: &corev3.GrpcService{RetryPolicy: &corev3.RetryPolicy{}, TargetSpecifier: envoyGrpc("a").TargetSpecifier},
			wantErr: "retry_policy: not supported"},
		{name: "channel credentials", gs: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
			TargetUri: "127.0.0.1:1", ChannelCredentials: &corev3.GrpcService_GoogleGrpc_ChannelCredentials{}}}},
			wantErr: "google_grpc.channel_credentials: not supported"},
		{name: "channel args", gs: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
			TargetUri: "127.0.0.1:1", ChannelArgs: &corev3.GrpcService_GoogleGrpc_ChannelArgs{}}}},
			wantErr: "google_grpc.channel_args: not supported"},
	}
	mgr := upstream.NewManager(stats.NewStore())
	t.Cleanup(mgr.Close)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grpcservice.New(tc.gs, mgr)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
