package upstream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/tcp/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

func parseClusters(t *testing.T, y string) []*clusterv3.Cluster {
	t.Helper()
	var raw []any
	if err := yaml.Unmarshal([]byte(y), &raw); err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	var out []*clusterv3.Cluster
	for _, r := range raw {
		b, err := yaml.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		c := &clusterv3.Cluster{}
		if err := protojson.Unmarshal(js, c); err != nil {
			t.Fatalf("bad test cluster: %v", err)
		}
		out = append(out, c)
	}
	return out
}

func prefix(i int) string { return fmt.Sprintf("static_resources.clusters[%d]", i) }

func newTestManager(t *testing.T, opts ...Option) (*Manager, *stats.Store) {
	t.Helper()
	st := stats.NewStore()
	m := NewManager(st, append([]Option{WithRand(func() uint64 { return 0 })}, opts...)...)
	t.Cleanup(m.Close)
	return m, st
}

func endpoint(addr string) string {
	return fmt.Sprintf(`{endpoint: {address: {socket_address: {address: %q, port_value: 8080}}}}`, strings.Split(addr, ":")[0])
}

func staticCluster(name string, addrs ...string) string {
	eps := make([]string, len(addrs))
	for i, a := range addrs {
		eps[i] = endpoint(a)
	}
	return fmt.Sprintf(`
- name: %s
  connect_timeout: 0.25s
  load_assignment:
    cluster_name: %s
    endpoints:
    - lb_endpoints: [%s]
`, name, name, strings.Join(eps, ", "))
}

func TestApplyKeepsUnchangedAndSwapsChanged(t *testing.T) {
	m, st := newTestManager(t)
	ctx := context.Background()
	if err := m.Apply(ctx, parseClusters(t, staticCluster("a", "10.0.0.1")+staticCluster("b", "10.0.0.2")+staticCluster("c", "10.0.0.3")), prefix); err != nil {
		t.Fatal(err)
	}
	a, b, c := m.Cluster("a"), m.Cluster("b"), m.Cluster("c")
	if a == nil || b == nil || c == nil {
		t.Fatal("clusters missing after Apply")
	}
	hostA := a.Pick(nil)
	pooled := &fakeConn{}
	hostA.Idle().Put(pooled)
	cPooled := &fakeConn{}
	c.Pick(nil).Idle().Put(cPooled)

	// a unchanged, b changed, c removed, d added.
	if err := m.Apply(ctx, parseClusters(t, staticCluster("a", "10.0.0.1")+staticCluster("b", "10.0.0.9")+staticCluster("d", "10.0.0.4")), prefix); err != nil {
		t.Fatal(err)
	}
	if m.Cluster("a") != a {
		t.Error("unchanged cluster a was rebuilt")
	}
	if m.Cluster("a").Pick(nil) != hostA || hostA.Idle().Len() != 1 || pooled.closed.Load() {
		t.Error("unchanged cluster a lost its host or pooled connection")
	}
	if nb := m.Cluster("b"); nb == b || nb.Pick(nil).Address() != "10.0.0.9:8080" {
		t.Errorf("changed cluster b not swapped: %v", nb.Pick(nil).Address())
	}
	if m.Cluster("c") != nil {
		t.Error("removed cluster c still served")
	}
	if !cPooled.closed.Load() {
		t.Error("removed cluster c's idle connection not closed")
	}
	if m.Cluster("d") == nil {
		t.Error("added cluster d missing")
	}
	for name, want := range map[string]uint64{
		"cluster_manager.cluster_added":    4,
		"cluster_manager.cluster_modified": 1,
		"cluster_manager.cluster_removed":  1,
	} {
		if got := st.Counter(name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := st.Gauge("cluster_manager.active_clusters").Value(); got != 3 {
		t.Errorf("active_clusters = %d, want 3", got)
	}
}

func TestApplyStopsRemovedWorkers(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("gone", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	ctx := startedCtx("gone")
	if ctx.Err() != nil {
		t.Fatal("worker context done before removal")
	}
	if err := m.Apply(context.Background(), nil, prefix); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == nil {
		t.Error("removed cluster's worker context still live")
	}
}

func TestApplyErrorChangesNothing(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	a := m.Cluster("a")
	bad := staticCluster("a", "10.0.0.5") + staticCluster("b", "10.0.0.2") + `
- name: c
  load_assignment:
    endpoints:
    - priority: 1000
      lb_endpoints: []
`
	err := m.Apply(context.Background(), parseClusters(t, bad), prefix)
	if err == nil {
		t.Fatal("Apply accepted a bad cluster")
	}
	if want := "static_resources.clusters[2].load_assignment.endpoints[0].priority: priority 1000 is above herald's limit 127"; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want %q", err, want)
	}
	if m.Cluster("a") != a || m.Cluster("b") != nil {
		t.Error("a failed Apply changed the running clusters")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "eds", yaml: `- {name: a, type: EDS}`, wantErr: "static_resources.clusters[0].type: type EDS is not supported by herald yet"},
		{name: "original dst", yaml: `- {name: a, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED}`, wantErr: "type ORIGINAL_DST is not supported by herald yet"},
		{name: "unknown cluster_type", yaml: `- {name: a, cluster_type: {name: envoy.clusters.aggregate}}`, wantErr: `static_resources.clusters[0].cluster_type: cluster type "envoy.clusters.aggregate" is not supported by herald yet`},
		{name: "cluster provided", yaml: `- {name: a, lb_policy: CLUSTER_PROVIDED}`, wantErr: "static_resources.clusters[0].lb_policy: lb_policy CLUSTER_PROVIDED is not supported by herald yet (issue #4)"},
		{name: "unsupported field", yaml: `- {name: a, cleanup_interval: 1s}`, wantErr: "static_resources.clusters[0].cleanup_interval: not supported by herald yet"},
		{name: "auto_config", yaml: `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      auto_config: {}
`, wantErr: `static_resources.clusters[0].transport_socket: ALPN configured for cluster a which has a non-ALPN transport socket`},
		{name: "tcp protocol options", yaml: `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions
`, wantErr: `protocol options "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"`},
		{name: "unknown upstream transport socket", yaml: `
- name: a
  transport_socket:
    name: envoy.transport_sockets.alts
`, wantErr: `static_resources.clusters[0].transport_socket.name: upstream transport socket "envoy.transport_sockets.alts" is not supported by herald`},
		{name: "duplicate", yaml: `[{name: a}, {name: a}]`, wantErr: `static_resources.clusters[1].name: duplicate cluster name "a"`},
		{name: "no policy known", yaml: `
- name: a
  load_balancing_policy:
    policies:
    - typed_extension_config:
        name: envoy.load_balancing_policies.client_side_weighted_round_robin
        typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin}
`, wantErr: `static_resources.clusters[0].load_balancing_policy.policies: none of the policies ["envoy.load_balancing_policies.client_side_weighted_round_robin"] is supported by herald yet`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Apply error = %v, want %q", err, tc.wantErr)
			}
			var l configerr.List
			if !errorsAs(err, &l) {
				t.Errorf("error is %T, want configerr.List", err)
			}
		})
	}
}

