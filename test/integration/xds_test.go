package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	heraldbootstrap "github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/testutil"
)

// xdsNode is the node id herald announces and the snapshot cache keys on.
const xdsNode = "herald-xds-test"

// managementServer is go-control-plane's real xDS server (ADS and the
// per-type services) with a snapshot cache, on 127.0.0.1:0. It records the
// NACKs it receives.
type managementServer struct {
	cache cachev3.SnapshotCache
	addr  string
	cb    serverv3.CallbackFuncs

	srvMu sync.Mutex
	gs    *grpc.Server
	stop  context.CancelFunc

	mu    sync.Mutex
	nacks []*discoveryv3.DiscoveryRequest
}

func startManagementServer(t testing.TB) *managementServer {
	t.Helper()
	ms := &managementServer{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	ms.cb = serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			if r.GetErrorDetail() != nil {
				ms.mu.Lock()
				ms.nacks = append(ms.nacks, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
				ms.mu.Unlock()
			}
			return nil
		},
	}
	ms.serve(t, "127.0.0.1:0")
	t.Cleanup(ms.shutdown)
	return ms
}

// serve starts the gRPC server on addr (127.0.0.1:0 the first time, the
// same address on a restart).
func (ms *managementServer) serve(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	xs := serverv3.NewServer(ctx, ms.cache, ms.cb)
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xs)
	secretservice.RegisterSecretDiscoveryServiceServer(gs, xs)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ms.srvMu.Lock()
	ms.addr, ms.gs, ms.stop = lis.Addr().String(), gs, cancel
	ms.srvMu.Unlock()
	go func() { _ = gs.Serve(lis) }()
}

// shutdown stops the gRPC server, closing every stream.
func (ms *managementServer) shutdown() {
	ms.srvMu.Lock()
	gs, stop := ms.gs, ms.stop
	ms.gs, ms.stop = nil, nil
	ms.srvMu.Unlock()
	if gs != nil {
		gs.Stop()
		stop()
	}
}

// push sets the snapshot herald's node gets; every type gets version
// unless pinned gives the type its own (a control plane that versions
// types separately, so an unchanged type is not resent).
func (ms *managementServer) push(t testing.TB, version string, res map[resourcev3.Type][]types.Resource, pinned ...map[resourcev3.Type]string) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pinned {
		for typ, v := range p {
			snap.Resources[cachev3.GetResponseType(typ)].Version = v
		}
	}
	if err := ms.cache.SetSnapshot(context.Background(), xdsNode, snap); err != nil {
		t.Fatal(err)
	}
}

// nacked returns the NACKs received for typeURL.
func (ms *managementServer) nacked(typeURL string) []*discoveryv3.DiscoveryRequest {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var out []*discoveryv3.DiscoveryRequest
	for _, r := range ms.nacks {
		if r.GetTypeUrl() == typeURL {
			out = append(out, r)
		}
	}
	return out
}

// fromYAML parses an xDS resource written as YAML (with @type in Anys).
func fromYAML[M proto.Message](t testing.TB, m M, y string) M {
	t.Helper()
	if _, err := heraldbootstrap.Unmarshal("resource.yaml", []byte(y), m); err != nil {
		t.Fatalf("bad test resource: %v\n%s", err, y)
	}
	return m
}

// filterChains is a filter_chains block (at indentation 0) with one
// http_connection_manager; routes (route_config or rds) and extra HCM
// fields are indented 6 spaces.
func filterChains(routes, extra string) string {
	return `filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: xds
` + extra + routes + `
      http_filters:
      - name: envoy.filters.http.router
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`
}

// xdsListener is an LDS listener on 127.0.0.1:0 whose routes come from
// RDS (route configuration "routes", over ADS).
func xdsListener(t testing.TB, name, extraHCM string) *listenerv3.Listener {
	return fromYAML(t, &listenerv3.Listener{}, `
name: `+name+`
address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
`+filterChains(`      rds:
        route_config_name: routes
        config_source: { ads: {}, resource_api_version: V3 }`, extraHCM))
}

