package router

import (
	"fmt"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// seedRouteConfig returns the route_config of testdata/path-routing.yaml, a
// copy of the seed config /work/shared/seeds/configs/path-routing.yaml.
func seedRouteConfig(t testing.TB) *routev3.RouteConfiguration {
	t.Helper()
	y, err := os.ReadFile("testdata/path-routing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &bs); err != nil {
		t.Fatal(err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return hcm.GetRouteConfig()
}

func seedTable(t testing.TB) *Table {
	t.Helper()
	known := map[string]bool{"app1_cluster": true, "app2_cluster": true, "app3_cluster": true, "app4_cluster": true}
	tbl, err := Build(seedRouteConfig(t), BuildContext{
		Path:          "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config",
		ClusterExists: func(name string) bool { return known[name] },
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tbl
}

// prefixTable has n prefix routes "/svcNNNN/" under one exact domain and a
// catch-all virtual host.
func prefixTable(t testing.TB, n int) *Table {
	t.Helper()
	var b strings.Builder
	b.WriteString("virtual_hosts:\n- name: big\n  domains: [\"api.example.com\"]\n  routes:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {name: r%d, match: {prefix: \"/svc%04d/\"}, route: {cluster: c%d}}\n", i, i, i%10)
	}
	b.WriteString("- name: other\n  domains: [\"*\"]\n  routes: [{match: {prefix: \"/\"}, route: {cluster: c0}}]\n")
	return mustBuild(t, b.String())
}

func TestSeedPathRouting(t *testing.T) {
	tbl := seedTable(t)
	tests := []struct {
		name       string
		path       string
		wantKind   ActionKind
		wantStatus int
		wantBody   string
		wantCounts map[string]int // clusters over random 0..99
	}{
		{name: "admin is blocked", path: "/admin/users", wantKind: ActionDirectResponse, wantStatus: 403, wantBody: "Forbidden"},
		{name: "app3", path: "/app3/x?y=1", wantKind: ActionCluster, wantCounts: map[string]int{"app3_cluster": 100}},
		{name: "80/20 split", path: "/", wantKind: ActionCluster, wantCounts: map[string]int{"app1_cluster": 80, "app2_cluster": 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := req("localhost:8000", tc.path)
			r, vh := tbl.Match(h)
			if r == nil || vh.Name() != "backend" {
				t.Fatalf("no route in virtual host backend for %s", tc.path)
			}
			if r.Kind() != tc.wantKind || r.Status() != tc.wantStatus || r.DirectResponseBody() != tc.wantBody {
				t.Errorf("kind %v status %d body %q; want %v %d %q", r.Kind(), r.Status(), r.DirectResponseBody(), tc.wantKind, tc.wantStatus, tc.wantBody)
			}
			if tc.wantCounts != nil {
				got := map[string]int{}
				for i := uint64(0); i < 100; i++ {
					got[r.ClusterName(h, i)]++
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.wantCounts) {
					t.Errorf("clusters over 100 picks = %v, want %v", got, tc.wantCounts)
				}
			}
		})
	}
}

// TestMatchAllocatesNothing holds Match to its promise on the request path.
func TestMatchAllocatesNothing(t *testing.T) {
	big := prefixTable(t, 1000)
	seed := seedTable(t)
	headerTable := oneRoute(t, `{prefix: "/", headers: [{name: x-a, exact_match: v}, {name: x-b, present_match: true}], query_parameters: [{name: q, string_match: {prefix: "1"}}]}`)
	tests := []struct {
		name  string
		table *Table
		h     *hhttp.Headers
	}{
		{name: "1000 prefixes, last route", table: big, h: req("API.Example.com", "/svc0999/items?id=7")},
		{name: "1000 prefixes, catch-all host", table: big, h: req("other.org", "/x")},
		{name: "seed path routing", table: seed, h: req("localhost:8000", "/app4/x")},
		{name: "headers and query", table: headerTable, h: req("h", "/a?q=12", "x-a", "v", "x-b", "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r, _ := tc.table.Match(tc.h); r == nil {
				t.Fatal("no route")
			}
			if n := testing.AllocsPerRun(100, func() { tc.table.Match(tc.h) }); n != 0 {
				t.Errorf("Match allocates %v times per call, want 0", n)
			}
		})
	}
}

func BenchmarkMatchPrefix1000(b *testing.B) {
	tbl := prefixTable(b, 1000)
	for _, bc := range []struct {
		name string
		h    *hhttp.Headers
	}{
		{name: "first", h: req("api.example.com", "/svc0000/items")},
		{name: "middle", h: req("api.example.com", "/svc0500/items")},
		{name: "last", h: req("api.example.com", "/svc0999/items?id=7")},
		{name: "uppercase-host", h: req("API.EXAMPLE.COM", "/svc0999/items")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r, _ := tbl.Match(bc.h); r == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

func BenchmarkMatchSeedPathRouting(b *testing.B) {
	tbl := seedTable(b)
	hs := []*hhttp.Headers{
		req("localhost:8000", "/admin"),
		req("localhost:8000", "/app1/a"),
		req("localhost:8000", "/app4/b?x=1"),
		req("localhost:8000", "/"),
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if r, _ := tbl.Match(hs[i&3]); r == nil {
			b.Fatal("no route")
		}
		i++
	}
}

func BenchmarkPickWeightedCluster(b *testing.B) {
	tbl := seedTable(b)
	h := req("localhost:8000", "/")
	r, _ := tbl.Match(h)
	b.ReportAllocs()
	var n uint64
	for b.Loop() {
		r.PickCluster(h, n)
		n++
	}
}
