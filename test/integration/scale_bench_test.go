package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// Issue #7's scale figures: a config with 10,000 routes, 1,000 clusters
// and 10,000 endpoints. Run with
//
//	go test -run '^$' -bench Scale -benchtime 10x ./test/integration/
//
// They report ms per applied update and herald's RSS (MiB) after the
// updates. Benchmarks only: figures are measured, never asserted.

const (
	scaleClusters         = 1000
	scaleEndpointsPerClus = 10
	scaleRoutes           = 10000
)

// scaleEndpointAddr is endpoint j of cluster i: distinct loopback
// addresses that nothing dials (no health checks, no traffic).
func scaleEndpointAddr(i, j int) (string, int) {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/250, i%250, 1+j), 10000 + j
}

// scaleStatic renders the static bootstrap; gen changes the last route's
// prefix so that each reload is a real listener change.
func scaleStatic(gen int) string {
	var vh strings.Builder
	vh.WriteString("            - name: vh\n              domains: [\"*\"]\n              routes:\n")
	for r := 0; r < scaleRoutes; r++ {
		prefix := fmt.Sprintf("/r%d/", r)
		if r == scaleRoutes-1 {
			prefix = fmt.Sprintf("/gen%d/", gen)
		}
		fmt.Fprintf(&vh, "              - match: { prefix: %q }\n                route: { cluster: c%d }\n", prefix, r%scaleClusters)
	}
	var clusters []string
	for i := 0; i < scaleClusters; i++ {
		var eps strings.Builder
		for j := 0; j < scaleEndpointsPerClus; j++ {
			a, p := scaleEndpointAddr(i, j)
			fmt.Fprintf(&eps, "        - endpoint: { address: { socket_address: { address: %s, port_value: %d } } }\n", a, p)
		}
		clusters = append(clusters, fmt.Sprintf(`  - name: c%d
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: c%d
      endpoints:
      - lb_endpoints:
%s`, i, i, eps.String()))
	}
	return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: strings.TrimRight(vh.String(), "\n")})}, clusters...)
}

// rssMiB reads herald's current and peak resident set size, in MiB.
func rssMiB(b *testing.B, h *testutil.Herald) (rss, hwm float64) {
	cur, err := h.RSS()
	if err != nil {
		b.Fatal(err)
	}
	peak, err := h.PeakRSS()
	if err != nil {
		b.Fatal(err)
	}
	return float64(cur) / (1 << 20), float64(peak) / (1 << 20)
}

// BenchmarkScaleStaticReload: each op rewrites the bootstrap (one route
// changed, so the listener is replaced; clusters unchanged) and applies
// it by SIGHUP; the op ends when /reload_status reports it applied.
func BenchmarkScaleStaticReload(b *testing.B) {
	testutil.Binary(b) // built before the clock starts
	t0 := time.Now()
	h := testutil.Start(b, scaleStatic(0))
	startup := time.Since(t0)
	startRSS, _ := rssMiB(b, h)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := os.WriteFile(h.Dir+"/envoy.yaml", []byte(scaleStatic(i+1)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if st := sighup(b, h); !st.OK {
			b.Fatalf("reload rejected: %s", st.Error)
		}
	}
	b.StopTimer()
	rss, hwm := rssMiB(b, h)
	b.ReportMetric(float64(startup.Milliseconds()), "ms-startup")
	b.ReportMetric(startRSS, "MiB-rss-start")
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(hwm, "MiB-peak")
}

// BenchmarkScaleXDSUpdate: the same scale over ADS (1,000 EDS clusters,
// 10,000 endpoints, 10,000 routes by RDS). Each op pushes an update of
// every endpoint assignment (one endpoint of each cluster moved) and ends
// when herald applied the last cluster's assignment.
func BenchmarkScaleXDSUpdate(b *testing.B) {
	ms := startManagementServer(b)
	clusters := make([]types.Resource, scaleClusters)
	for i := range clusters {
		clusters[i] = edsCluster(b, fmt.Sprintf("c%d", i))
	}
	var routes strings.Builder
	routes.WriteString("name: routes\nvirtual_hosts:\n- name: all\n  domains: [\"*\"]\n  routes:\n")
	for r := 0; r < scaleRoutes; r++ {
		fmt.Fprintf(&routes, "  - match: { prefix: \"/r%d/\" }\n    route: { cluster: c%d }\n", r, r%scaleClusters)
	}
	rc := fromYAML(b, routesTo(b, "c0", "x"), routes.String())
	assignments := func(gen int) []types.Resource {
		out := make([]types.Resource, scaleClusters)
		for i := range out {
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: fmt.Sprintf("c%d", i)}
			loc := &endpointv3.LocalityLbEndpoints{}
			for j := 0; j < scaleEndpointsPerClus; j++ {
				a, p := scaleEndpointAddr(i, j)
				if j == 0 {
					p += gen % 1000
				}
				loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
					Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
						SocketAddress: &corev3.SocketAddress{Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}},
					}}},
				}})
			}
			cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
			out[i] = cla
		}
		return out
	}
	push := func(gen int) {
		ms.push(b, fmt.Sprintf("v%d", gen), map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {xdsListener(b, "web", "")},
			resourcev3.RouteType:    {rc},
			resourcev3.ClusterType:  clusters,
			resourcev3.EndpointType: assignments(gen),
		}, map[resourcev3.Type]string{
			resourcev3.ListenerType: "1", resourcev3.RouteType: "1", resourcev3.ClusterType: "1",
			resourcev3.EndpointType: fmt.Sprint(gen),
		})
	}
	push(0)
	testutil.Binary(b) // built before the clock starts
	t0 := time.Now()
	h := testutil.Start(b, adsBootstrap(ms.addr))
	startup := time.Since(t0)
	last := fmt.Sprintf("cluster.c%d.update_success", scaleClusters-1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := h.Stat(last)
		push(i + 1)
		testutil.Eventually(b, 60*time.Second, func() error {
			if v := h.Stat(last); v <= before {
				return fmt.Errorf("%s = %d, update not applied yet", last, v)
			}
			return nil
		})
	}
	b.StopTimer()
	rss, hwm := rssMiB(b, h)
	b.ReportMetric(float64(startup.Milliseconds()), "ms-startup")
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(hwm, "MiB-peak")
}