// routesTo is route configuration "routes": / to cluster, /direct answered
// with body.
func routesTo(t testing.TB, cluster, body string) *routev3.RouteConfiguration {
	return fromYAML(t, &routev3.RouteConfiguration{}, fmt.Sprintf(`
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - match: { prefix: "/direct" }
    direct_response: { status: 200, body: { inline_string: %q } }
  - match: { prefix: "/" }
    route: { cluster: %s }
`, body, cluster))
}

// edsCluster is an EDS cluster over ADS.
func edsCluster(t testing.TB, name string) *clusterv3.Cluster {
	return edsClusterTimeout(t, name, "1s")
}

// edsClusterTimeout is edsCluster with another connect_timeout.
func edsClusterTimeout(t testing.TB, name, timeout string) *clusterv3.Cluster {
	return fromYAML(t, &clusterv3.Cluster{}, `
name: `+name+`
type: EDS
connect_timeout: `+timeout+`
eds_cluster_config:
  eds_config: { ads: {}, resource_api_version: V3 }
`)
}

// assignment is a ClusterLoadAssignment of cluster with one endpoint.
func assignment(t testing.TB, cluster, addr string) *endpointv3.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(addr)
	return fromYAML(t, &endpointv3.ClusterLoadAssignment{}, fmt.Sprintf(`
cluster_name: %s
endpoints:
- lb_endpoints:
  - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }
`, cluster, host, port))
}

// adsBootstrap runs LDS and CDS over ADS to the management server, reached
// through the static cluster xds_cluster (envoy_grpc, HTTP/2 cleartext).
func adsBootstrap(xdsAddr string) string {
	host, port, _ := net.SplitHostPort(xdsAddr)
	return adminBlock + fmt.Sprintf(`node: { id: %s, cluster: test }
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [ { envoy_grpc: { cluster_name: xds_cluster } } ]
  lds_config: { ads: {}, resource_api_version: V3 }
  cds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: xds_cluster
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }
`, xdsNode, host, port)
}

// keepAlive is one client connection that sends requests one at a time.
type keepAlive struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// get sends GET path on the connection and returns the body; it fails the
// test when herald closes the connection.
func (k *keepAlive) get(path string) string {
	k.t.Helper()
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, body := readResponse(k.t, k.r, "GET")
	if resp.Close {
		k.t.Fatalf("GET %s: herald closed the keep-alive connection", path)
	}
	return body
}

