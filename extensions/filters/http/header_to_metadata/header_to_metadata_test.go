package headertometadata

import (
	"encoding/base64"
	"testing"

	h2mv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	if e, ok := httpfilter.Registry.ByTypeURL(registry.TypeURL(&h2mv3.Config{})); !ok || e.Name != Name {
		t.Fatalf("Config registered as %v, %v", e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&h2mv3.Config{})); !ok {
		t.Fatal("Config not registered as a per-route config")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		perRoute bool
		wantErr  string
	}{
		{name: "empty filter config", config: "{}"},
		{name: "header and cookie rules", config: "request_rules:\n- header: x-a\n  on_header_present: {key: a}\n- cookie: s\n  on_header_missing: {key: s, value: none}"},
		{name: "per-route without rules", config: "{}", perRoute: true, wantErr: ": a per-route header_to_metadata config must specify request_rules or response_rules"},
		{name: "neither header nor cookie", config: "request_rules: [{on_header_present: {key: a}}]", wantErr: ".request_rules[0]: one of cookie or header"},
		{name: "header and cookie", config: "request_rules: [{header: x, cookie: c, on_header_present: {key: a}}]", wantErr: ".request_rules[0]: cannot specify both header and cookie"},
		{name: "no action", config: "response_rules: [{header: x}]", wantErr: ".response_rules[0]: rule has neither on_header_present nor on_header_missing"},
		{name: "remove with cookie", config: "request_rules: [{cookie: c, remove: true, on_header_present: {key: a}}]", wantErr: ".request_rules[0].remove: cannot specify remove for cookie"},
		{name: "missing without value", config: "request_rules: [{header: x, on_header_missing: {key: a}}]", wantErr: ".request_rules[0].on_header_missing.value: cannot specify on_header_missing rule with an empty value"},
		{name: "value and rewrite", config: "request_rules: [{header: x, on_header_present: {key: a, value: v, regex_value_rewrite: {pattern: {regex: a}, substitution: b}}}]", wantErr: ".request_rules[0].on_header_present: cannot specify both value and regex_value_rewrite"},
		{name: "bad rewrite group", config: "request_rules: [{header: x, on_header_present: {key: a, regex_value_rewrite: {pattern: {regex: a}, substitution: '\\1'}}}]", wantErr: ".request_rules[0].on_header_present.regex_value_rewrite: invalid substitution"},
		{name: "stat_prefix refused", config: "stat_prefix: s", wantErr: ".stat_prefix: stat_prefix is not supported by herald yet (#8)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, tc.config, &h2mv3.Config{})
			ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
			var err error
			if tc.perRoute {
				_, err = BuildPerRoute(cfg, ctx)
			} else {
				_, err = Build(cfg, ctx)
			}
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func protoValueB64(t *testing.T, v *structpb.Value) string {
	b, err := proto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestFilter(t *testing.T) {
	listB64 := protoValueB64(t, structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("x")}}))
	tests := []struct {
		name       string
		config     string
		perRoute   string // a route's Config, "" for none
		in         []string
		inResponse []string
		// want is the dynamic metadata as JSON-ish map: ns → key → value.
		want        map[string]map[string]any
		wantRequest []string // request headers after the filter (non-pseudo)
	}{
		{
			name:   "present into default namespace",
			config: "request_rules: [{header: x-version, on_header_present: {key: version}}]",
			in:     []string{"x-version", "v2"},
			want:   map[string]map[string]any{Name: {"version": "v2"}},
		},
		{
			name:   "missing uses value",
			config: "request_rules: [{header: x-version, on_header_present: {key: version}, on_header_missing: {metadata_namespace: envoy.lb, key: default, value: 'true'}}]",
			want:   map[string]map[string]any{"envoy.lb": {"default": "true"}},
		},
		{
			// Envoy: getAllOfHeaderAsString joins repeated values with ",".
			name:        "repeated header joined and removed",
			config:      "request_rules: [{header: X-Tag, remove: true, on_header_present: {metadata_namespace: ns, key: tag}}]",
			in:          []string{"x-tag", "a", "x-other", "o", "x-tag", "b"},
			want:        map[string]map[string]any{"ns": {"tag": "a,b"}},
			wantRequest: []string{"x-other=o"},
		},
		{
			name:   "present with fixed value",
			config: "request_rules: [{header: x-debug, on_header_present: {key: debug, value: 'on'}}]",
			in:     []string{"x-debug", "whatever"},
			want:   map[string]map[string]any{Name: {"debug": "on"}},
		},
		{
			name:   "regex rewrite",
			config: "request_rules: [{header: ':path', on_header_present: {key: cluster, regex_value_rewrite: {pattern: {regex: '^/(\\w+)/.*$'}, substitution: '\\1'}}}]",
			want:   map[string]map[string]any{Name: {"cluster": "api"}},
		},
		{
			name:   "rewrite to empty adds nothing",
			config: "request_rules: [{header: x-a, on_header_present: {key: a, regex_value_rewrite: {pattern: {regex: '.*'}, substitution: ''}}}]",
			in:     []string{"x-a", "zzz"},
		},
		{
			name:   "number",
			config: "request_rules: [{header: x-n, on_header_present: {key: n, type: NUMBER}}, {header: x-bad, on_header_present: {key: bad, type: NUMBER}}]",
			in:     []string{"x-n", " 42.5 ", "x-bad", "4x"},
			want:   map[string]map[string]any{Name: {"n": 42.5}},
		},
		{
			name:   "base64 string and protobuf value",
			config: "request_rules: [{header: x-b, on_header_present: {key: b, encode: BASE64}}, {header: x-p, on_header_present: {key: p, type: PROTOBUF_VALUE, encode: BASE64}}, {header: x-junk, on_header_present: {key: j, encode: BASE64}}]",
			in:     []string{"x-b", "aGVsbG8", "x-p", listB64, "x-junk", "!!!"},
			want:   map[string]map[string]any{Name: {"b": "hello", "p": []any{"x"}}},
		},
		{
			name:   "cookie",
			config: "request_rules: [{cookie: session, on_header_present: {key: s}}, {cookie: gone, on_header_missing: {key: g, value: missing}}]",
			in:     []string{"cookie", "a=1; session=\"abc\""},
			want:   map[string]map[string]any{Name: {"s": "abc", "g": "missing"}},
		},
		{
			name:   "too long value dropped",
			config: "request_rules: [{header: x-long, on_header_present: {key: l}}]",
			in:     []string{"x-long", string(make([]byte, maxValueLen))},
		},
		{
			name:       "response rules",
			config:     "response_rules: [{header: x-upstream, on_header_present: {metadata_namespace: resp, key: up}}]",
			inResponse: []string{"x-upstream", "u1"},
			want:       map[string]map[string]any{"resp": {"up": "u1"}},
		},
		{
			// The route's Config replaces the filter's rules.
			name:     "per-route replaces",
			config:   "request_rules: [{header: x-a, on_header_present: {key: a}}]",
			perRoute: "request_rules: [{header: x-b, on_header_present: {key: b}}]",
			in:       []string{"x-a", "1", "x-b", "2"},
			want:     map[string]map[string]any{Name: {"b": "2"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &h2mv3.Config{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{}
			if tc.perRoute != "" {
				pr, err := BuildPerRoute(httpfiltertest.Parse(t, tc.perRoute, &h2mv3.Config{}), ctx)
				if err != nil {
					t.Fatal(err)
				}
				cb.MatchedRoute = httpfiltertest.Route{Name: pr}
			}
			f := factory(cb).(*Filter)
			req := httpfiltertest.Request()
			req.Set(hhttp.Path, "/api/v1")
			for i := 0; i < len(tc.in); i += 2 {
				req.Add(tc.in[i], tc.in[i+1])
			}
			if got := f.DecodeHeaders(req, true); got != httpfilter.Continue {
				t.Fatalf("DecodeHeaders = %v, want Continue", got)
			}
			resp := httpfiltertest.Response(200)
			for i := 0; i < len(tc.inResponse); i += 2 {
				resp.Add(tc.inResponse[i], tc.inResponse[i+1])
			}
			if got := f.EncodeHeaders(resp, true); got != httpfilter.Continue {
				t.Fatalf("EncodeHeaders = %v, want Continue", got)
			}
			got := map[string]map[string]any{}
			for ns, s := range cb.Info.DynamicMetadata {
				got[ns] = s.AsMap()
			}
			want := tc.want
			if want == nil {
				want = map[string]map[string]any{}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("dynamic metadata (-want +got):\n%s", d)
			}
			if tc.wantRequest != nil {
				var fields []string
				for _, fl := range req.Fields {
					if fl.Name[0] != ':' {
						fields = append(fields, fl.Name+"="+fl.Value)
					}
				}
				if d := cmp.Diff(tc.wantRequest, fields); d != "" {
					t.Errorf("request headers (-want +got):\n%s", d)
				}
			}
			f.OnDestroy()
		})
	}
}

// BenchmarkDecodeHeaders is one request through a header rule.
func BenchmarkDecodeHeaders(b *testing.B) {
	factory, err := Build(httpfiltertest.Parse(b, "request_rules: [{header: x-version, on_header_present: {key: version}}, {header: x-none, on_header_present: {key: none}}]", &h2mv3.Config{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		b.Fatal(err)
	}
	req := httpfiltertest.Request()
	req.Add("x-version", "v2")
	cb := &httpfiltertest.Callbacks{}
	b.ReportAllocs()
	for b.Loop() {
		cb.Info.DynamicMetadata = nil
		f := factory(cb).(*Filter)
		f.DecodeHeaders(req, true)
		f.OnDestroy()
	}
}

// TestAllocs bounds the allocations of a request whose one rule matches:
// the namespace's Struct (header, map, group), the Value (one, with its
// Kind) and the stream's metadata map (two). A second matching rule of the
// same namespace adds only its Value.
func TestAllocs(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   float64
	}{
		{name: "one string rule", config: "request_rules: [{header: x-version, on_header_present: {key: version}}, {header: x-none, on_header_present: {key: none}}]", want: 6},
		{name: "two rules one namespace", config: "request_rules: [{header: x-version, on_header_present: {key: version}}, {header: x-n, on_header_present: {key: n, type: NUMBER}}]", want: 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &h2mv3.Config{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			if err != nil {
				t.Fatal(err)
			}
			req := httpfiltertest.Request()
			req.Add("x-version", "v2")
			req.Add("x-n", "3")
			cb := &httpfiltertest.Callbacks{}
			n := testing.AllocsPerRun(100, func() {
				cb.Info.DynamicMetadata = nil
				f := factory(cb).(*Filter)
				f.DecodeHeaders(req, true)
				f.OnDestroy()
			})
			if n > tc.want {
				t.Errorf("%v allocations per request, want at most %v", n, tc.want)
			}
		})
	}
}
