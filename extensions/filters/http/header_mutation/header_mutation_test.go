package headermutation

import (
	"testing"

	hmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	if e, ok := httpfilter.Registry.ByTypeURL(registry.TypeURL(&hmv3.HeaderMutation{})); !ok || e.Name != Name {
		t.Fatalf("HeaderMutation registered as %v, %v", e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&hmv3.HeaderMutationPerRoute{})); !ok {
		t.Fatal("HeaderMutationPerRoute not registered")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "all actions", config: "mutations:\n  request_mutations:\n  - remove: x-a\n  - append: {header: {key: x-b, value: b}}\n  - remove_on_match: {key_matcher: {prefix: x-internal-}}"},
		{name: "query parameters refused", config: "mutations: {query_parameter_mutations: [{remove: a}]}", wantErr: ".mutations.query_parameter_mutations: query_parameter_mutations is not supported by herald yet (#8)"},
		{name: "command operator refused", config: "mutations: {response_mutations: [{remove: a}, {append: {header: {key: x-t, value: '%START_TIME%'}}}]}", wantErr: ".mutations.response_mutations[1].append.header.value: command operators"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(httpfiltertest.Parse(t, tc.config, &hmv3.HeaderMutation{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func fields(h *hhttp.Headers) []string {
	var out []string
	for _, f := range h.Fields {
		if f.Name[0] != ':' {
			out = append(out, f.Name+"="+f.Value)
		}
	}
	return out
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name         string
		config       string
		levels       []string // per-route configs, least specific first
		in           []string // request header pairs
		wantRequest  []string
		wantResponse []string
	}{
		{
			name: "filter mutations",
			config: `mutations:
  request_mutations:
  - remove: x-remove
  - append: {header: {key: x-added, value: '1'}}
  - append: {header: {key: x-keep, value: new}, append_action: ADD_IF_ABSENT}
  - append: {header: {key: x-over, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - remove_on_match: {key_matcher: {prefix: x-internal-}}
  - append: {header: {key: x-pct, value: '100%%'}}
  response_mutations:
  - append: {header: {key: x-resp, value: 'yes'}}`,
			in:           []string{"x-remove", "a", "x-keep", "old", "x-over", "old", "x-internal-a", "1", "x-internal-b", "2"},
			wantRequest:  []string{"x-keep=old", "x-over=new", "x-added=1", "x-pct=100%"},
			wantResponse: []string{"x-resp=yes"},
		},
		{
			// Without most_specific_header_mutations_wins the route's level
			// runs first and the route configuration's last: its overwrite
			// wins.
			name:   "least specific wins by default",
			config: "mutations: {}",
			levels: []string{
				"mutations: {request_mutations: [{append: {header: {key: x-level, value: table}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]}",
				"mutations: {request_mutations: [{append: {header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]}",
			},
			wantRequest:  []string{"x-level=table"},
			wantResponse: nil,
		},
		{
			name:   "most specific wins when asked",
			config: "mutations: {}\nmost_specific_header_mutations_wins: true",
			levels: []string{
				"mutations: {request_mutations: [{append: {header: {key: x-level, value: table}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]}",
				"mutations: {request_mutations: [{append: {header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]}",
			},
			wantRequest: []string{"x-level=route"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &hmv3.HeaderMutation{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			var levels []any
			for _, l := range tc.levels {
				m, err := BuildPerRoute(httpfiltertest.Parse(t, l, &hmv3.HeaderMutationPerRoute{}), ctx)
				if err != nil {
					t.Fatal(err)
				}
				levels = append(levels, m)
			}
			cb := &httpfiltertest.Callbacks{MatchedRoute: httpfiltertest.ListRoute{Levels: levels}}
			f := factory(cb)
			req := httpfiltertest.Request()
			for i := 0; i+1 < len(tc.in); i += 2 {
				req.Add(tc.in[i], tc.in[i+1])
			}
			f.(httpfilter.DecoderFilter).DecodeHeaders(req, true)
			if diff := cmp.Diff(tc.wantRequest, fields(req)); diff != "" {
				t.Errorf("request headers (-want +got):\n%s", diff)
			}
			resp := httpfiltertest.Response(200)
			f.(httpfilter.EncoderFilter).EncodeHeaders(resp, true)
			if diff := cmp.Diff(tc.wantResponse, fields(resp)); diff != "" {
				t.Errorf("response headers (-want +got):\n%s", diff)
			}
			f.(httpfilter.Destroyer).OnDestroy()
		})
	}
}

func BenchmarkMutations(b *testing.B) {
	cfg := &hmv3.HeaderMutation{}
	if _, err := httpfiltertest.Unmarshal(cfg, "mutations: {request_mutations: [{remove: x-a}, {append: {header: {key: x-b, value: b}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}], response_mutations: [{append: {header: {key: x-c, value: c}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}]}"); err != nil {
		b.Fatal(err)
	}
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		b.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	req := httpfiltertest.Request()
	resp := httpfiltertest.Response(200)
	b.ReportAllocs()
	for b.Loop() {
		f := factory(cb)
		f.(httpfilter.DecoderFilter).DecodeHeaders(req, true)
		f.(httpfilter.EncoderFilter).EncodeHeaders(resp, true)
		f.(httpfilter.Destroyer).OnDestroy()
	}
}
