package static

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

type recorder struct {
	hosts   [][]clustertype.HostSpec
	ready   bool
	failure int
}

func (r *recorder) Attempt()                         {}
func (r *recorder) Success(h []clustertype.HostSpec) { r.hosts = append(r.hosts, h) }
func (r *recorder) Failure(error)                    { r.failure++ }
func (r *recorder) Ready()                           { r.ready = true }

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		want    []clustertype.HostSpec
		wantErr string
	}{
		{name: "ips and weights", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[
			{"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":8080}}}},
			{"endpoint":{"hostname":"b","address":{"socket_address":{"address":"::1","port_value":8081}}},"load_balancing_weight":3}]}]}}`,
			want: []clustertype.HostSpec{
				{Addr: netip.MustParseAddrPort("127.0.0.1:8080"), Weight: 1},
				{Addr: netip.MustParseAddrPort("[::1]:8081"), Hostname: "b", Weight: 3},
			}},
		{name: "envoy.lb hash_key", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[
			{"metadata":{"filter_metadata":{"envoy.lb":{"hash_key":"shard-7"}}},"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":8080}}}}]}]}}`,
			want: []clustertype.HostSpec{
				{Addr: netip.MustParseAddrPort("127.0.0.1:8080"), Weight: 1, HashKey: "shard-7"},
			}},
		{name: "no load assignment", cluster: `{"name":"a"}`},
		{name: "name instead of ip", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"localhost","port_value":1}}}}]}]}}`,
			wantErr: `static_resources.clusters[2].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "localhost" is not an IP address`},
		{name: "priority and locality", cluster: `{"name":"a","load_assignment":{"endpoints":[{"priority":2,"locality":{"region":"r"},"lb_endpoints":[
			{"endpoint":{"address":{"socket_address":{"address":"127.0.0.1","port_value":8080}}}}]}]}}`,
			want: []clustertype.HostSpec{
				{Addr: netip.MustParseAddrPort("127.0.0.1:8080"), Weight: 1, Placement: clustertype.Placement{Priority: 2, Locality: clustertype.Locality{Region: "r"}}},
			}},
		{name: "priority above the limit", cluster: `{"name":"a","load_assignment":{"endpoints":[{"priority":128,"lb_endpoints":[]}]}}`,
			wantErr: `static_resources.clusters[2].load_assignment.endpoints[0].priority: priority 128 is above herald's limit 127`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			if err := protojson.Unmarshal([]byte(tc.cluster), c); err != nil {
				t.Fatal(err)
			}
			d, err := Build(c, nil, clustertype.BuildContext{Path: "static_resources.clusters[2]"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Build error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var r recorder
			d.Start(context.Background(), &r)
			if !r.ready || len(r.hosts) != 1 {
				t.Fatalf("Start: ready=%v updates=%d, want ready after one update", r.ready, len(r.hosts))
			}
			if diff := cmp.Diff(tc.want, r.hosts[0], cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	e, ok := clustertype.ByType(clusterv3.Cluster_STATIC)
	if !ok || e.Name != Name {
		t.Fatalf("STATIC not registered: %v", e)
	}
}