func TestXDSOverADS(t *testing.T) {
	t.Parallel()
	ms := startManagementServer(t)
	backendA := testutil.NamedBackend(t, "A")
	backendB := testutil.NamedBackend(t, "B")
	// A CDS cluster named like the static xds_cluster is ignored (Envoy:
	// static resources cannot be changed by xDS).
	decoy := fromYAML(t, &clusterv3.Cluster{}, `
name: xds_cluster
type: STATIC
load_assignment: { cluster_name: xds_cluster, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
`)
	backendCluster := edsCluster(t, "backend")
	// edsVersion, when set, pins the EDS version (not resent).
	edsVersion := ""
	snapshot := func(version, endpoint, directBody string, listeners ...types.Resource) {
		var pinned map[resourcev3.Type]string
		if edsVersion != "" {
			pinned = map[resourcev3.Type]string{resourcev3.EndpointType: edsVersion}
		}
		ms.push(t, version, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: listeners,
			resourcev3.RouteType:    {routesTo(t, "backend", directBody)},
			resourcev3.ClusterType:  {backendCluster, decoy},
			resourcev3.EndpointType: {assignment(t, "backend", endpoint)},
		}, pinned)
	}
	web := xdsListener(t, "web", "")
	snapshot("v1", backendA, "direct-v1", web)

	// testutil.Start waits for LIVE: CDS, EDS, LDS and RDS are in.
	h := testutil.Start(t, adsBootstrap(ms.addr))
	addr := h.ListenerAddr("web")
	c, r := dialHTTP(t, addr)
	k := &keepAlive{t: t, c: c, r: r}
	if got := k.get("/"); got != "A" {
		t.Fatalf("v1: GET / = %q, want A (from the EDS endpoint)", got)
	}

	// EDS: the endpoint moves; the client's connection stays open and its
	// next requests go to the new host.
	snapshot("v2", backendB, "direct-v1", web)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := k.get("/"); got != "B" {
			return fmt.Errorf("after EDS v2: GET / = %q, want B", got)
		}
		return nil
	})
	if got := h.Stat("cluster_manager.cluster_modified"); got > 0 {
		t.Errorf("cluster_manager.cluster_modified = %d: an endpoint change must not rebuild the cluster", got)
	}

	// RDS: a new route table applies to new streams of the same
	// connection; no listener is rebuilt.
	modifiedBefore := h.Stat("listener_manager.listener_modified")
	snapshot("v3", backendB, "direct-v3", web)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := k.get("/direct"); got != "direct-v3" {
			return fmt.Errorf("after RDS v3: GET /direct = %q, want direct-v3", got)
		}
		return nil
	})
	if got := h.Stat("listener_manager.listener_modified"); got != modifiedBefore {
		t.Errorf("listener_manager.listener_modified went %d → %d on a route change", modifiedBefore, got)
	}

	// CDS changes the EDS cluster while EDS stays at v3 (the server does
	// not resend it): the rebuilt cluster gets the assignment the ADS
	// stream already holds at once (no wait for initial_fetch_timeout,
	// 15 s) and serves without a gap.
	backendCluster = edsClusterTimeout(t, "backend", "2s")
	edsVersion = "v3"
	snapshot("v3b", backendB, "direct-v3", web)
	start := time.Now()
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.Stat("cluster_manager.cluster_modified"); got < 1 {
			return fmt.Errorf("cluster_manager.cluster_modified = %d, want 1", got)
		}
		return nil
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the changed EDS cluster took %v to warm; it should use the cached assignment", d)
	}
	if got := k.get("/"); got != "B" {
		t.Errorf("after CDS v3b: GET / = %q, want B", got)
	}

	// A bad listener: the whole LDS update is NACKed with error_detail
	// naming it and the field; the running listener keeps serving.
	bad := xdsListener(t, "bad", "      normalize_path: true\n")
	snapshot("v4", backendB, "direct-v3", web, bad)
	testutil.Eventually(t, 10*time.Second, func() error {
		nacks := ms.nacked(resourcev3.ListenerType)
		if len(nacks) == 0 {
			return fmt.Errorf("no LDS NACK yet")
		}
		msg := nacks[len(nacks)-1].GetErrorDetail().GetMessage()
		if !strings.Contains(msg, `listener "bad"`) || !strings.Contains(msg, "normalize_path") {
			return fmt.Errorf("NACK error_detail = %q, want it to name listener \"bad\" and normalize_path", msg)
		}
		t.Logf("NACK error_detail: %s", msg)
		return nil
	})
	if got := k.get("/direct"); got != "direct-v3" {
		t.Errorf("after the NACK: GET /direct = %q, want direct-v3 (old config serving)", got)
	}
	if got := h.Stat("listener_manager.lds.update_rejected"); got < 1 {
		t.Errorf("listener_manager.lds.update_rejected = %d, want >= 1", got)
	}

	// Admin: dynamic resources with their versions; added_via_api.
	_, dump := h.Admin("GET", "/config_dump")
	dump = strings.Join(strings.Fields(dump), "") // protojson spacing varies
	for _, want := range []string{`"dynamic_listeners"`, `"dynamic_active_clusters"`, `"dynamic_route_configs"`,
		`"version_info":"v3"`, `"version_info":"v1"`, `"last_updated"`, `listener\"bad\"`} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s", want)
		}
	}
	_, eds := h.Admin("GET", "/config_dump?include_eds")
	eds = strings.Join(strings.Fields(eds), "")
	_, bPort, _ := net.SplitHostPort(backendB)
	for _, want := range []string{`"dynamic_endpoint_configs"`, `"port_value":` + bPort, `"static_endpoint_configs"`} {
		if !strings.Contains(eds, want) {
			t.Errorf("/config_dump?include_eds lacks %s", want)
		}
	}
	_, clusters := h.Admin("GET", "/clusters")
	for _, want := range []string{"backend::added_via_api::true", "xds_cluster::added_via_api::false"} {
		if !strings.Contains(clusters, want) {
			t.Errorf("/clusters lacks %q:\n%s", want, clusters)
		}
	}
	if strings.Contains(clusters, "xds_cluster::127.0.0.1:1::") {
		t.Errorf("the CDS cluster xds_cluster replaced the static one:\n%s", clusters)
	}
	if !strings.Contains(h.Output(), "a static resource has this name") {
		t.Errorf("no warning about the CDS cluster named like a static one:\n%s", h.Output())
	}
}

