package localratelimit

import (
	"sync"
	"testing"

	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&lrlv3.LocalRateLimit{})
	e, ok := httpfilter.Registry.ByTypeURL(url)
	if !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v; want %s", url, e, ok, Name)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(url); !ok {
		t.Errorf("per-route %s is not registered", url)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		perRoute bool
		wantErr  string // "" for valid; else the text after httpfiltertest.FilterPath
	}{
		{name: "no bucket is valid on the filter", config: "stat_prefix: rl"},
		{
			name:   "full",
			config: "stat_prefix: rl\ntoken_bucket: {max_tokens: 5, tokens_per_fill: 2, fill_interval: 1s}\nfilter_enabled: {default_value: {numerator: 100}}\nenable_x_ratelimit_headers: DRAFT_VERSION_03\nresponse_headers_to_add: [{header: {key: x-rl, value: 'yes'}}]",
		},
		{
			name:     "per-route needs a bucket",
			config:   "stat_prefix: rl",
			perRoute: true,
			wantErr:  ".token_bucket: local rate limit token bucket must be set for per filter configs",
		},
		{
			name:    "fill interval under 50ms",
			config:  "stat_prefix: rl\ntoken_bucket: {max_tokens: 5, fill_interval: 0.049s}",
			wantErr: ".token_bucket.fill_interval: local rate limit token bucket fill timer must be >= 50ms",
		},
		{
			name:    "descriptors refused by name",
			config:  "stat_prefix: rl\ndescriptors: [{entries: [{key: k, value: v}], token_bucket: {max_tokens: 1, fill_interval: 1s}}]",
			wantErr: ".descriptors: descriptors is not supported by herald yet (#8)",
		},
		{
			name:    "command operators refused",
			config:  "stat_prefix: rl\nresponse_headers_to_add: [{header: {key: x-a, value: '%START_TIME%'}}]",
			wantErr: ".response_headers_to_add[0].header.value: command operators in header values are not supported by herald yet",
		},
		{
			name:    "append and append_action",
			config:  "stat_prefix: rl\nresponse_headers_to_add: [{header: {key: x-a, value: b}, append: true, append_action: ADD_IF_ABSENT}]",
			wantErr: ".response_headers_to_add[0]: Both append and append_action are set",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, tc.config, &lrlv3.LocalRateLimit{})
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

// TestFilter runs requests through one filter instance per request, as the
// connection manager does, and checks replies, headers and stats.
func TestFilter(t *testing.T) {
	type want struct {
		codes                     []int // 0: passed on (Continue)
		enabled, enforced, ok, rl uint64
	}
	tests := []struct {
		name     string
		config   string
		perRoute string // typed_per_filter_config for the route, "" for none
		requests int
		want     want
	}{
		{
			name:     "disabled without filter_enabled",
			config:   "stat_prefix: rl\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}",
			requests: 3,
			want:     want{codes: []int{0, 0, 0}},
		},
		{
			name:     "enforced bucket answers 429 when empty",
			config:   "stat_prefix: rl\ntoken_bucket: {max_tokens: 2, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}",
			requests: 3,
			want:     want{codes: []int{0, 0, 429}, enabled: 3, enforced: 1, ok: 2, rl: 1},
		},
		{
			// Enabled but not enforced: counted, request headers added, passed on.
			name:     "shadow mode",
			config:   "stat_prefix: rl\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}",
			requests: 2,
			want:     want{codes: []int{0, 0}, enabled: 2, ok: 1, rl: 1},
		},
		{
			name:     "custom status",
			config:   "stat_prefix: rl\nstatus: {code: ServiceUnavailable}\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}",
			requests: 2,
			want:     want{codes: []int{0, 503}, enabled: 2, enforced: 1, ok: 1, rl: 1},
		},
		{
			// The route's config replaces the filter's and has its own bucket
			// and stats.
			name:     "per-route override",
			config:   "stat_prefix: rl\ntoken_bucket: {max_tokens: 100, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}",
			perRoute: "stat_prefix: route\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}",
			requests: 2,
			want:     want{codes: []int{0, 429}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &lrlv3.LocalRateLimit{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			var route httpfilter.Route
			if tc.perRoute != "" {
				pc, err := BuildPerRoute(httpfiltertest.Parse(t, tc.perRoute, &lrlv3.LocalRateLimit{}), ctx)
				if err != nil {
					t.Fatal(err)
				}
				route = httpfiltertest.Route{Name: pc}
			}
			for i := 0; i < tc.requests; i++ {
				cb := &httpfiltertest.Callbacks{MatchedRoute: route}
				f := factory(cb)
				cb.Filter = f
				h := httpfiltertest.Request()
				st := f.(httpfilter.DecoderFilter).DecodeHeaders(h, true)
				got := 0
				if st == httpfilter.Stop {
					if len(cb.Replies) != 1 {
						t.Fatalf("request %d: Stop without a reply", i)
					}
					r := cb.Replies[0]
					got = r.Code
					if r.Body != Details || r.Details != Details {
						t.Errorf("request %d: body %q details %q, want %q twice", i, r.Body, r.Details, Details)
					}
					if !cb.Info.HasFlag(streaminfo.RateLimited) {
						t.Errorf("request %d: RL flag not set", i)
					}
				}
				if got != tc.want.codes[i] {
					t.Errorf("request %d: code %d, want %d", i, got, tc.want.codes[i])
				}
				f.(httpfilter.Destroyer).OnDestroy()
			}
			if tc.perRoute != "" {
				if got := store.Counter("route.http_local_rate_limit.rate_limited").Value(); got != 1 {
					t.Errorf("route.http_local_rate_limit.rate_limited = %d, want 1", got)
				}
				return
			}
			for name, want := range map[string]uint64{
				"enabled": tc.want.enabled, "enforced": tc.want.enforced, "ok": tc.want.ok, "rate_limited": tc.want.rl,
			} {
				if got := store.Counter("rl.http_local_rate_limit." + name).Value(); got != want {
					t.Errorf("rl.http_local_rate_limit.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	cfg := `stat_prefix: rl
token_bucket: {max_tokens: 1, fill_interval: 3600s}
filter_enabled: {default_value: {numerator: 100}}
filter_enforced: {default_value: {numerator: 100}}
enable_x_ratelimit_headers: DRAFT_VERSION_03
enable_retry_after_header: true
response_headers_to_add:
- header: {key: x-local-rate-limit, value: 'true'}
  append_action: OVERWRITE_IF_EXISTS_OR_ADD
`
	factory, err := Build(httpfiltertest.Parse(t, cfg, &lrlv3.LocalRateLimit{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	run := func() *httpfiltertest.Callbacks {
		cb := &httpfiltertest.Callbacks{}
		f := factory(cb)
		cb.Filter = f
		if f.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true) == httpfilter.Continue {
			// The upstream answered: the response passes the encoder.
			if err := cb.EncodeHeaders(httpfiltertest.Response(200), true); err != nil {
				t.Fatal(err)
			}
		}
		f.(httpfilter.Destroyer).OnDestroy()
		return cb
	}
	first := run().Replies[0].Headers
	for name, want := range map[string]string{"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "3600"} {
		if got := first.Get(name); got != want {
			t.Errorf("allowed response %s = %q, want %q", name, got, want)
		}
	}
	if first.Has("x-local-rate-limit") {
		t.Error("allowed response carries response_headers_to_add")
	}
	limited := run().Replies[0]
	if limited.Code != 429 {
		t.Fatalf("second request: %d, want 429", limited.Code)
	}
	for name, want := range map[string]string{
		"x-local-rate-limit": "true", "x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "retry-after": "3600",
	} {
		if got := limited.Headers.Get(name); got != want {
			t.Errorf("429 %s = %q, want %q", name, got, want)
		}
	}
}

func TestPerConnection(t *testing.T) {
	cfg := "stat_prefix: rl\nlocal_rate_limit_per_downstream_connection: true\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}"
	factory, err := Build(httpfiltertest.Parse(t, cfg, &lrlv3.LocalRateLimit{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	conns := []*sync.Map{{}, {}}
	tests := []struct {
		name string
		conn int
		want httpfilter.Status
	}{
		{name: "first connection, first request", conn: 0, want: httpfilter.Continue},
		{name: "first connection, second request", conn: 0, want: httpfilter.Stop},
		{name: "second connection has its own bucket", conn: 1, want: httpfilter.Continue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := httpfiltertest.ConnCallbacks{Callbacks: &httpfiltertest.Callbacks{}, Conn: conns[tc.conn]}
			f := factory(cb)
			cb.Filter = f
			if got := f.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true); got != tc.want {
				t.Errorf("DecodeHeaders = %v, want %v", got, tc.want)
			}
			f.(httpfilter.Destroyer).OnDestroy()
		})
	}
}

func TestGRPCResourceExhausted(t *testing.T) {
	cfg := "stat_prefix: rl\nrate_limited_as_resource_exhausted: true\ntoken_bucket: {max_tokens: 1, fill_interval: 3600s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}"
	factory, err := Build(httpfiltertest.Parse(t, cfg, &lrlv3.LocalRateLimit{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	var last *httpfiltertest.Callbacks
	for i := 0; i < 2; i++ {
		last = &httpfiltertest.Callbacks{GRPC: true}
		f := factory(last)
		last.Filter = f
		f.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true)
		f.(httpfilter.Destroyer).OnDestroy()
	}
	if got := last.Replies[0].Headers.Get("grpc-status"); got != "8" {
		t.Errorf("grpc-status = %q, want 8 (RESOURCE_EXHAUSTED)", got)
	}
}

// BenchmarkAllowed is the request path of an enabled filter that lets the
// request through: no allocation.
func BenchmarkAllowed(b *testing.B) {
	cfg := &lrlv3.LocalRateLimit{}
	if _, err := httpfiltertest.Unmarshal(cfg, "stat_prefix: rl\ntoken_bucket: {max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s}\nfilter_enabled: {default_value: {numerator: 100}}\nfilter_enforced: {default_value: {numerator: 100}}"); err != nil {
		b.Fatal(err)
	}
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		b.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	h := httpfiltertest.Request()
	b.ReportAllocs()
	for b.Loop() {
		f := factory(cb)
		f.(httpfilter.DecoderFilter).DecodeHeaders(h, true)
		f.(httpfilter.Destroyer).OnDestroy()
	}
}
