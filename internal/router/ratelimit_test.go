package router

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/configerr"
)

// e is a descriptor's entries, key, value, key, value...
func e(kv ...string) []RateLimitEntry {
	out := []RateLimitEntry{}
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, RateLimitEntry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func descriptorsEntries(ds []RateLimitDescriptor) [][]RateLimitEntry {
	out := [][]RateLimitEntry{}
	for _, d := range ds {
		out = append(out, append([]RateLimitEntry{}, d.Entries...))
	}
	return out
}

func TestRateLimitActions(t *testing.T) {
	remote4 := netip.MustParseAddrPort("192.168.1.77:5000")
	remote6 := netip.MustParseAddrPort("[2001:abcd:ef01:2345:6789:abcd:ef01:234]:5000")
	tests := []struct {
		name    string
		actions string // the YAML list of one rate_limits entry's actions
		headers []string
		remote  netip.AddrPort
		want    [][]RateLimitEntry // nil: no descriptor
	}{
		{name: "source_cluster", actions: `[{source_cluster: {}}]`, want: [][]RateLimitEntry{e("source_cluster", "local-svc")}},
		{name: "destination_cluster", actions: `[{destination_cluster: {}}]`, want: [][]RateLimitEntry{e("destination_cluster", "backend")}},
		{
			name:    "request_headers present",
			actions: `[{request_headers: {header_name: X-User, descriptor_key: user}}]`,
			headers: []string{"x-user", "alice", "x-user", "bob"},
			want:    [][]RateLimitEntry{e("user", "alice")}, // first value only
		},
		{
			// Envoy: no descriptor when the header is absent.
			name:    "request_headers absent",
			actions: `[{generic_key: {descriptor_value: g}}, {request_headers: {header_name: x-user, descriptor_key: user}}]`,
		},
		{
			// skip_if_absent drops only the entry; the descriptor stays.
			name:    "request_headers absent skip_if_absent",
			actions: `[{generic_key: {descriptor_value: g}}, {request_headers: {header_name: x-user, descriptor_key: user, skip_if_absent: true}}]`,
			want:    [][]RateLimitEntry{e("generic_key", "g")},
		},
		{
			// A descriptor whose every entry was skipped is still sent.
			name:    "only skipped entries",
			actions: `[{request_headers: {header_name: x-user, descriptor_key: user, skip_if_absent: true}}]`,
			want:    [][]RateLimitEntry{e()},
		},
		{name: "remote_address v4", actions: `[{remote_address: {}}]`, remote: remote4, want: [][]RateLimitEntry{e("remote_address", "192.168.1.77")}},
		{name: "remote_address v6", actions: `[{remote_address: {}}]`, remote: remote6, want: [][]RateLimitEntry{e("remote_address", "2001:abcd:ef01:2345:6789:abcd:ef01:234")}},
		{name: "remote_address v4-mapped", actions: `[{remote_address: {}}]`, remote: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), want: [][]RateLimitEntry{e("remote_address", "10.0.0.1")}},
		{name: "remote_address unknown", actions: `[{remote_address: {}}]`},
		{name: "masked_remote_address default v4", actions: `[{masked_remote_address: {}}]`, remote: remote4, want: [][]RateLimitEntry{e("masked_remote_address", "192.168.1.77/32")}},
		{name: "masked_remote_address v4 /24", actions: `[{masked_remote_address: {v4_prefix_mask_len: 24}}]`, remote: remote4, want: [][]RateLimitEntry{e("masked_remote_address", "192.168.1.0/24")}},
		{name: "masked_remote_address v6 /64", actions: `[{masked_remote_address: {v6_prefix_mask_len: 64}}]`, remote: remote6, want: [][]RateLimitEntry{e("masked_remote_address", "2001:abcd:ef01:2345::/64")}},
		{name: "generic_key", actions: `[{generic_key: {descriptor_value: v}}]`, want: [][]RateLimitEntry{e("generic_key", "v")}},
		{name: "generic_key descriptor_key", actions: `[{generic_key: {descriptor_value: v, descriptor_key: k}}]`, want: [][]RateLimitEntry{e("k", "v")}},
		{
			name:    "header_value_match matches",
			actions: `[{header_value_match: {descriptor_value: get, headers: [{name: ":method", string_match: {exact: GET}}]}}]`,
			want:    [][]RateLimitEntry{e("header_match", "get")},
		},
		{
			name:    "header_value_match does not match",
			actions: `[{header_value_match: {descriptor_value: post, headers: [{name: ":method", string_match: {exact: POST}}]}}]`,
		},
		{
			name:    "header_value_match expect_match false",
			actions: `[{header_value_match: {descriptor_value: not-post, expect_match: false, headers: [{name: ":method", string_match: {exact: POST}}]}}]`,
			want:    [][]RateLimitEntry{e("header_match", "not-post")},
		},
		{
			name:    "header_value_match every header must match",
			actions: `[{header_value_match: {descriptor_value: x, headers: [{name: ":method", string_match: {exact: GET}}, {name: x-missing, present_match: true}]}}]`,
		},
		{
			name:    "header_value_match descriptor_key",
			actions: `[{header_value_match: {descriptor_value: x, descriptor_key: hk, headers: [{name: x-a, present_match: true}]}}]`,
			headers: []string{"x-a", "1"},
			want:    [][]RateLimitEntry{e("hk", "x")},
		},
		{
			name:    "composed in order",
			actions: `[{source_cluster: {}}, {destination_cluster: {}}, {remote_address: {}}, {generic_key: {descriptor_value: g}}]`,
			remote:  remote4,
			want:    [][]RateLimitEntry{e("source_cluster", "local-svc", "destination_cluster", "backend", "remote_address", "192.168.1.77", "generic_key", "g")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", `route: {cluster: backend, rate_limits: [{actions: `+tc.actions+`}]}`)
			rq := &RateLimitRequest{
				Headers:            req("example.com", "/", tc.headers...),
				Remote:             tc.remote,
				LocalCluster:       "local-svc",
				DestinationCluster: "backend",
			}
			got := descriptorsEntries(r.AppendRateLimitDescriptors(nil, 0, VhRateLimitsOverride, rq))
			want := tc.want
			if want == nil {
				want = [][]RateLimitEntry{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("descriptors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRateLimitStagesAndVirtualHost(t *testing.T) {
	const table = `
virtual_hosts:
- name: v
  domains: ["*"]
  rate_limits:
  - actions: [{generic_key: {descriptor_value: vh}}]
  - stage: 1
    actions: [{generic_key: {descriptor_value: vh-stage1}}]
  routes:
  - name: own
    match: {prefix: /own}
    route:
      cluster: c
      rate_limits:
      - actions: [{generic_key: {descriptor_value: route}}]
      - stage: 2
        actions: [{generic_key: {descriptor_value: route-stage2}}]
  - name: include
    match: {prefix: /include}
    route:
      cluster: c
      include_vh_rate_limits: true
      rate_limits: [{actions: [{generic_key: {descriptor_value: route}}]}]
  - name: direct
    match: {prefix: /direct}
    direct_response: {status: 200}
  - name: none
    match: {prefix: /}
    route: {cluster: c}
`
	tbl := mustBuild(t, table)
	tests := []struct {
		name  string
		path  string
		stage uint32
		vh    VhRateLimits
		want  []string // generic_key values in order
	}{
		{name: "route limits override the virtual host's", path: "/own", want: []string{"route"}},
		{name: "stage filters", path: "/own", stage: 2, want: []string{"route-stage2"}},
		{name: "route without limits uses the virtual host's", path: "/", want: []string{"vh"}},
		{name: "virtual host stage", path: "/", stage: 1, want: []string{"vh-stage1"}},
		{name: "no entry in the stage", path: "/", stage: 3},
		{name: "include_vh_rate_limits adds the virtual host's after", path: "/include", want: []string{"route", "vh"}},
		{name: "INCLUDE per route", path: "/own", vh: VhRateLimitsInclude, want: []string{"route", "vh"}},
		{name: "IGNORE per route", path: "/", vh: VhRateLimitsIgnore},
		{name: "include_vh_rate_limits beats IGNORE", path: "/include", vh: VhRateLimitsIgnore, want: []string{"route", "vh"}},
		{name: "direct_response has none", path: "/direct"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tbl.Match(req("example.com", tc.path))
			if r == nil {
				t.Fatalf("no route for %s", tc.path)
			}
			ds := r.AppendRateLimitDescriptors(nil, tc.stage, tc.vh, &RateLimitRequest{Headers: req("example.com", tc.path)})
			got := []string{}
			for _, d := range ds {
				got = append(got, d.Entries[0].Value)
			}
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("descriptors (-want +got):\n%s", diff)
			}
			if !r.HasRateLimits() && r.Kind() == ActionCluster {
				t.Errorf("HasRateLimits() = false for %s", r.Name())
			}
		})
	}
}

func TestRateLimitOverrideAndReuse(t *testing.T) {
	r := routeWith(t, "", `route: {cluster: c, rate_limits: [
  {actions: [{generic_key: {descriptor_value: a}}], limit: {rate_limit: {requests_per_unit: 42, unit: MINUTE}}},
  {actions: [{generic_key: {descriptor_value: b}}]}]}`)
	rq := &RateLimitRequest{Headers: req("example.com", "/")}
	ds := r.AppendRateLimitDescriptors(nil, 0, VhRateLimitsOverride, rq)
	if len(ds) != 2 {
		t.Fatalf("got %d descriptors, want 2", len(ds))
	}
	if got, want := ds[0].Limit, (&RateLimitOverride{RequestsPerUnit: 42, Unit: typev3.RateLimitUnit_MINUTE}); got == nil || *got != *want {
		t.Errorf("limit = %+v, want %+v", got, want)
	}
	if ds[1].Limit != nil {
		t.Errorf("second descriptor limit = %+v, want nil", ds[1].Limit)
	}
	// A caller that keeps its slice allocates nothing the second time.
	allocs := testing.AllocsPerRun(100, func() {
		ds = r.AppendRateLimitDescriptors(ds[:0], 0, VhRateLimitsOverride, rq)
	})
	if allocs != 0 {
		t.Errorf("AppendRateLimitDescriptors allocates %v times with a reused slice, want 0", allocs)
	}
}

func TestRateLimitBuildErrors(t *testing.T) {
	const r0 = "route_config.virtual_hosts[0].routes[0].route"
	tests := []struct {
		name     string
		yaml     string
		wantPath string
		wantMsg  string
	}{
		{
			name:     "query_parameters refused by name",
			yaml:     `route: {cluster: c, rate_limits: [{actions: [{query_parameters: {query_parameter_name: q, descriptor_key: k}}]}]}`,
			wantPath: r0 + ".rate_limits[0].actions[0].query_parameters",
			wantMsg:  "query_parameters is not supported by herald yet (#8)",
		},
		{
			name:     "metadata refused by name",
			yaml:     `route: {cluster: c, rate_limits: [{actions: [{metadata: {descriptor_key: k, metadata_key: {key: a, path: [{key: b}]}}}]}]}`,
			wantPath: r0 + ".rate_limits[0].actions[0].metadata",
			wantMsg:  "metadata is not supported by herald yet (#8)",
		},
		{
			name:     "dynamic metadata limit refused",
			yaml:     `route: {cluster: c, rate_limits: [{actions: [{generic_key: {descriptor_value: v}}], limit: {dynamic_metadata: {metadata_key: {key: a, path: [{key: b}]}}}}]}`,
			wantPath: r0 + ".rate_limits[0].limit.dynamic_metadata",
			wantMsg:  "not supported by herald yet",
		},
		{
			name:     "apply_on_stream_done refused",
			yaml:     `route: {cluster: c, rate_limits: [{apply_on_stream_done: true, actions: [{generic_key: {descriptor_value: v}}]}]}`,
			wantPath: r0 + ".rate_limits[0].apply_on_stream_done",
			wantMsg:  "apply_on_stream_done is not supported by herald yet (#8)",
		},
		{
			name:     "destination_cluster with weighted_clusters",
			yaml:     `route: {weighted_clusters: {clusters: [{name: a, weight: 1}]}, rate_limits: [{actions: [{destination_cluster: {}}]}]}`,
			wantPath: r0 + ".rate_limits",
			wantMsg:  "destination_cluster with weighted_clusters is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(parseRouteConfig(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes: [{match: {prefix: "/"}, `+tc.yaml+`}]`), BuildContext{Path: testPath})
			var l configerr.List
			if !errors.As(err, &l) {
				t.Fatalf("error %v is not a configerr.List", err)
			}
			for _, fe := range l {
				if fe.Path == tc.wantPath && strings.Contains(fe.Msg, tc.wantMsg) {
					return
				}
			}
			t.Errorf("errors:\n%v\nwant one at %s containing %q", err, tc.wantPath, tc.wantMsg)
		})
	}
}
