package cors

import (
	"testing"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	if e, ok := httpfilter.Registry.ByTypeURL(registry.TypeURL(&corsv3.Cors{})); !ok || e.Name != Name {
		t.Fatalf("Cors registered as %v, %v", e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&corsv3.CorsPolicy{})); !ok {
		t.Fatal("CorsPolicy is not registered for typed_per_filter_config")
	}
}

func TestBuildPerRoute(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		wantErr string
	}{
		{name: "full", policy: "allow_origin_string_match: [{exact: 'https://a.example'}]\nallow_methods: GET,POST\nmax_age: '600'\nallow_credentials: true"},
		{name: "bad regex", policy: "allow_origin_string_match: [{safe_regex: {regex: '('}}]", wantErr: ".allow_origin_string_match[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildPerRoute(httpfiltertest.Parse(t, tc.policy, &corsv3.CorsPolicy{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func corsRequest(method, origin string, extra ...string) *hhttp.Headers {
	h := httpfiltertest.Request()
	h.Set(hhttp.Method, method)
	if origin != "" {
		h.Add("origin", origin)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

func TestFilter(t *testing.T) {
	const policy = `allow_origin_string_match: [{exact: 'https://a.example'}, {suffix: '.b.example'}]
allow_methods: GET,PUT
allow_headers: x-custom
expose_headers: x-exposed
max_age: '600'
allow_credentials: true
allow_private_network_access: true
`
	tests := []struct {
		name     string
		policies []string // levels, least specific first
		req      *hhttp.Headers
		// wantPreflight: the filter answered; wantHeaders are checked on its
		// reply, or else on the upstream response after EncodeHeaders.
		wantPreflight bool
		wantHeaders   map[string]string
		wantAbsent    []string
		valid         uint64
		invalid       uint64
	}{
		{
			name:       "no policy: nothing happens",
			req:        corsRequest("GET", "https://a.example"),
			wantAbsent: []string{"access-control-allow-origin"},
		},
		{
			name:     "preflight answered",
			policies: []string{policy},
			req: corsRequest("OPTIONS", "https://a.example", "access-control-request-method", "PUT",
				"access-control-request-private-network", "true"),
			wantPreflight: true,
			wantHeaders: map[string]string{
				":status": "200", "access-control-allow-origin": "https://a.example",
				"access-control-allow-methods": "GET,PUT", "access-control-allow-headers": "x-custom",
				"access-control-max-age": "600", "access-control-allow-credentials": "true",
				"access-control-allow-private-network": "true",
			},
			valid: 1,
		},
		{
			name:     "actual request gets allow-origin",
			policies: []string{policy},
			req:      corsRequest("GET", "https://x.b.example"),
			wantHeaders: map[string]string{
				"access-control-allow-origin": "https://x.b.example", "access-control-allow-credentials": "true",
				"access-control-expose-headers": "x-exposed",
			},
			valid: 1,
		},
		{
			name:       "origin not allowed",
			policies:   []string{policy},
			req:        corsRequest("GET", "https://evil.example"),
			wantAbsent: []string{"access-control-allow-origin"},
			invalid:    1,
		},
		{
			// forward_not_matching_preflights defaults to true: passed upstream.
			name:       "non-matching preflight forwarded",
			policies:   []string{policy},
			req:        corsRequest("OPTIONS", "https://evil.example", "access-control-request-method", "GET"),
			wantAbsent: []string{"access-control-allow-origin"},
			invalid:    1,
		},
		{
			name:          "non-matching preflight answered without allow-origin",
			policies:      []string{policy + "forward_not_matching_preflights: false\n"},
			req:           corsRequest("OPTIONS", "https://evil.example", "access-control-request-method", "GET"),
			wantPreflight: true,
			wantHeaders:   map[string]string{":status": "200", "access-control-allow-methods": "GET,PUT"},
			wantAbsent:    []string{"access-control-allow-origin"},
			invalid:       1,
		},
		{
			name:          "wildcard methods echo the request",
			policies:      []string{"allow_origin_string_match: [{safe_regex: {regex: '.*'}}]\nallow_methods: '*'\nallow_headers: '*'"},
			req:           corsRequest("OPTIONS", "https://any.example", "access-control-request-method", "PATCH", "access-control-request-headers", "x-a,x-b"),
			wantPreflight: true,
			wantHeaders:   map[string]string{"access-control-allow-methods": "PATCH", "access-control-allow-headers": "x-a,x-b"},
			valid:         1,
		},
		{
			// The route's policy has only origins; methods come from the
			// virtual host's.
			name:          "levels merge field by field",
			policies:      []string{"allow_methods: POST\nallow_origin_string_match: [{exact: 'https://vh.example'}]", "allow_origin_string_match: [{exact: 'https://route.example'}]"},
			req:           corsRequest("OPTIONS", "https://route.example", "access-control-request-method", "POST"),
			wantPreflight: true,
			wantHeaders:   map[string]string{"access-control-allow-origin": "https://route.example", "access-control-allow-methods": "POST"},
			valid:         1,
		},
		{
			name:       "shadow mode counts only",
			policies:   []string{policy + "filter_enabled: {default_value: {numerator: 0}}\nshadow_enabled: {default_value: {numerator: 100}}\n"},
			req:        corsRequest("GET", "https://a.example"),
			wantAbsent: []string{"access-control-allow-origin"},
			valid:      1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			factory, err := Build(&corsv3.Cors{}, ctx)
			if err != nil {
				t.Fatal(err)
			}
			var levels []any
			for _, p := range tc.policies {
				built, err := BuildPerRoute(httpfiltertest.Parse(t, p, &corsv3.CorsPolicy{}), ctx)
				if err != nil {
					t.Fatal(err)
				}
				levels = append(levels, built)
			}
			cb := &httpfiltertest.Callbacks{MatchedRoute: httpfiltertest.ListRoute{Levels: levels}}
			f := factory(cb)
			cb.Filter = f
			st := f.(httpfilter.DecoderFilter).DecodeHeaders(tc.req, true)
			if got := st == httpfilter.Stop; got != tc.wantPreflight {
				t.Fatalf("answered preflight = %v, want %v", got, tc.wantPreflight)
			}
			var got *hhttp.Headers
			if tc.wantPreflight {
				got = cb.Replies[0].Headers
				if cb.Info.ResponseCodeDetails != DetailsPreflight {
					t.Errorf("details %q, want %q", cb.Info.ResponseCodeDetails, DetailsPreflight)
				}
			} else {
				got = httpfiltertest.Response(200)
				f.(httpfilter.EncoderFilter).EncodeHeaders(got, true)
			}
			for k, v := range tc.wantHeaders {
				if g := got.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			for _, k := range tc.wantAbsent {
				if got.Has(k) {
					t.Errorf("%s present: %q", k, got.Get(k))
				}
			}
			if v := store.Counter("http.ingress.cors.origin_valid").Value(); v != tc.valid {
				t.Errorf("origin_valid = %d, want %d", v, tc.valid)
			}
			if v := store.Counter("http.ingress.cors.origin_invalid").Value(); v != tc.invalid {
				t.Errorf("origin_invalid = %d, want %d", v, tc.invalid)
			}
			f.(httpfilter.Destroyer).OnDestroy()
		})
	}
}

// TestMostSpecificOnly: a route without PerFilterConfigLister still gets
// its most specific policy.
func TestMostSpecificOnly(t *testing.T) {
	ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
	factory, _ := Build(&corsv3.Cors{}, ctx)
	p, err := BuildPerRoute(httpfiltertest.Parse(t, "allow_origin_string_match: [{exact: 'https://a.example'}]", &corsv3.CorsPolicy{}), ctx)
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{MatchedRoute: httpfiltertest.Route{Name: p}}
	f := factory(cb)
	f.(httpfilter.DecoderFilter).DecodeHeaders(corsRequest("GET", "https://a.example"), true)
	h := httpfiltertest.Response(200)
	f.(httpfilter.EncoderFilter).EncodeHeaders(h, true)
	if got := h.Get("access-control-allow-origin"); got != "https://a.example" {
		t.Errorf("allow-origin = %q", got)
	}
}

func BenchmarkActualRequest(b *testing.B) {
	ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
	factory, _ := Build(&corsv3.Cors{}, ctx)
	p, err := BuildPerRoute(&corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "https://a.example"}}},
		ExposeHeaders:          "x-e",
	}, ctx)
	if err != nil {
		b.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{MatchedRoute: httpfiltertest.Route{Name: p}}
	req := corsRequest("GET", "https://a.example")
	resp := httpfiltertest.Response(200)
	resp.Add("access-control-allow-origin", "")
	resp.Add("access-control-expose-headers", "")
	b.ReportAllocs()
	for b.Loop() {
		f := factory(cb)
		f.(httpfilter.DecoderFilter).DecodeHeaders(req, true)
		f.(httpfilter.EncoderFilter).EncodeHeaders(resp, true)
		f.(httpfilter.Destroyer).OnDestroy()
	}
}
