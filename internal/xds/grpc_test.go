package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

func snapshotV1() map[string][]types.Resource {
	return map[string][]types.Resource{
		resource.ClusterType:  {cluster("a"), cluster("b")},
		resource.EndpointType: {endpoints("a", 8001), endpoints("b", 8002)},
		resource.ListenerType: {listener("l1", 10000)},
		resource.RouteType:    {routeConfig("r1", "a")},
	}
}

func isACK(typeURL, version string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetVersionInfo() == version && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
	}
}

// TestSotwADS: every type over one ADS stream; initial requests in Envoy's
// warming order; ACKs; an update with added, changed, removed and
// unchanged resources.
func TestSotwADS(t *testing.T) {
	cp := newControlPlane(t, true)
	cp.set("v1", snapshotV1())
	st := stats.NewStore()
	c := newTestClient(t, cp, envoyGrpc(corev3.ApiConfigSource_GRPC), st)

	subs := []struct {
		typeURL string
		names   []string
		scope   string
		rec     *recorder
	}{
		{typeURL: ListenerType, scope: "listener_manager.lds."},
		{typeURL: RouteType, names: []string{"r1"}, scope: "http.ingress.rds.r1."},
		{typeURL: ClusterType, scope: "cluster_manager.cds."},
		{typeURL: EndpointType, names: []string{"a", "b"}, scope: "cluster.a."},
	}
	handles := map[string]Subscription{}
	for i := range subs {
		subs[i].rec = &recorder{}
		handles[subs[i].typeURL] = subscribe(t, c, adsSource(), subs[i].typeURL, subs[i].names, subs[i].rec, st.Scope(subs[i].scope))
	}
	c.Start(context.Background())
	for _, s := range subs {
		u := s.rec.waitVersion(t, "v1")
		if len(u.Resources) == 0 {
			t.Errorf("%s: v1 has no resources", kindOf(s.typeURL))
		}
		cp.waitSotw(t, "ACK of "+s.typeURL, isACK(s.typeURL, "v1"))
		waitReady(t, handles[s.typeURL])
	}

	reqs := cp.sotwRequests()
	if got := reqs[0].GetNode().GetId(); got != testNode {
		t.Errorf("first request node id = %q, want %q", got, testNode)
	}
	var order []string
	for _, r := range reqs[:4] {
		order = append(order, kindOf(r.GetTypeUrl()))
	}
	if diff := cmp.Diff([]string{"cluster", "cluster_load_assignment", "listener", "route_configuration"}, order); diff != "" {
		t.Errorf("initial request order (-want +got):\n%s", diff)
	}
	if got := st.Gauge("control_plane.connected_state").Value(); got != 1 {
		t.Errorf("control_plane.connected_state = %d, want 1", got)
	}

	lv1 := subs[0].rec.waitVersion(t, "v1")
	changed := cluster("a")
	changed.ConnectTimeout = durationpb.New(2 * time.Second)
	cp.set("v2", map[string][]types.Resource{
		resource.ClusterType:  {changed, cluster("c")},
		resource.EndpointType: {endpoints("a", 8001), endpoints("b", 8002), endpoints("c", 8003)},
		resource.ListenerType: {listener("l1", 10000)},
		resource.RouteType:    {routeConfig("r1", "a")},
	})
	cds := subs[2].rec.waitVersion(t, "v2")
	if diff := cmp.Diff([]string{"a", "c"}, resourceNames(cds.Resources)); diff != "" {
		t.Errorf("CDS v2 resources (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b"}, cds.Removed); diff != "" {
		t.Errorf("CDS v2 removed (-want +got):\n%s", diff)
	}
	if got := cds.Resources[0].Message.(*clusterv3.Cluster).GetConnectTimeout().AsDuration(); got != 2*time.Second {
		t.Errorf("cluster a connect_timeout = %v, want 2s", got)
	}
	lv2 := subs[0].rec.waitVersion(t, "v2")
	if lv2.Resources[0] != lv1.Resources[0] {
		t.Error("unchanged listener l1 is a new *Resource in v2; want the same pointer (last_updated kept)")
	}
	cp.waitSotw(t, "ACK of CDS v2", isACK(ClusterType, "v2"))

	stt := handles[ClusterType].Status()
	if stt.VersionInfo != "v2" || stt.LastUpdated.IsZero() || !stt.Ready || stt.Failure != nil {
		t.Errorf("CDS status = %+v, want version v2, last_updated set, ready, no failure", stt)
	}
	for name, want := range map[string]uint64{
		"cluster_manager.cds.update_success":  2,
		"cluster_manager.cds.update_attempt":  2,
		"cluster_manager.cds.config_reload":   2,
		"cluster_manager.cds.update_rejected": 0,
	} {
		if got := counter(st, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestNACK: a resource failing validation and an Apply error are both
// NACKed with error_detail naming the resource and field; the previous
// version stays; the next good version is applied.
func TestNACK(t *testing.T) {
	badCluster := cluster("bad")
	badCluster.ConnectTimeout = durationpb.New(-time.Second)
	tests := []struct {
		name    string
		ads     bool
		v2      []types.Resource
		fail    func(Update) error
		wantMsg []string
	}{
		{
			name:    "validation error over ADS",
			ads:     true,
			v2:      []types.Resource{cluster("a"), badCluster},
			wantMsg: []string{`cluster "bad"`, "connect_timeout"},
		},
		{
			// The caller's Apply rejects; its message goes back verbatim.
			name: "apply error over a CDS stream",
			v2:   []types.Resource{cluster("a"), cluster("b")},
			fail: func(u Update) error {
				if u.VersionInfo == "v2" {
					return fmt.Errorf(`cluster "b": lb_policy: not supported`)
				}
				return nil
			},
			wantMsg: []string{`cluster "b": lb_policy: not supported`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := newControlPlane(t, tc.ads)
			cp.set("v1", map[string][]types.Resource{resource.ClusterType: {cluster("a")}})
			st := stats.NewStore()
			var ads *corev3.ApiConfigSource
			src := apiSource(envoyGrpc(corev3.ApiConfigSource_GRPC))
			if tc.ads {
				ads, src = envoyGrpc(corev3.ApiConfigSource_GRPC), adsSource()
			}
			c := newTestClient(t, cp, ads, st)
			c.Start(context.Background())
			rec := &recorder{fail: tc.fail}
			sub := subscribe(t, c, src, ClusterType, nil, rec, st.Scope("cluster_manager.cds."))
			rec.waitVersion(t, "v1")
			cp.waitSotw(t, "ACK v1", isACK(ClusterType, "v1"))

			cp.set("v2", map[string][]types.Resource{resource.ClusterType: tc.v2})
			nack := cp.waitSotw(t, "NACK", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
			if nack.GetVersionInfo() != "v1" || nack.GetResponseNonce() == "" {
				t.Errorf("NACK version_info=%q nonce=%q, want v1 and the rejected response's nonce", nack.GetVersionInfo(), nack.GetResponseNonce())
			}
			if got := codes.Code(nack.GetErrorDetail().GetCode()); got != codes.Internal {
				t.Errorf("error_detail.code = %v, want Internal (Envoy)", got)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(nack.GetErrorDetail().GetMessage(), s) {
					t.Errorf("error_detail.message = %q, want it to contain %q", nack.GetErrorDetail().GetMessage(), s)
				}
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				// go-control-plane's snapshot cache answers a NACK by sending
				// the same version again, so there may be more than one
				// (envoyproxy/go-control-plane#962).
				if got := counter(st, "cluster_manager.cds.update_rejected"); got < 1 {
					return fmt.Errorf("update_rejected = %d, want >= 1", got)
				}
				return nil
			})
			stt := sub.Status()
			if stt.VersionInfo != "v1" || stt.Failure == nil || stt.Failure.VersionInfo != "v2" {
				t.Errorf("status after NACK = version %q failure %+v, want v1 kept and failure for v2", stt.VersionInfo, stt.Failure)
			}
			if diff := cmp.Diff([]string{"a"}, resourceNames(stt.Resources)); diff != "" {
				t.Errorf("resources after NACK (-want +got):\n%s", diff)
			}

			cp.set("v3", map[string][]types.Resource{resource.ClusterType: {cluster("a"), cluster("c")}})
			u := rec.waitVersion(t, "v3")
			if diff := cmp.Diff([]string{"a", "c"}, resourceNames(u.Resources)); diff != "" {
				t.Errorf("v3 resources (-want +got):\n%s", diff)
			}
			cp.waitSotw(t, "ACK v3", isACK(ClusterType, "v3"))
			if f := sub.Status().Failure; f != nil {
				t.Errorf("failure after v3 = %+v, want nil", f)
			}
		})
	}
}

// TestPerTypeStreams: each discovery service on its own stream, SotW and
// delta, with names filtering what reaches Apply.
func TestPerTypeStreams(t *testing.T) {
	tests := []struct {
		name    string
		typeURL string
		names   []string
		want    []string
	}{
		{name: "LDS", typeURL: ListenerType, want: []string{"l1"}},
		{name: "CDS", typeURL: ClusterType, want: []string{"a", "b"}},
		{name: "RDS", typeURL: RouteType, names: []string{"r1"}, want: []string{"r1"}},
		{name: "EDS", typeURL: EndpointType, names: []string{"b"}, want: []string{"b"}},
	}
	for _, apiType := range []corev3.ApiConfigSource_ApiType{corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_DELTA_GRPC} {
		for _, tc := range tests {
			t.Run(apiType.String()+"/"+tc.name, func(t *testing.T) {
				cp := newControlPlane(t, false)
				cp.set("v1", snapshotV1())
				st := stats.NewStore()
				c := newTestClient(t, cp, nil, st)
				rec := &recorder{}
				subscribe(t, c, apiSource(envoyGrpc(apiType)), tc.typeURL, tc.names, rec, st.Scope("sub."))
				var u Update
				if apiType == corev3.ApiConfigSource_GRPC {
					u = rec.waitVersion(t, "v1")
					cp.waitSotw(t, "ACK", isACK(tc.typeURL, "v1"))
				} else {
					testutil.Eventually(t, 5*time.Second, func() error {
						var ok bool
						if u, ok = rec.lastUpdate(); !ok {
							return fmt.Errorf("no update")
						}
						return nil
					})
					cp.waitDelta(t, "delta ACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
						return r.GetTypeUrl() == tc.typeURL && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
					})
				}
				if diff := cmp.Diff(tc.want, resourceNames(u.Resources)); diff != "" {
					t.Errorf("resources (-want +got):\n%s", diff)
				}
				if got := st.Gauge("sub.control_plane.connected_state").Value(); got != 1 {
					t.Errorf("connected_state = %d, want 1", got)
				}
			})
		}
	}
}

// TestReconnect: the server restarts; the client reconnects with backoff
// and re-sends its subscriptions with the last ACKed version (SotW) or
// the versions it holds (delta), then takes new versions.
func TestReconnect(t *testing.T) {
	for _, apiType := range []corev3.ApiConfigSource_ApiType{corev3.ApiConfigSource_GRPC, corev3.ApiConfigSource_DELTA_GRPC} {
		t.Run(apiType.String(), func(t *testing.T) {
			cp := newControlPlane(t, true)
			cp.set("v1", map[string][]types.Resource{resource.ClusterType: {cluster("a")}})
			st := stats.NewStore()
			c := newTestClient(t, cp, envoyGrpc(apiType), st)
			c.Start(context.Background())
			rec := &recorder{}
			subscribe(t, c, adsSource(), ClusterType, nil, rec, st.Scope("cluster_manager.cds."))
			testutil.Eventually(t, 5*time.Second, func() error {
				if _, ok := rec.lastUpdate(); !ok {
					return fmt.Errorf("no update")
				}
				return nil
			})
			if apiType == corev3.ApiConfigSource_GRPC {
				cp.waitSotw(t, "ACK v1", isACK(ClusterType, "v1"))
			} else {
				cp.waitDelta(t, "delta ACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetResponseNonce() != "" })
			}
			streams := cp.streamCount()

			cp.restart()
			testutil.Eventually(t, 5*time.Second, func() error {
				if cp.streamCount() <= streams {
					return fmt.Errorf("no new stream yet")
				}
				return nil
			})
			if apiType == corev3.ApiConfigSource_GRPC {
				cp.waitSotw(t, "resubscription with the last ACKed version", func(r *discoveryv3.DiscoveryRequest) bool {
					return r.GetVersionInfo() == "v1" && r.GetResponseNonce() == "" && r.GetNode().GetId() == testNode
				})
			} else {
				cp.waitDelta(t, "resubscription with initial_resource_versions", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
					_, ok := r.GetInitialResourceVersions()["a"]
					return ok && r.GetNode().GetId() == testNode
				})
			}
			if got := counter(st, "cluster_manager.cds.update_failure"); got < 1 {
				t.Errorf("update_failure = %d, want >= 1 after the server went away", got)
			}
			cp.set("v2", map[string][]types.Resource{resource.ClusterType: {cluster("a"), cluster("z")}})
			testutil.Eventually(t, 5*time.Second, func() error {
				u, _ := rec.lastUpdate()
				if diff := cmp.Diff([]string{"a", "z"}, resourceNames(u.Resources)); diff != "" {
					return fmt.Errorf("resources after restart (-want +got):\n%s", diff)
				}
				return nil
			})
			testutil.Eventually(t, 5*time.Second, func() error {
				if got := st.Gauge("control_plane.connected_state").Value(); got != 1 {
					return fmt.Errorf("connected_state = %d, want 1", got)
				}
				return nil
			})
		})
	}
}

// TestDeltaADS: added, changed and removed resources over delta; a bad
// resource is NACKed; an interest change subscribes the new name only.
func TestDeltaADS(t *testing.T) {
	cp := newControlPlane(t, true)
	cp.set("v1", map[string][]types.Resource{
		resource.ClusterType:  {cluster("a"), cluster("b")},
		resource.EndpointType: {endpoints("a", 1), endpoints("b", 2)},
	})
	st := stats.NewStore()
	c := newTestClient(t, cp, envoyGrpc(corev3.ApiConfigSource_DELTA_GRPC), st)
	c.Start(context.Background())
	cds, eds := &recorder{}, &recorder{}
	subscribe(t, c, adsSource(), ClusterType, nil, cds, st.Scope("cluster_manager.cds."))
	edsSub := subscribe(t, c, adsSource(), EndpointType, []string{"a"}, eds, st.Scope("cluster.a."))

	waitNames := func(r *recorder, want []string, wantRemoved []string) Update {
		t.Helper()
		var u Update
		testutil.Eventually(t, 5*time.Second, func() error {
			u, _ = r.lastUpdate()
			if diff := cmp.Diff(want, resourceNames(u.Resources)); diff != "" {
				return fmt.Errorf("resources (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantRemoved, u.Removed); diff != "" {
				return fmt.Errorf("removed (-want +got):\n%s", diff)
			}
			return nil
		})
		return u
	}
	v1 := waitNames(cds, []string{"a", "b"}, nil)
	waitNames(eds, []string{"a"}, nil)

	changed := cluster("a")
	changed.ConnectTimeout = durationpb.New(3 * time.Second)
	cp.set("v2", map[string][]types.Resource{
		resource.ClusterType:  {changed, cluster("c")},
		resource.EndpointType: {endpoints("a", 1), endpoints("b", 2)},
	})
	v2 := waitNames(cds, []string{"a", "c"}, []string{"b"})
	if v2.Resources[0].Version == v1.Resources[0].Version {
		t.Errorf("changed cluster a kept version %q", v2.Resources[0].Version)
	}

	// Interest change: EDS for a and b sends a subscribe for b only.
	edsSub.UpdateResourceNames([]string{"a", "b"})
	cp.waitDelta(t, "subscribe b", func(r *discoveryv3.DeltaDiscoveryRequest) bool {
		return r.GetTypeUrl() == EndpointType && cmp.Equal(r.GetResourceNamesSubscribe(), []string{"b"}) && len(r.GetResourceNamesUnsubscribe()) == 0
	})
	waitNames(eds, []string{"a", "b"}, nil)

	bad := cluster("bad")
	bad.ConnectTimeout = durationpb.New(-time.Second)
	cp.set("v3", map[string][]types.Resource{
		resource.ClusterType:  {changed, cluster("c"), bad},
		resource.EndpointType: {endpoints("a", 1), endpoints("b", 2)},
	})
	nack := cp.waitDelta(t, "delta NACK", func(r *discoveryv3.DeltaDiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, `cluster "bad"`) || !strings.Contains(msg, "connect_timeout") {
		t.Errorf("error_detail.message = %q, want it to name cluster \"bad\" and connect_timeout", msg)
	}
	if u, _ := cds.lastUpdate(); !cmp.Equal(resourceNames(u.Resources), []string{"a", "c"}) {
		t.Errorf("after NACK the last applied set is %v, want [a c]", resourceNames(u.Resources))
	}
}

// TestInitialFetchTimeout: with no data from the server the subscription
// becomes ready after initial_fetch_timeout and counts it, as Envoy.
func TestInitialFetchTimeout(t *testing.T) {
	cp := newControlPlane(t, true) // no snapshot: the server never answers
	st := stats.NewStore()
	c := newTestClient(t, cp, envoyGrpc(corev3.ApiConfigSource_GRPC), st)
	c.Start(context.Background())
	src := adsSource()
	src.InitialFetchTimeout = durationpb.New(50 * time.Millisecond)
	rec := &recorder{}
	sub := subscribe(t, c, src, ListenerType, nil, rec, st.Scope("listener_manager.lds."))
	waitReady(t, sub)
	if got := counter(st, "listener_manager.lds.init_fetch_timeout"); got != 1 {
		t.Errorf("init_fetch_timeout = %d, want 1", got)
	}
	if _, ok := rec.lastUpdate(); ok {
		t.Error("Apply was called without data")
	}
	if got := sub.Status().VersionInfo; got != "" {
		t.Errorf("version_info = %q, want empty", got)
	}
}

// TestInitialFetchTimeoutDefault checks the default and the zero value.
func TestInitialFetchTimeoutDefault(t *testing.T) {
	tests := []struct {
		name    string
		timeout *durationpb.Duration
		want    time.Duration
	}{
		{name: "unset is Envoy's 15s", want: 15 * time.Second},
		{name: "zero disables", timeout: durationpb.New(0), want: 0},
		{name: "explicit", timeout: durationpb.New(2 * time.Second), want: 2 * time.Second},
	}
	cp := newControlPlane(t, true)
	c := newTestClient(t, cp, envoyGrpc(corev3.ApiConfigSource_GRPC), nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := adsSource()
			src.InitialFetchTimeout = tc.timeout
			s, err := c.Subscribe(src, ClusterType, nil, (&recorder{}).callbacks(), stats.NewStore().Scope(""))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.(*watch).initTimeout; got != tc.want {
				t.Errorf("initial fetch timeout = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGoogleGrpc: google_grpc.target_uri reaches the server directly.
func TestGoogleGrpc(t *testing.T) {
	cp := newControlPlane(t, false)
	cp.set("v1", snapshotV1())
	st := stats.NewStore()
	c := newTestClient(t, cp, nil, st)
	api := &corev3.ApiConfigSource{
		ApiType:             corev3.ApiConfigSource_GRPC,
		TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{
			GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: cp.addr.Load().(string), StatPrefix: "xds"},
		}}},
	}
	rec := &recorder{}
	subscribe(t, c, apiSource(api), ClusterType, nil, rec, st.Scope("cluster_manager.cds."))
	u := rec.waitVersion(t, "v1")
	if diff := cmp.Diff([]string{"a", "b"}, resourceNames(u.Resources)); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
}

// TestNodeOnFirstMessageOnly: set_node_on_first_message_only drops the node
// from later requests; by default every request carries it (Envoy).
func TestNodeOnFirstMessageOnly(t *testing.T) {
	for _, firstOnly := range []bool{false, true} {
		t.Run(fmt.Sprint("first_only=", firstOnly), func(t *testing.T) {
			cp := newControlPlane(t, true)
			cp.set("v1", snapshotV1())
			api := envoyGrpc(corev3.ApiConfigSource_GRPC)
			api.SetNodeOnFirstMessageOnly = firstOnly
			c := newTestClient(t, cp, api, nil)
			c.Start(context.Background())
			rec := &recorder{}
			subscribe(t, c, adsSource(), ClusterType, nil, rec, stats.NewStore().Scope(""))
			rec.waitVersion(t, "v1")
			cp.waitSotw(t, "ACK", isACK(ClusterType, "v1"))
			raw := cp.rawRequests()
			if len(raw) < 2 {
				t.Fatalf("server read %d requests, want the request and its ACK", len(raw))
			}
			if raw[0].GetNode().GetId() != testNode {
				t.Errorf("first request node = %v, want id %q", raw[0].GetNode(), testNode)
			}
			if got := raw[1].GetNode() != nil; got == firstOnly {
				t.Errorf("ACK carries node = %v, want %v", got, !firstOnly)
			}
		})
	}
}

// TestSubscribeErrors: config the client refuses, by field.
func TestSubscribeErrors(t *testing.T) {
	mod := func(f func(a *corev3.ApiConfigSource)) *corev3.ConfigSource {
		a := envoyGrpc(corev3.ApiConfigSource_GRPC)
		f(a)
		return apiSource(a)
	}
	tests := []struct {
		name    string
		src     *corev3.ConfigSource
		wantErr string
	}{
		{name: "REST", src: mod(func(a *corev3.ApiConfigSource) { a.ApiType = corev3.ApiConfigSource_REST }), wantErr: "api_type: REST is not supported"},
		{name: "transport AUTO", src: mod(func(a *corev3.ApiConfigSource) { a.TransportApiVersion = corev3.ApiVersion_AUTO }), wantErr: "transport_api_version"},
		{name: "two services", src: mod(func(a *corev3.ApiConfigSource) { a.GrpcServices = append(a.GrpcServices, a.GrpcServices[0]) }), wantErr: "exactly one gRPC service"},
		{name: "cluster_names", src: mod(func(a *corev3.ApiConfigSource) { a.ClusterNames = []string{"x"} }), wantErr: "cluster_names"},
		{name: "rate limit", src: mod(func(a *corev3.ApiConfigSource) { a.RateLimitSettings = &corev3.RateLimitSettings{} }), wantErr: "rate_limit_settings: not supported"},
		{name: "no target", src: mod(func(a *corev3.ApiConfigSource) { a.GrpcServices[0].TargetSpecifier = nil }), wantErr: "target_specifier"},
		{name: "ads without ads_config", src: adsSource(), wantErr: "no ads_config"},
		{name: "self", src: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}}}, wantErr: "self: not supported"},
		{name: "missing path", src: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/nonexistent/xds.yaml"}}, wantErr: "does not exist"},
		{name: "resource v2", src: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V2, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{}}, wantErr: "resource_api_version"},
		{name: "no specifier", src: &corev3.ConfigSource{}, wantErr: "specifier is missing"},
	}
	c, err := NewClient(nil, Options{Node: &corev3.Node{Id: "n"}, DialCluster: (&controlPlane{}).dial})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Subscribe(tc.src, ClusterType, nil, (&recorder{}).callbacks(), stats.NewStore().Scope(""))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Subscribe error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestBackoff checks Envoy's JitteredExponentialBackOffStrategy with the
// xDS constants: attempt n waits in [0, min(500ms·2^(n-1), 30s)); reset
// returns to the base.
func TestBackoff(t *testing.T) {
	b := &jitteredBackoff{cfg: backoffConfig{base: backoffBase, max: backoffMax}, next: backoffBase}
	bounds := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, bound := range bounds {
		if got := b.next; got != bound {
			t.Fatalf("attempt %d: interval = %v, want %v", i+1, got, bound)
		}
		if d := b.nextDelay(); d < 0 || d >= bound {
			t.Errorf("attempt %d: delay %v outside [0, %v)", i+1, d, bound)
		}
	}
	b.reset()
	if b.next != backoffBase {
		t.Errorf("after reset interval = %v, want %v", b.next, backoffBase)
	}
}
