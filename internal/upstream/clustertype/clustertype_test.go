package clustertype

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/configerr"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	addrs, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range addrs {
		if network == "ip" || (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	return out, nil
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestLookupFamily(t *testing.T) {
	r := fakeResolver{
		"dual": addrs("10.0.0.1", "fd00::1", "10.0.0.2"),
		"v4":   addrs("10.0.0.1"),
		"v6":   addrs("fd00::1"),
	}
	tests := []struct {
		name    string
		family  Family
		host    string
		want    []netip.Addr
		wantErr bool
	}{
		{name: "auto prefers v6", family: Auto, host: "dual", want: addrs("fd00::1")},
		{name: "auto falls back to v4", family: Auto, host: "v4", want: addrs("10.0.0.1")},
		{name: "v4 preferred", family: V4Preferred, host: "dual", want: addrs("10.0.0.1", "10.0.0.2")},
		{name: "v4 preferred falls back to v6", family: V4Preferred, host: "v6", want: addrs("fd00::1")},
		{name: "all", family: All, host: "dual", want: addrs("10.0.0.1", "10.0.0.2", "fd00::1")},
		{name: "v4 only", family: V4Only, host: "dual", want: addrs("10.0.0.1", "10.0.0.2")},
		{name: "v6 only without v6", family: V6Only, host: "v4", wantErr: true},
		{name: "unknown name", family: Auto, host: "nope", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DNSConfig{Family: tc.family}.Lookup(context.Background(), r, tc.host)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Lookup error = %v, wantErr %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Lookup (-want +got):\n%s", diff)
			}
		})
	}
}

func cluster(t *testing.T, js string) *clusterv3.Cluster {
	t.Helper()
	c := &clusterv3.Cluster{}
	if err := protojson.Unmarshal([]byte(js), c); err != nil {
		t.Fatalf("bad test cluster: %v", err)
	}
	return c
}

