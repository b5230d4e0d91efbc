package grpcstats

import (
	"strings"
	"testing"

	grpcstatsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&grpcstatsv3.FilterConfig{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "empty", config: "{}"},
		{name: "all methods", config: "stats_for_all_methods: true\nenable_upstream_stats: true\nreplace_dots_in_grpc_service_name: true"},
		{name: "allowlist", config: "individual_method_stats_allowlist: {services: [{name: a.B, method_names: [C]}]}"},
		{name: "filter state refused", config: "emit_filter_state: true", wantErr: ".emit_filter_state: emit_filter_state is not supported by herald yet (#6)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &grpcstatsv3.FilterConfig{}
			if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
				t.Fatal(err)
			}
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func TestFrameInspector(t *testing.T) {
	frame := func(n int) string { return "\x00\x00\x00\x00" + string(rune(n)) + strings.Repeat("x", n) }
	two := frame(3) + frame(0)
	tests := []struct {
		name   string
		chunks []string
		want   []uint64 // new frames per chunk
	}{
		{name: "two frames in one chunk", chunks: []string{two}, want: []uint64{2}},
		{name: "header split", chunks: []string{two[:2], two[2:6], two[6:]}, want: []uint64{1, 0, 1}},
		{name: "byte by byte", chunks: strings.Split(frame(1), ""), want: []uint64{1, 0, 0, 0, 0, 0}},
		{name: "empty payloads", chunks: []string{frame(0) + frame(0) + frame(0)}, want: []uint64{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fi FrameInspector
			var got []uint64
			for _, c := range tc.chunks {
				got = append(got, fi.Inspect([]byte(c)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("frames per chunk (-want +got):\n%s", diff)
			}
		})
	}
}

func grpcRequest(path string) *hhttp.Headers {
	h := httpfiltertest.Request()
	h.Set(hhttp.Method, "POST")
	h.Set(hhttp.Path, path)
	h.Add("content-type", "application/grpc")
	return h
}

// call runs one gRPC call through a filter built from config: two request
// messages (the first before the router picked the cluster), one response
// message, then grpc-status in trailers (or trailers-only when
// trailersOnly).
func call(t *testing.T, store *stats.Store, config, path, grpcStatus string, trailersOnly bool) {
	t.Helper()
	cfg := httpfiltertest.Parse(t, config, &grpcstatsv3.FilterConfig{})
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	f := factory(cb).(*Filter)
	f.DecodeHeaders(grpcRequest(path), false)
	f.DecodeData([]byte("\x00\x00\x00\x00\x01a"), false)
	cb.Info.UpstreamCluster = "backend"
	f.DecodeData([]byte("\x00\x00\x00\x00\x00"), true)
	resp := httpfiltertest.Response(200)
	resp.Add("content-type", "application/grpc")
	if trailersOnly {
		resp.Add("grpc-status", grpcStatus)
		f.EncodeHeaders(resp, true)
	} else {
		f.EncodeHeaders(resp, false)
		f.EncodeData([]byte("\x00\x00\x00\x00\x02ok"), false)
		tr := &hhttp.Headers{}
		tr.Add("grpc-status", grpcStatus)
		f.EncodeTrailers(tr)
	}
	f.OnDestroy()
}

func counters(store *stats.Store) map[string]uint64 {
	out := map[string]uint64{}
	for _, c := range store.Counters() {
		if strings.HasPrefix(c.Name(), "cluster.") && c.Value() > 0 {
			out[c.Name()] = c.Value()
		}
	}
	return out
}

func TestStats(t *testing.T) {
	const path = "/grpc.testing.TestService/UnaryCall"
	tests := []struct {
		name         string
		config       string
		path         string
		status       string
		trailersOnly bool
		want         map[string]uint64
	}{
		{name: "default: no service/method", config: "{}", path: path, status: "0", want: map[string]uint64{
			"cluster.backend.grpc.0": 1, "cluster.backend.grpc.success": 1, "cluster.backend.grpc.total": 1,
			"cluster.backend.grpc.request_message_count": 2, "cluster.backend.grpc.response_message_count": 1,
		}},
		{name: "all methods", config: "stats_for_all_methods: true", path: path, status: "0", want: map[string]uint64{
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.0":                      1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.success":                1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.total":                  1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.request_message_count":  2,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.response_message_count": 1,
		}},
		{name: "dots replaced, failure", config: "stats_for_all_methods: true\nreplace_dots_in_grpc_service_name: true", path: path, status: "14", want: map[string]uint64{
			"cluster.backend.grpc.grpc_testing_TestService.UnaryCall.14":                     1,
			"cluster.backend.grpc.grpc_testing_TestService.UnaryCall.failure":                1,
			"cluster.backend.grpc.grpc_testing_TestService.UnaryCall.total":                  1,
			"cluster.backend.grpc.grpc_testing_TestService.UnaryCall.request_message_count":  2,
			"cluster.backend.grpc.grpc_testing_TestService.UnaryCall.response_message_count": 1,
		}},
		{name: "allowlisted", config: "individual_method_stats_allowlist: {services: [{name: grpc.testing.TestService, method_names: [UnaryCall]}]}", path: path, status: "12", trailersOnly: true, want: map[string]uint64{
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.12":                    1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.failure":               1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.total":                 1,
			"cluster.backend.grpc.grpc.testing.TestService.UnaryCall.request_message_count": 2,
		}},
		{name: "not allowlisted", config: "individual_method_stats_allowlist: {services: [{name: grpc.testing.TestService, method_names: [Other]}]}", path: path, status: "99", want: map[string]uint64{
			"cluster.backend.grpc.other": 1, "cluster.backend.grpc.failure": 1, "cluster.backend.grpc.total": 1,
			"cluster.backend.grpc.request_message_count": 2, "cluster.backend.grpc.response_message_count": 1,
		}},
		// Not a service/method path: no stats (Envoy's do_stat_tracking_).
		{name: "not a gRPC path", config: "stats_for_all_methods: true", path: "/x", status: "0", want: map[string]uint64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			call(t, store, tc.config, tc.path, tc.status, tc.trailersOnly)
			if diff := cmp.Diff(tc.want, counters(store)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNonGRPCRequestIgnored(t *testing.T) {
	store := stats.NewStore()
	factory, err := Build(&grpcstatsv3.FilterConfig{}, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	cb.Info.UpstreamCluster = "backend"
	f := factory(cb).(*Filter)
	f.DecodeHeaders(httpfiltertest.Request(), true)
	resp := httpfiltertest.Response(200)
	resp.Add("grpc-status", "0")
	f.EncodeHeaders(resp, true)
	if got := counters(store); len(got) != 0 {
		t.Errorf("counters %v, want none", got)
	}
}

// TestStatsForCachedAllocs: once a cluster's method stats exist, finding
// them again (every request) allocates nothing.
func TestStatsForCachedAllocs(t *testing.T) {
	c := &Config{store: stats.NewStore()}
	first := c.statsFor("backend", "grpc.testing.TestService", "UnaryCall")
	other := c.statsFor("backend", "", "")
	if first == other {
		t.Fatal("distinct keys share stats")
	}
	var got *methodStats
	allocs := testing.AllocsPerRun(100, func() {
		got = c.statsFor("backend", "grpc.testing.TestService", "UnaryCall")
	})
	if got != first {
		t.Errorf("statsFor returned new stats for a cached key")
	}
	if allocs != 0 {
		t.Errorf("statsFor on a cached key: %v allocs, want 0", allocs)
	}
}