// writeAtomic replaces path by renaming a new file over it, as Envoy's
// filesystem subscriptions expect.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestXDSFilesystem(t *testing.T) {
	t.Parallel()
	backendA := testutil.NamedBackend(t, "A")
	backendB := testutil.NamedBackend(t, "B")
	dir := t.TempDir()
	lds, cds := filepath.Join(dir, "lds.yaml"), filepath.Join(dir, "cds.yaml")
	ldsFile := func(version, extraHCM string) string {
		return `version_info: "` + version + `"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: fs
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
  ` + strings.ReplaceAll(filterChains(`      route_config:
        virtual_hosts: [ { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: fsback } } ] } ]`, extraHCM), "\n", "\n  ")
	}
	cdsFile := func(version, backend string) string {
		host, port, _ := net.SplitHostPort(backend)
		return fmt.Sprintf(`version_info: "%s"
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: fsback
  type: STATIC
  connect_timeout: 1s
  load_assignment:
    cluster_name: fsback
    endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: %q, port_value: %s } } } } ] } ]
`, version, host, port)
	}
	writeAtomic(t, lds, ldsFile("1", ""))
	writeAtomic(t, cds, cdsFile("1", backendA))
	h := testutil.Start(t, adminBlock+fmt.Sprintf(`dynamic_resources:
  lds_config: { path_config_source: { path: %q }, resource_api_version: V3 }
  cds_config: { path: %q, resource_api_version: V3 }
`, lds, cds))
	addr := h.ListenerAddr("fs")
	if body, err := getBody(addr, "/"); err != nil || body != "A" {
		t.Fatalf("GET / = %q, %v; want A", body, err)
	}

	// A new CDS file moved into place changes the cluster's endpoint.
	writeAtomic(t, cds, cdsFile("2", backendB))
	testutil.Eventually(t, 10*time.Second, func() error {
		if body, err := getBody(addr, "/"); err != nil || body != "B" {
			return fmt.Errorf("after cds v2: GET / = %q, %v; want B", body, err)
		}
		return nil
	})

	// A bad LDS file is rejected; the listener keeps serving.
	writeAtomic(t, lds, ldsFile("2", "      normalize_path: true\n"))
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := h.Stat("listener_manager.lds.update_rejected"); got < 1 {
			return fmt.Errorf("listener_manager.lds.update_rejected = %d, want 1", got)
		}
		return nil
	})
	if body, err := getBody(addr, "/"); err != nil || body != "B" {
		t.Errorf("after the rejected lds v2: GET / = %q, %v; want B", body, err)
	}
	if !strings.Contains(h.Output(), `listener \"fs\"`) && !strings.Contains(h.Output(), `listener "fs"`) {
		t.Errorf("the rejection log does not name listener \"fs\":\n%s", h.Output())
	}
}