func errorsAs(err error, l *configerr.List) bool {
	v, ok := err.(configerr.List)
	*l = v
	return ok
}

func TestLBPolicyNormalisation(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantPath string
	}{
		// lb_policy defaults to ROUND_ROBIN and becomes the typed extension.
		{name: "default", yaml: `- {name: a}`, wantPath: "static_resources.clusters[0].round_robin_lb_config"},
		{name: "legacy enum", yaml: `- {name: a, lb_policy: ROUND_ROBIN}`, wantPath: "static_resources.clusters[0].round_robin_lb_config"},
		// The first policy herald knows wins.
		{name: "typed list", yaml: `
- name: a
  load_balancing_policy:
    policies:
    - typed_extension_config:
        name: cswrr
        typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin}
    - typed_extension_config:
        name: rr
        typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin}
`, wantPath: "static_resources.clusters[0].load_balancing_policy.policies[1].typed_extension_config.typed_config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rrBuilds.Clear()
			m, _ := newTestManager(t)
			if err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix); err != nil {
				t.Fatal(err)
			}
			cfg, ok := rrBuilds.Load(tc.wantPath)
			if !ok {
				t.Fatalf("round robin not built at %s", tc.wantPath)
			}
			if diff := cmp.Diff(&roundrobinv3.RoundRobin{}, cfg, protocmp.Transform()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	m, _ := newTestManager(t)
	y := `
- name: backend_service
  connect_timeout: 0.25s
  outlier_detection: {consecutive_5xx: 5}
  circuit_breakers:
    thresholds:
    - {priority: HIGH, max_connections: 100, max_pending_requests: 10, max_requests: 50}
`
	if err := m.Apply(context.Background(), parseClusters(t, y), prefix); err != nil {
		t.Fatal(err)
	}
	// outlier_detection used to be accepted with a warning; it runs now.
	if w := m.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %v, want none", w)
	}
	c := m.Cluster("backend_service")
	if !c.OutlierDetected() {
		t.Error("outlier detection not running")
	}
	if got, want := c.Thresholds(true), (Thresholds{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 50, MaxRetries: 3}); got != want {
		t.Errorf("high thresholds = %+v, want %+v", got, want)
	}
	if got := c.Thresholds(false); got != defaultThresholds {
		t.Errorf("default thresholds = %+v, want Envoy's defaults", got)
	}
	if err := m.Apply(context.Background(), parseClusters(t, y), prefix); err != nil {
		t.Fatal(err)
	}
	if len(m.Warnings()) != 0 {
		t.Errorf("Warnings after re-apply = %v", m.Warnings())
	}
}

