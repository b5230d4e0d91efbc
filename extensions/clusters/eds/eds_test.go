package eds

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/xds"
)

func cla(t *testing.T, js string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	la := &endpointv3.ClusterLoadAssignment{}
	if err := protojson.Unmarshal([]byte(js), la); err != nil {
		t.Fatalf("bad test assignment: %v", err)
	}
	return la
}

func ep(addr string, extra string) string {
	ap := netip.MustParseAddrPort(addr)
	return `{"endpoint":{"address":{"socket_address":{"address":"` + ap.Addr().String() + `","port_value":` +
		strconv.Itoa(int(ap.Port())) + `}}}` + extra + `}`
}

func TestHosts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []clustertype.HostSpec
		wantErr string
	}{
		{
			name: "weights and health",
			in: `{"cluster_name":"b","endpoints":[{"lb_endpoints":[` + ep("10.0.0.1:80", "") + `,` +
				ep("10.0.0.2:80", `,"load_balancing_weight":3,"health_status":"HEALTHY"`) + `,` +
				ep("10.0.0.3:80", `,"health_status":"UNHEALTHY"`) + `,` +
				ep("10.0.0.4:80", `,"health_status":"DRAINING"`) + `,` +
				ep("10.0.0.5:80", `,"health_status":"TIMEOUT"`) + `]}]}`,
			want: []clustertype.HostSpec{
				{Addr: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1},
				{Addr: netip.MustParseAddrPort("10.0.0.2:80"), Weight: 3},
				{Addr: netip.MustParseAddrPort("10.0.0.3:80"), Weight: 1, Unhealthy: true},
				{Addr: netip.MustParseAddrPort("10.0.0.4:80"), Weight: 1, Unhealthy: true},
				{Addr: netip.MustParseAddrPort("10.0.0.5:80"), Weight: 1, Unhealthy: true},
			},
		},
		{
			name: "no endpoints",
			in:   `{"cluster_name":"b"}`,
			want: []clustertype.HostSpec{},
		},
		{
			// Envoy does not resolve names in EDS endpoints.
			name:    "a name is rejected",
			in:      `{"cluster_name":"b","endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"web.local","port_value":80}}}}]}]}`,
			wantErr: `cluster_load_assignment "b".endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "web.local" is not an IP address`,
		},
		{
			name:    "degraded is not supported",
			in:      `{"cluster_name":"b","endpoints":[{"lb_endpoints":[` + ep("10.0.0.1:80", `,"health_status":"DEGRADED"`) + `]}]}`,
			wantErr: `cluster_load_assignment "b".endpoints[0].lb_endpoints[0].health_status: health_status DEGRADED is not supported by herald yet`,
		},
		{
			name:    "LEDS is refused by name",
			in:      `{"cluster_name":"b","endpoints":[{"leds_cluster_locality_config":{"leds_collection_name":"x"}}]}`,
			wantErr: `cluster_load_assignment "b".endpoints[0].leds_cluster_locality_config: LEDS is not supported by herald yet (#7)`,
		},
		{
			// Priority, locality and the policy reach every host.
			name: "priority and locality",
			in: `{"cluster_name":"b","policy":{"overprovisioning_factor":100},"endpoints":[{"priority":1,"locality":{"zone":"z1"},"load_balancing_weight":3,"lb_endpoints":[` +
				ep("10.0.0.1:80", "") + `]}]}`,
			want: []clustertype.HostSpec{{Addr: netip.MustParseAddrPort("10.0.0.1:80"), Weight: 1,
				Placement: clustertype.Placement{Priority: 1, Locality: clustertype.Locality{Zone: "z1"}, LocalityWeight: 3, OverprovisioningFactor: 100}}},
		},
		{
			name:    "priority above the limit",
			in:      `{"cluster_name":"b","endpoints":[{"priority":500,"lb_endpoints":[` + ep("10.0.0.1:80", "") + `]}]}`,
			wantErr: `cluster_load_assignment "b".endpoints[0].priority: priority 500 is above herald's limit 127`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Hosts(cla(t, tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	client, err := xds.NewClient(nil, xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cluster string
		client  *xds.Client
		wantErr string
	}{
		{name: "ads source", cluster: `{"name":"b","type":"EDS","eds_cluster_config":{"eds_config":{"ads":{}}}}`, client: client,
			wantErr: "c.eds_cluster_config.eds_config: ads: no ads_config in dynamic_resources"},
		{name: "missing eds_cluster_config", cluster: `{"name":"b","type":"EDS"}`, client: client,
			wantErr: "c.eds_cluster_config: eds_cluster_config is required for type EDS"},
		{name: "load_assignment on an EDS cluster", cluster: `{"name":"b","type":"EDS","load_assignment":{"cluster_name":"b"},"eds_cluster_config":{"eds_config":{"path":"/nonexistent"}}}`, client: client,
			wantErr: "c.load_assignment: an EDS cluster takes its endpoints from eds_cluster_config.eds_config"},
		{name: "no client", cluster: `{"name":"b","type":"EDS","eds_cluster_config":{"eds_config":{"ads":{}}}}`,
			wantErr: "EDS needs the server's xDS client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			if err := protojson.Unmarshal([]byte(tc.cluster), c); err != nil {
				t.Fatal(err)
			}
			_, err := Build(c, nil, clustertype.BuildContext{Path: "c", XDS: tc.client, Stats: stats.NewStore().Scope("cluster.b.")})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// fakeUpdater records what discovery reports.
type fakeUpdater struct {
	hosts    [][]clustertype.HostSpec
	success  int
	attempts int
}

func (f *fakeUpdater) Attempt()                          { f.attempts++ }
func (f *fakeUpdater) Success(h []clustertype.HostSpec)  { f.success++; f.hosts = append(f.hosts, h) }
func (f *fakeUpdater) Failure(error)                     {}
func (f *fakeUpdater) Ready()                            {}
func (f *fakeUpdater) SetHosts(h []clustertype.HostSpec) { f.hosts = append(f.hosts, h) }
func (f *fakeUpdater) last() []clustertype.HostSpec      { return f.hosts[len(f.hosts)-1] }

var _ clustertype.MembershipSetter = (*fakeUpdater)(nil)

func TestApply(t *testing.T) {
	u := &fakeUpdater{}
	d := &Discovery{service: "b", u: u}
	res := func(js string) xds.Update {
		return xds.Update{Resources: []*xds.Resource{{Name: "b", Message: cla(t, js)}}}
	}
	if err := d.apply(res(`{"cluster_name":"b","endpoints":[{"lb_endpoints":[` + ep("10.0.0.1:80", "") + `]}]}`)); err != nil {
		t.Fatal(err)
	}
	if len(u.hosts) != 1 || u.success != 0 {
		t.Fatalf("after a good update: %d membership updates, %d Success calls; want 1 through SetHosts (the subscription counts update_success)", len(u.hosts), u.success)
	}
	// A bad update is returned (NACK) and the hosts stay.
	if err := d.apply(res(`{"cluster_name":"b","endpoints":[{"priority":200,"lb_endpoints":[]}]}`)); err == nil {
		t.Fatal("a priority 200 assignment was accepted")
	}
	// An update without the cluster's assignment keeps the hosts.
	if err := d.apply(xds.Update{}); err != nil {
		t.Fatal(err)
	}
	if len(u.hosts) != 1 || u.last()[0].Addr != netip.MustParseAddrPort("10.0.0.1:80") {
		t.Errorf("hosts changed by a rejected or empty update: %v", u.hosts)
	}
}
