package extauthz

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

// authServer answers every check with respond and keeps the last request.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	respond func() (*authv3.CheckResponse, error)
	last    chan *authv3.CheckRequest
}

func (s *authServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	select {
	case s.last <- req:
	default:
	}
	return s.respond()
}

func start(t *testing.T, s *authServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func build(t *testing.T, yaml string, store *stats.Store) (netfilter.Filter, error) {
	t.Helper()
	cfg := &extauthznetv3.ExtAuthz{}
	if _, err := bootstrap.Unmarshal("f.yaml", []byte(yaml), cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateAll(); err != nil {
		t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
	}
	return Build(cfg, netfilter.BuildContext{Path: path, Stats: store})
}

func TestRegistered(t *testing.T) {
	if e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&extauthznetv3.ExtAuthz{})); !ok || e.Name != Name {
		t.Fatalf("registered as %v, %v; want %s", e, ok, Name)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "peer certificate refused", config: "stat_prefix: a\ngrpc_service: {google_grpc: {target_uri: x, stat_prefix: s}}\ninclude_peer_certificate: true", wantErr: ".include_peer_certificate: include_peer_certificate is not supported by herald yet (#8)"},
		{name: "v2 refused", config: "stat_prefix: a\ngrpc_service: {google_grpc: {target_uri: x, stat_prefix: s}}\ntransport_api_version: V2", wantErr: ".transport_api_version: only V3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, tc.config, stats.NewStore())
			if err == nil || !strings.Contains(err.Error(), path+tc.wantErr) {
				t.Fatalf("Build error %v, want it to contain %q", err, path+tc.wantErr)
			}
		})
	}
}

func TestOnNewConnection(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		respond   func() (*authv3.CheckResponse, error)
		want      bool
		wantStats map[string]uint64
	}{
		{
			name:      "ok",
			respond:   func() (*authv3.CheckResponse, error) { return &authv3.CheckResponse{Status: &status.Status{}}, nil },
			want:      true,
			wantStats: map[string]uint64{"total": 1, "ok": 1, "cx_closed": 0},
		},
		{
			name: "denied",
			respond: func() (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
			},
			wantStats: map[string]uint64{"total": 1, "denied": 1, "cx_closed": 1},
		},
		{
			name:      "error",
			respond:   func() (*authv3.CheckResponse, error) { return nil, grpcstatus.Error(codes.Unavailable, "down") },
			wantStats: map[string]uint64{"total": 1, "error": 1, "cx_closed": 1},
		},
		{
			name:      "error with failure_mode_allow",
			extra:     "failure_mode_allow: true",
			respond:   func() (*authv3.CheckResponse, error) { return nil, grpcstatus.Error(codes.Unavailable, "down") },
			want:      true,
			wantStats: map[string]uint64{"total": 1, "error": 1, "failure_mode_allowed": 1, "cx_closed": 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &authServer{respond: tc.respond, last: make(chan *authv3.CheckRequest, 1)}
			addr := start(t, srv)
			store := stats.NewStore()
			f, err := build(t, "stat_prefix: tcp\ninclude_tls_session: true\ngrpc_service: {google_grpc: {target_uri: \""+addr+"\", stat_prefix: s}, timeout: 2s}\n"+tc.extra, store)
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			c := network.NewConn(context.Background(), a, nil)
			c.Remote = netip.MustParseAddrPort("127.0.0.1:4000")
			c.Local = netip.MustParseAddrPort("127.0.0.1:10000")
			c.ServerName = "app.example"
			if got := f.(netfilter.ConnectionFilter).OnNewConnection(c); got != tc.want {
				t.Errorf("OnNewConnection = %v, want %v", got, tc.want)
			}
			for name, want := range tc.wantStats {
				if got := store.Counter("ext_authz.tcp." + name).Value(); got != want {
					t.Errorf("ext_authz.tcp.%s = %d, want %d", name, got, want)
				}
			}
			if g := store.Gauge("ext_authz.tcp.active").Value(); g != 0 {
				t.Errorf("active = %d, want 0", g)
			}
			select {
			case req := <-srv.last:
				at := req.GetAttributes()
				if got := at.GetSource().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 4000 {
					t.Errorf("source address %v, want 127.0.0.1:4000", got)
				}
				if got := at.GetDestination().GetAddress().GetSocketAddress(); got.GetPortValue() != 10000 {
					t.Errorf("destination address %v, want port 10000", got)
				}
				if at.GetDestination().GetService() != "app.example" || at.GetTlsSession().GetSni() != "app.example" {
					t.Errorf("destination service %q / sni %q, want app.example", at.GetDestination().GetService(), at.GetTlsSession().GetSni())
				}
			default:
				t.Errorf("the service saw no request")
			}
		})
	}
}