// TestXDSPerTypeStreams: LDS and CDS on their own state-of-the-world
// streams, EDS on a delta stream, all through envoy_grpc.
func TestXDSPerTypeStreams(t *testing.T) {
	t.Parallel()
	ms := startManagementServer(t)
	backendA := testutil.NamedBackend(t, "A")
	backendB := testutil.NamedBackend(t, "B")
	api := func(apiType string) string {
		return `{ resource_api_version: V3, api_config_source: { api_type: ` + apiType +
			`, transport_api_version: V3, grpc_services: [ { envoy_grpc: { cluster_name: xds_cluster } } ] } }`
	}
	cluster := fromYAML(t, &clusterv3.Cluster{}, `
name: backend
type: EDS
connect_timeout: 1s
eds_cluster_config:
  service_name: backend-eds
  eds_config: `+api("DELTA_GRPC")+`
`)
	web := fromYAML(t, &listenerv3.Listener{}, `
name: web
address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
`+filterChains(`      route_config:
        virtual_hosts: [ { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] } ]`, ""))
	snapshot := func(version, endpoint string) {
		ms.push(t, version, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {web},
			resourcev3.ClusterType:  {cluster},
			resourcev3.EndpointType: {assignment(t, "backend-eds", endpoint)},
		})
	}
	snapshot("v1", backendA)
	cfg := strings.Replace(adsBootstrap(ms.addr), `  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [ { envoy_grpc: { cluster_name: xds_cluster } } ]
  lds_config: { ads: {}, resource_api_version: V3 }
  cds_config: { ads: {}, resource_api_version: V3 }
`, "  lds_config: "+api("GRPC")+"\n  cds_config: "+api("GRPC")+"\n", 1)
	if strings.Contains(cfg, "ads_config") || strings.Contains(cfg, "ads: {}") {
		t.Fatalf("the bootstrap still uses ADS:\n%s", cfg)
	}
	// The node id the control plane knows comes from --service-node, over
	// the bootstrap's.
	cfg = strings.Replace(cfg, "node: { id: "+xdsNode, "node: { id: from-bootstrap", 1)
	if !strings.Contains(cfg, "from-bootstrap") {
		t.Fatalf("node id not replaced:\n%s", cfg)
	}
	h := testutil.Start(t, cfg, "--service-node", xdsNode)
	addr := h.ListenerAddr("web")
	c, r := dialHTTP(t, addr)
	k := &keepAlive{t: t, c: c, r: r}
	if got := k.get("/"); got != "A" {
		t.Fatalf("v1: GET / = %q, want A", got)
	}
	snapshot("v2", backendB)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := k.get("/"); got != "B" {
			return fmt.Errorf("after EDS v2: GET / = %q, want B", got)
		}
		return nil
	})
	if got := h.Stat("cluster.backend.update_success"); got < 2 {
		t.Errorf("cluster.backend.update_success = %d, want >= 2 (the EDS subscription's)", got)
	}
}

// TestXDSControlPlaneRestart: the management server goes away; herald
// keeps serving its last accepted config, reconnects (with backoff) when
// the server is back on the same address, and applies the snapshot it
// holds then.
func TestXDSControlPlaneRestart(t *testing.T) {
	t.Parallel()
	ms := startManagementServer(t)
	backendA := testutil.NamedBackend(t, "A")
	backendB := testutil.NamedBackend(t, "B")
	push := func(version, endpoint string) {
		ms.push(t, version, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {xdsListener(t, "web", "")},
			resourcev3.RouteType:    {routesTo(t, "backend", "direct")},
			resourcev3.ClusterType:  {edsCluster(t, "backend")},
			resourcev3.EndpointType: {assignment(t, "backend", endpoint)},
		})
	}
	push("v1", backendA)
	h := testutil.Start(t, adsBootstrap(ms.addr))
	addr := h.ListenerAddr("web")
	if body, err := getBody(addr, "/"); err != nil || body != "A" {
		t.Fatalf("v1: GET / = %q, %v; want A", body, err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := h.Stat("control_plane.connected_state"); v != 1 {
			return fmt.Errorf("control_plane.connected_state = %d, want 1", v)
		}
		return nil
	})

	// The control plane goes down: herald notices, and keeps serving.
	ms.shutdown()
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := h.Stat("control_plane.connected_state"); v != 0 {
			return fmt.Errorf("control_plane.connected_state = %d, want 0 after the server stopped", v)
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		if body, err := getBody(addr, "/"); err != nil || body != "A" {
			t.Fatalf("while the control plane is down: GET / = %q, %v; want A (last good config)", body, err)
		}
	}

	// It comes back on the same address with a newer snapshot.
	push("v2", backendB)
	ms.serve(t, ms.addr)
	testutil.Eventually(t, 20*time.Second, func() error {
		if body, err := getBody(addr, "/"); err != nil || body != "B" {
			return fmt.Errorf("after the restart: GET / = %q, %v; want B", body, err)
		}
		return nil
	})
	if v := h.Stat("control_plane.connected_state"); v != 1 {
		t.Errorf("control_plane.connected_state = %d after reconnecting, want 1", v)
	}
}