func TestParseDNSConfig(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		want    DNSConfig
		wantErr string
	}{
		// Envoy defaults: refresh 5 s, family AUTO.
		{name: "defaults", cluster: `{"name":"a"}`, want: DNSConfig{RefreshRate: 5 * time.Second, Family: Auto}},
		{name: "explicit", cluster: `{"name":"a","dns_refresh_rate":"1s","dns_lookup_family":"V4_ONLY","dns_jitter":"0.5s","dns_failure_refresh_rate":{"base_interval":"2s"}}`,
			want: DNSConfig{RefreshRate: time.Second, Family: V4Only, Jitter: 500 * time.Millisecond, FailureBase: 2 * time.Second, FailureMax: 20 * time.Second}},
		{name: "respect ttl", cluster: `{"name":"a","respect_dns_ttl":true}`, wantErr: "c.respect_dns_ttl: not supported by herald yet"},
		{name: "resolvers", cluster: `{"name":"a","dns_resolvers":[{"socket_address":{"address":"1.1.1.1","port_value":53}}]}`, wantErr: "c.dns_resolvers: not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDNSConfig(cluster(t, tc.cluster), "c")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		want    []Endpoint
		wantErr string
	}{
		{name: "weights default to 1", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[
			{"endpoint":{"address":{"socket_address":{"address":"10.0.0.1","port_value":80}}}},
			{"endpoint":{"address":{"socket_address":{"address":"b.local","port_value":81}}},"load_balancing_weight":3}]}]}}`,
			want: []Endpoint{
				{Address: "10.0.0.1", Port: 80, Weight: 1, Path: "c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address"},
				{Address: "b.local", Port: 81, Weight: 3, Path: "c.load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address"},
			}},
		// Each endpoint carries its LocalityLbEndpoints' priority, locality,
		// locality weight and the assignment's policy.
		{name: "priority and locality", cluster: `{"name":"a","load_assignment":{"policy":{"overprovisioning_factor":200},"endpoints":[
			{"priority":1,"locality":{"region":"r","zone":"z","sub_zone":"s"},"load_balancing_weight":2,"lb_endpoints":[
			{"endpoint":{"address":{"socket_address":{"address":"10.0.0.1","port_value":80}}}}]}]}}`,
			want: []Endpoint{{Address: "10.0.0.1", Port: 80, Weight: 1,
				Path:      "c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address",
				Placement: Placement{Priority: 1, Locality: Locality{Region: "r", Zone: "z", SubZone: "s"}, LocalityWeight: 2, OverprovisioningFactor: 200}}}},
		{name: "priority above the limit", cluster: `{"name":"a","load_assignment":{"endpoints":[{"priority":128,"lb_endpoints":[]}]}}`,
			wantErr: "c.load_assignment.endpoints[0].priority: priority 128 is above herald's limit 127"},
		{name: "locality weight 0", cluster: `{"name":"a","load_assignment":{"endpoints":[{"load_balancing_weight":0,"lb_endpoints":[]}]}}`,
			wantErr: "c.load_assignment.endpoints[0].load_balancing_weight: weight must be at least 1"},
		{name: "drop overloads", cluster: `{"name":"a","load_assignment":{"policy":{"drop_overloads":[{"category":"x","drop_percentage":{"numerator":1}}]},"endpoints":[]}}`,
			wantErr: "c.load_assignment.policy.drop_overloads: not supported by herald yet"},
		{name: "named port", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"socket_address":{"address":"x","named_port":"http"}}}}]}]}}`,
			wantErr: "socket_address.named_port: not supported by herald yet"},
		{name: "pipe", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[{"endpoint":{"address":{"pipe":{"path":"/x"}}}}]}]}}`,
			wantErr: "lb_endpoints[0].endpoint.address: only socket_address is supported"},
		{name: "envoy.lb hash_key", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[
			{"metadata":{"filter_metadata":{"envoy.lb":{"hash_key":"shard-7"},"other":{"x":1}}},"endpoint":{"address":{"socket_address":{"address":"10.0.0.1","port_value":80}}}},
			{"metadata":{"filter_metadata":{"other":{"hash_key":"ignored"}}},"endpoint":{"address":{"socket_address":{"address":"10.0.0.2","port_value":80}}}}]}]}}`,
			want: []Endpoint{
				{Address: "10.0.0.1", Port: 80, Weight: 1, HashKey: "shard-7", Path: "c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address"},
				{Address: "10.0.0.2", Port: 80, Weight: 1, Path: "c.load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address"},
			}},
		{name: "envoy.lb hash_key not a string", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[
			{"metadata":{"filter_metadata":{"envoy.lb":{"hash_key":7}}},"endpoint":{"address":{"socket_address":{"address":"10.0.0.1","port_value":80}}}}]}]}}`,
			wantErr: "c.load_assignment.endpoints[0].lb_endpoints[0].metadata.filter_metadata[envoy.lb].hash_key: hash_key must be a string"},
		{name: "unhealthy", cluster: `{"name":"a","load_assignment":{"endpoints":[{"lb_endpoints":[{"health_status":"UNHEALTHY","endpoint":{"address":{"socket_address":{"address":"x","port_value":1}}}}]}]}}`,
			wantErr: "lb_endpoints[0].health_status: health_status UNHEALTHY is not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Endpoints(cluster(t, tc.cluster), "c")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRefreshSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DNSConfig{RefreshRate: 5 * time.Second, FailureBase: time.Second, FailureMax: 4 * time.Second}
		ctx, cancel := context.WithCancel(t.Context())
		results := []bool{false, false, false, false, true, true}
		var at []time.Duration
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			cfg.Refresh(ctx, nil, func(context.Context) bool {
				at = append(at, time.Since(start))
				ok := results[len(at)-1]
				if len(at) == len(results) {
					cancel()
				}
				return ok
			})
		}()
		<-done
		// Failures back off 1, 2, 4, 4 s; then the success waits 5 s.
		want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 16 * time.Second}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("resolve times (-want +got):\n%s", diff)
		}
	})
}

func TestCheckFields(t *testing.T) {
	c := &clusterv3.Cluster{Name: "a", ConnectTimeout: durationpb.New(time.Second), CleanupInterval: durationpb.New(time.Second)}
	errs := configerr.CheckFields(c, "p", "name", "connect_timeout")
	if len(errs) != 1 || errs[0].Error() != "p.cleanup_interval: not supported by herald yet" {
		t.Errorf("CheckFields = %v, want one error for cleanup_interval", errs)
	}
}
