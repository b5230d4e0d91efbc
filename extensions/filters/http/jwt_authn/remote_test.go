package jwtauthn

import (
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/durationpb"

	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream"
)

// jwksServer serves body (under lock, so a test can change it) on
// /jwks.json and counts the fetches.
type jwksServer struct {
	mu      sync.Mutex
	body    string
	status  int
	fetches atomic.Int64
	addr    string
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	s := &jwksServer{body: body, status: 200}
	s.addr = testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path != "/jwks.json" || r.Host != "keys.example.com" {
			w.WriteHeader(404)
			return
		}
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	return s
}

func (s *jwksServer) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// jwksCluster applies a STATIC cluster "jwks" pointing at addr.
func jwksCluster(t *testing.T, addr string) (*upstream.Manager, *stats.Store) {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	cl := &clusterv3.Cluster{
		Name:                 "jwks",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: "jwks",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
					}}},
				}},
			}}}},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.Apply(ctx, []*clusterv3.Cluster{cl}, func(int) string { return "clusters" }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return mgr, store
}

func buildRemote(t *testing.T, mgr *upstream.Manager, store *stats.Store, cacheDuration string) *Config {
	t.Helper()
	yaml := fmt.Sprintf(`providers:
  p:
    issuer: iss
    remote_jwks:
      http_uri: {uri: "http://keys.example.com/jwks.json", cluster: jwks, timeout: 2s}
      %s
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, cacheDuration)
	cfg := httpfiltertest.Parse(t, yaml, &jwtauthnv3.JwtAuthentication{})
	ctx := httpfiltertest.BuildContext(Name, store)
	ctx.Clusters = mgr
	f, err := Build(cfg, ctx)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c := f(&httpfiltertest.Callbacks{}).(*Filter).cfg
	return c
}

func TestRemoteJwks(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	srv := newJWKSServer(t, jwks(t, s))
	mgr, store := jwksCluster(t, srv.addr)
	c := buildRemote(t, mgr, store, "cache_duration: 60s")
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	c.now = func() time.Time { return time.Unix(clock.Load(), 0) }
	good := func() []string {
		cl := claims("iss", nil)
		cl["exp"] = clock.Load() + 3600
		return []string{"authorization", "Bearer " + s.sign(t, cl)}
	}

	for i := range 3 {
		if o, _ := run(t, c, req("/", good()...), nil); o.status != httpfilter.Continue {
			t.Fatalf("request %d: got %+v, want allowed", i, o)
		}
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches after 3 requests = %d, want 1 (cached)", got)
	}

	// Concurrent streams share the cache without refetching.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if o, _ := run(t, c, req("/", good()...), nil); o.status != httpfilter.Continue {
				t.Errorf("concurrent request: got %+v, want allowed", o)
			}
		})
	}
	wg.Wait()
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches after concurrent requests = %d, want 1", got)
	}

	// After cache_duration the next request fetches again; a failed fetch
	// is "Jwks remote fetch is failed" and is not cached.
	srv.set(500, "down")
	clock.Add(61)
	o, _ := run(t, c, req("/", good()...), nil)
	if o.code != 401 || o.body != "Jwks remote fetch is failed" {
		t.Fatalf("after expiry with the server down: got %d %q, want 401 %q", o.code, o.body, "Jwks remote fetch is failed")
	}
	srv.set(200, "not a jwks")
	if o, _ := run(t, c, req("/", good()...), nil); o.code != 401 || o.body != "Jwks remote fetch is failed" {
		t.Fatalf("invalid JWKS body: got %d %q, want 401", o.code, o.body)
	}
	srv.set(200, jwks(t, s))
	if o, _ := run(t, c, req("/", good()...), nil); o.status != httpfilter.Continue {
		t.Fatalf("after recovery: got %+v, want allowed", o)
	}
	if got := srv.fetches.Load(); got != 4 {
		t.Errorf("fetches = %d, want 4", got)
	}
	for name, want := range map[string]uint64{"jwks_fetch_success": 2, "jwks_fetch_failed": 2} {
		if got := store.Counter("http.ingress.jwt_authn." + name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// The fetch went through the cluster, with its stats.
	if got := store.Counter("cluster.jwks.upstream_rq_total").Value(); got != 4 {
		t.Errorf("cluster.jwks.upstream_rq_total = %d, want 4", got)
	}
}

func TestRemoteJwksUnknownCluster(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	srv := newJWKSServer(t, jwks(t, s))
	mgr, store := jwksCluster(t, srv.addr)
	yaml := `providers: {p: {remote_jwks: {http_uri: {uri: "http://keys.example.com/jwks.json", cluster: missing, timeout: 1s}}}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`
	cfg := httpfiltertest.Parse(t, yaml, &jwtauthnv3.JwtAuthentication{})
	ctx := httpfiltertest.BuildContext(Name, store)
	ctx.Clusters = mgr
	f, err := Build(cfg, ctx)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c := f(&httpfiltertest.Callbacks{}).(*Filter).cfg
	c.now = func() time.Time { return testNow }
	o, _ := run(t, c, req("/", "authorization", "Bearer "+s.sign(t, claims("iss", nil))), nil)
	if o.code != 401 || o.body != "Jwks remote fetch is failed" {
		t.Errorf("got %d %q, want 401 %q", o.code, o.body, "Jwks remote fetch is failed")
	}
}

// Streams that find the cache empty at the same time share one fetch.
func TestRemoteJwksSharedFetch(t *testing.T) {
	s := newSigner(t, jose.ES256, "k")
	srv := newJWKSServer(t, jwks(t, s))
	mgr, store := jwksCluster(t, srv.addr)
	c := buildRemote(t, mgr, store, "")
	c.now = func() time.Time { return testNow }
	tok := s.sign(t, claims("iss", nil))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if o, _ := run(t, c, req("/", "authorization", "Bearer "+tok), nil); o.status != httpfilter.Continue {
				t.Errorf("got %+v, want allowed", o)
			}
		})
	}
	wg.Wait()
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
	if got := store.Counter("http.ingress.jwt_authn.jwks_fetch_success").Value(); got != 1 {
		t.Errorf("jwks_fetch_success = %d, want 1", got)
	}
}