func TestClusterOptions(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		protocol    HTTPProtocol
		idle        time.Duration
		connect     time.Duration
		bufferLimit int
		maxRequests uint32
	}{
		{name: "defaults", yaml: `- {name: a}`, protocol: HTTP1, idle: time.Hour, connect: 5 * time.Second, bufferLimit: 1 << 20},
		{name: "deprecated http2 field", yaml: `- {name: a, http2_protocol_options: {}, connect_timeout: 1s, per_connection_buffer_limit_bytes: 4096}`,
			protocol: HTTP2, idle: time.Hour, connect: time.Second, bufferLimit: 4096},
		{name: "explicit h2", yaml: `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      common_http_protocol_options: {idle_timeout: 30s, max_requests_per_connection: 100}
      explicit_http_config: {http2_protocol_options: {}}
`, protocol: HTTP2, idle: 30 * time.Second, connect: 5 * time.Second, bufferLimit: 1 << 20, maxRequests: 100},
		{name: "explicit h1", yaml: `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: {http_protocol_options: {}}
`, protocol: HTTP1, idle: time.Hour, connect: 5 * time.Second, bufferLimit: 1 << 20},
		{name: "use downstream", yaml: `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      use_downstream_protocol_config: {}
`, protocol: UseDownstream, idle: time.Hour, connect: 5 * time.Second, bufferLimit: 1 << 20},
		// idle_timeout 0 disables the timeout.
		{name: "idle disabled", yaml: `- {name: a, common_http_protocol_options: {idle_timeout: 0s}}`, protocol: HTTP1, connect: 5 * time.Second, bufferLimit: 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			if err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix); err != nil {
				t.Fatal(err)
			}
			c := m.Cluster("a")
			got := []any{c.HTTPProtocol(), c.IdleTimeout(), c.ConnectTimeout(), c.BufferLimit(), c.MaxRequestsPerConnection()}
			want := []any{tc.protocol, tc.idle, tc.connect, tc.bufferLimit, tc.maxRequests}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("protocol, idle, connect, buffer, max requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMembershipUpdate(t *testing.T) {
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1", "10.0.0.2")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	u := updaterFor("a")
	keep := c.HostSet().Hosts[0]
	drop := c.HostSet().Hosts[1]
	dropped := &fakeConn{}
	drop.Idle().Put(dropped)

	u.Success([]clustertype.HostSpec{{Addr: keep.AddrPort(), Weight: 1}, {Addr: hostAP("10.0.0.3:8080"), Weight: 2}})
	hs := c.HostSet()
	if len(hs.Hosts) != 2 || hs.Hosts[0] != keep || hs.Hosts[1].Address() != "10.0.0.3:8080" || hs.Hosts[1].Weight() != 2 {
		t.Fatalf("hosts after update = %v", hs.Hosts)
	}
	if !dropped.closed.Load() {
		t.Error("removed host's idle connection not closed")
	}
	// Same membership again: no rebuild.
	u.Success([]clustertype.HostSpec{{Addr: keep.AddrPort(), Weight: 1}, {Addr: hostAP("10.0.0.3:8080"), Weight: 2}})
	if c.HostSet() != hs {
		t.Error("identical update published a new host set")
	}
	// A keyed host (LOGICAL_DNS) moves address but stays the same Host.
	u.Success([]clustertype.HostSpec{{Key: "svc:80", Addr: hostAP("10.0.0.7:80"), Weight: 1}})
	logical := c.HostSet().Hosts[0]
	u.Success([]clustertype.HostSpec{{Key: "svc:80", Addr: hostAP("10.0.0.8:80"), Weight: 1}})
	if c.HostSet().Hosts[0] != logical || logical.Address() != "10.0.0.8:80" {
		t.Errorf("logical host not moved in place: %v", c.HostSet().Hosts)
	}
	for name, want := range map[string]int64{"membership_change": 4, "update_no_rebuild": 1, "update_success": 5} {
		if got := int64(st.Counter("cluster.a." + name).Value()); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := st.Gauge("cluster.a.membership_total").Value(); got != 1 {
		t.Errorf("membership_total = %d, want 1", got)
	}
}

func TestPickNoHosts(t *testing.T) {
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, `- {name: empty}`), prefix); err != nil {
		t.Fatal(err)
	}
	if h := m.Cluster("empty").Pick(nil); h != nil {
		t.Fatalf("Pick on an empty cluster = %v", h.Address())
	}
	if got := st.Counter("cluster.empty.upstream_cx_none_healthy").Value(); got != 1 {
		t.Errorf("upstream_cx_none_healthy = %d, want 1", got)
	}
}

func TestAltStatName(t *testing.T) {
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, `- {name: a, alt_stat_name: other}`), prefix); err != nil {
		t.Fatal(err)
	}
	m.Cluster("a").Stats.UpstreamRqTotal.Inc()
	if st.Counter("cluster.other.upstream_rq_total").Value() != 1 {
		t.Error("stats not under alt_stat_name")
	}
}

func TestWaitReady(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestApplyAfterClose(t *testing.T) {
	m, _ := newTestManager(t)
	m.Close()
	if err := m.Apply(context.Background(), nil, prefix); err != ErrClosed {
		t.Fatalf("Apply after Close = %v, want ErrClosed", err)
	}
}
