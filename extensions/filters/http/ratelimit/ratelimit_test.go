package ratelimit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&rlv3.RateLimit{})
	e, ok := httpfilter.Registry.ByTypeURL(url)
	if !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v; want %s", url, e, ok, Name)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&rlv3.RateLimitPerRoute{})); !ok {
		t.Errorf("per-route RateLimitPerRoute is not registered")
	}
}

const service = "rate_limit_service: {transport_api_version: V3, grpc_service: {google_grpc: {target_uri: '127.0.0.1:1', stat_prefix: rls}}}"

func TestBuild(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		perRoute bool
		wantErr  string // "" for valid; else the text after httpfiltertest.FilterPath
	}{
		{name: "minimal", config: "domain: d\n" + service},
		{
			name:   "full",
			config: "domain: d\nstage: 3\nrequest_type: external\ntimeout: 0.1s\nfailure_mode_deny: true\nrate_limited_as_resource_exhausted: true\nenable_x_ratelimit_headers: DRAFT_VERSION_03\ndisable_x_envoy_ratelimited_header: true\nrate_limited_status: {code: 503}\nstatus_on_error: {code: 503}\n" + service,
		},
		{
			name:    "transport_api_version must be V3",
			config:  "domain: d\nrate_limit_service: {grpc_service: {google_grpc: {target_uri: '127.0.0.1:1', stat_prefix: rls}}}",
			wantErr: ".rate_limit_service.transport_api_version: transport_api_version must be V3",
		},
		{name: "stat_prefix refused by name", config: "domain: d\nstat_prefix: x\n" + service, wantErr: ".stat_prefix: stat_prefix is not supported by herald yet (#8)"},
		{name: "per-route", perRoute: true, config: "vh_rate_limits: INCLUDE\ndomain: other"},
		{name: "per-route rate_limits refused", perRoute: true, config: "rate_limits: [{actions: [{generic_key: {descriptor_value: v}}]}]", wantErr: ".rate_limits: rate_limits is not supported by herald yet (#8)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
			var err error
			if tc.perRoute {
				_, err = BuildPerRoute(httpfiltertest.Parse(t, tc.config, &rlv3.RateLimitPerRoute{}), ctx)
			} else {
				_, err = Build(httpfiltertest.Parse(t, tc.config, &rlv3.RateLimit{}), ctx)
			}
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

// fakeService is an in-process envoy.service.ratelimit.v3.RateLimitService.
type fakeService struct {
	rlsv3.UnimplementedRateLimitServiceServer
	answer func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)

	mu       sync.Mutex
	requests []*rlsv3.RateLimitRequest
}

func (s *fakeService) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	return s.answer(req)
}

// startService serves s on a loopback port and returns its address.
func startService(t *testing.T, s *fakeService) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(gs, s)
	go gs.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// descriptors renders a request's descriptors as "k=v,k=v" strings.
func descriptors(req *rlsv3.RateLimitRequest) []string {
	out := []string{}
	for _, d := range req.GetDescriptors() {
		var parts []string
		for _, e := range d.GetEntries() {
			parts = append(parts, e.GetKey()+"="+e.GetValue())
		}
		out = append(out, strings.Join(parts, ","))
	}
	return out
}

const routes = `
virtual_hosts:
- name: v
  domains: ["*"]
  rate_limits: [{actions: [{generic_key: {descriptor_value: vh}}]}]
  routes:
  - match: {prefix: /limited}
    route:
      cluster: backend
      rate_limits:
      - actions: [{destination_cluster: {}}, {request_headers: {header_name: x-user, descriptor_key: user}}]
  - match: {prefix: /per-route}
    route:
      cluster: backend
      rate_limits: [{actions: [{generic_key: {descriptor_value: route}}]}]
    typed_per_filter_config:
      envoy.filters.http.ratelimit:
        "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
        vh_rate_limits: INCLUDE
        domain: per-route-domain
  - match: {prefix: /stage1}
    route:
      cluster: backend
      rate_limits: [{stage: 1, actions: [{generic_key: {descriptor_value: s1}}]}]
  - match: {prefix: /}
    direct_response: {status: 200}
`

func routeFor(t *testing.T, path string) *router.Route {
	t.Helper()
	rc := httpfiltertest.Parse(t, routes, &routev3.RouteConfiguration{})
	tbl, err := router.Build(rc, router.BuildContext{Path: "route_config", FilterContext: httpfiltertest.BuildContext("", stats.NewStore())})
	if err != nil {
		t.Fatal(err)
	}
	h := httpfiltertest.Request()
	h.Set(hhttp.Path, path)
	r, _ := tbl.Match(h)
	if r == nil {
		t.Fatalf("no route for %s", path)
	}
	return r
}

func TestFilter(t *testing.T) {
	okAnswer := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return &rlsv3.RateLimitResponse{
			OverallCode:          rlsv3.RateLimitResponse_OK,
			RequestHeadersToAdd:  []*corev3.HeaderValue{{Key: "x-rl-req", Value: "added"}},
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rl-resp", Value: "ok"}},
		}, nil
	}
	overLimit := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return &rlsv3.RateLimitResponse{
			OverallCode:          rlsv3.RateLimitResponse_OVER_LIMIT,
			ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rl-resp", Value: "over"}},
			RawBody:              []byte("slow down"),
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
				{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE, Name: "per-user"}, DurationUntilReset: durationpb.New(30 * time.Second)},
				{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 100, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND}, LimitRemaining: 7, DurationUntilReset: durationpb.New(time.Second)},
			},
		}, nil
	}
	failing := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return nil, errors.New("redis is down")
	}
	slow := func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		time.Sleep(500 * time.Millisecond) // the service being slow is the point
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
	}
	tests := []struct {
		name    string
		config  string // filter config lines before rate_limit_service
		answer  func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)
		path    string
		headers []string
		grpc    bool

		wantCalled      []string // descriptors sent; nil: no call
		wantDomain      string
		wantStatus      Status
		wantCode        int
		wantBody        string
		wantDetails     string
		wantFlag        streaminfo.ResponseFlag
		wantReplyHeader map[string]string // on the local reply
		wantReqHeader   map[string]string // added to the request
		wantRespHeader  map[string]string // added to an upstream response by EncodeHeaders
		wantStats       map[string]uint64
	}{
		{
			name: "OK continues and adds the service's headers", answer: okAnswer,
			path: "/limited", headers: []string{"x-user", "alice"},
			wantCalled: []string{"destination_cluster=backend,user=alice"}, wantDomain: "d", wantStatus: Continue,
			wantReqHeader:  map[string]string{"x-rl-req": "added"},
			wantRespHeader: map[string]string{"x-rl-resp": "ok"},
			wantStats:      map[string]uint64{"cluster.backend.ratelimit.ok": 1},
		},
		{
			// request_headers without the header: no descriptor, no call.
			name: "no descriptor no call", answer: okAnswer, path: "/limited",
			wantStatus: Continue,
		},
		{
			name: "OVER_LIMIT answers 429", answer: overLimit, path: "/limited", headers: []string{"x-user", "bob"},
			wantCalled: []string{"destination_cluster=backend,user=bob"}, wantDomain: "d", wantStatus: Stop,
			wantCode: 429, wantBody: "slow down", wantDetails: DetailsRateLimited, wantFlag: streaminfo.RateLimited,
			wantReplyHeader: map[string]string{"x-envoy-ratelimited": "true", "x-rl-resp": "over"},
			wantStats:       map[string]uint64{"cluster.backend.ratelimit.over_limit": 1},
		},
		{
			name: "OVER_LIMIT without x-envoy-ratelimited, with x-ratelimit-*", answer: overLimit, path: "/limited", headers: []string{"x-user", "bob"},
			config:     "disable_x_envoy_ratelimited_header: true\nenable_x_ratelimit_headers: DRAFT_VERSION_03\nrate_limited_status: {code: 503}",
			wantCalled: []string{"destination_cluster=backend,user=bob"}, wantDomain: "d", wantStatus: Stop,
			wantCode: 503, wantBody: "slow down", wantDetails: DetailsRateLimited, wantFlag: streaminfo.RateLimited,
			wantReplyHeader: map[string]string{"x-envoy-ratelimited": "", "x-ratelimit-limit": `10, 10;w=60;name="per-user", 100;w=1`, "x-ratelimit-remaining": "0", "x-ratelimit-reset": "30"},
		},
		{
			name: "OVER_LIMIT gRPC as RESOURCE_EXHAUSTED", answer: overLimit, path: "/limited", headers: []string{"x-user", "bob"}, grpc: true,
			config:     "rate_limited_as_resource_exhausted: true",
			wantCalled: []string{"destination_cluster=backend,user=bob"}, wantDomain: "d", wantStatus: Stop,
			wantCode: 429, wantBody: "slow down", wantDetails: DetailsRateLimited, wantFlag: streaminfo.RateLimited,
			wantReplyHeader: map[string]string{"grpc-status": "8"},
		},
		{
			// Envoy: an unenforced OVER_LIMIT continues, marked on the response.
			name: "OVER_LIMIT not enforced", answer: overLimit, path: "/limited", headers: []string{"x-user", "bob"},
			config:     "filter_enforced: {default_value: {numerator: 0}}",
			wantCalled: []string{"destination_cluster=backend,user=bob"}, wantDomain: "d", wantStatus: Continue,
			wantRespHeader: map[string]string{"x-envoy-ratelimited": "true", "x-rl-resp": "over"},
			wantStats:      map[string]uint64{"cluster.backend.ratelimit.over_limit": 1},
		},
		{
			name: "filter_enabled 0% never calls", answer: overLimit, path: "/limited", headers: []string{"x-user", "bob"},
			config: "filter_enabled: {default_value: {numerator: 0}}", wantStatus: Continue,
		},
		{
			name: "error allowed by default", answer: failing, path: "/limited", headers: []string{"x-user", "carol"},
			wantCalled: []string{"destination_cluster=backend,user=carol"}, wantDomain: "d", wantStatus: Continue,
			wantStats: map[string]uint64{"cluster.backend.ratelimit.error": 1, "cluster.backend.ratelimit.failure_mode_allowed": 1},
		},
		{
			name: "error with failure_mode_deny answers 500", answer: failing, path: "/limited", headers: []string{"x-user", "carol"},
			config:     "failure_mode_deny: true",
			wantCalled: []string{"destination_cluster=backend,user=carol"}, wantDomain: "d", wantStatus: Stop,
			wantCode: 500, wantDetails: DetailsError, wantFlag: streaminfo.RateLimitServiceError,
			wantStats: map[string]uint64{"cluster.backend.ratelimit.error": 1, "cluster.backend.ratelimit.failure_mode_allowed": 0},
		},
		{
			name: "timeout is an error", answer: slow, path: "/limited", headers: []string{"x-user", "dave"},
			config:     "failure_mode_deny: true\ntimeout: 0.05s",
			wantCalled: []string{"destination_cluster=backend,user=dave"}, wantDomain: "d", wantStatus: Stop,
			wantCode: 500, wantDetails: DetailsError, wantFlag: streaminfo.RateLimitServiceError,
			wantStats: map[string]uint64{"cluster.backend.ratelimit.error": 1},
		},
		{
			name: "per-route INCLUDE and domain", answer: okAnswer, path: "/per-route",
			wantCalled: []string{"generic_key=route", "generic_key=vh"}, wantDomain: "per-route-domain", wantStatus: Continue,
		},
		{
			name: "virtual host limits for a route without its own", answer: okAnswer, path: "/stage1",
			config: "stage: 1", wantCalled: []string{"generic_key=s1"}, wantDomain: "d", wantStatus: Continue,
		},
		{name: "direct_response is not limited", answer: okAnswer, path: "/", wantStatus: Continue},
		{
			name: "external only skips internal requests", answer: okAnswer, path: "/per-route", headers: []string{"x-envoy-internal", "true"},
			config: "request_type: external", wantStatus: Continue,
		},
		{
			name: "internal only skips external requests", answer: okAnswer, path: "/per-route",
			config: "request_type: internal", wantStatus: Continue,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{answer: tc.answer}
			addr := startService(t, svc)
			store := stats.NewStore()
			// A generous timeout unless the case sets one: the first call
			// also dials.
			if !strings.Contains(tc.config, "timeout:") {
				tc.config += "\ntimeout: 5s"
			}
			cfg := "domain: d\n" + tc.config + "\nrate_limit_service: {transport_api_version: V3, grpc_service: {google_grpc: {target_uri: '" + addr + "', stat_prefix: rls}}}"
			factory, err := Build(httpfiltertest.Parse(t, cfg, &rlv3.RateLimit{}), httpfiltertest.BuildContext(Name, store))
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{MatchedRoute: routeFor(t, tc.path), GRPC: tc.grpc}
			f := factory(cb).(*Filter)
			cb.Filter = f
			h := httpfiltertest.Request()
			h.Set(hhttp.Path, tc.path)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				h.Add(tc.headers[i], tc.headers[i+1])
			}
			if got := f.DecodeHeaders(h, true); got != tc.wantStatus {
				t.Errorf("DecodeHeaders = %v, want %v", got, tc.wantStatus)
			}

			svc.mu.Lock()
			reqs := svc.requests
			svc.mu.Unlock()
			switch {
			case tc.wantCalled == nil && len(reqs) != 0:
				t.Errorf("service called with %v, want no call", descriptors(reqs[0]))
			case tc.wantCalled != nil && len(reqs) != 1:
				t.Errorf("service called %d times, want 1", len(reqs))
			case tc.wantCalled != nil:
				if diff := cmp.Diff(tc.wantCalled, descriptors(reqs[0])); diff != "" {
					t.Errorf("descriptors (-want +got):\n%s", diff)
				}
				if got := reqs[0].GetDomain(); got != tc.wantDomain {
					t.Errorf("domain = %q, want %q", got, tc.wantDomain)
				}
			}

			if tc.wantCode == 0 {
				if len(cb.Replies) != 0 {
					t.Fatalf("local reply %d, want none", cb.Replies[0].Code)
				}
				for k, v := range tc.wantReqHeader {
					if got := h.Get(k); got != v {
						t.Errorf("request header %s = %q, want %q", k, got, v)
					}
				}
				resp := httpfiltertest.Response(200)
				f.EncodeHeaders(resp, true)
				for k, v := range tc.wantRespHeader {
					if got := resp.Get(k); got != v {
						t.Errorf("response header %s = %q, want %q", k, got, v)
					}
				}
			} else {
				if len(cb.Replies) != 1 {
					t.Fatalf("%d replies, want 1", len(cb.Replies))
				}
				r := cb.Replies[0]
				if r.Code != tc.wantCode || r.Body != tc.wantBody || r.Details != tc.wantDetails {
					t.Errorf("reply = %d %q %q, want %d %q %q", r.Code, r.Body, r.Details, tc.wantCode, tc.wantBody, tc.wantDetails)
				}
				for k, v := range tc.wantReplyHeader {
					if got := r.Headers.Get(k); got != v {
						t.Errorf("reply header %s = %q, want %q", k, got, v)
					}
				}
				if r.Headers.Count("x-rl-resp") > 1 {
					t.Errorf("service headers added %d times", r.Headers.Count("x-rl-resp"))
				}
				if !cb.Info.HasFlag(tc.wantFlag) {
					t.Errorf("response flags lack %v", tc.wantFlag)
				}
			}
			for name, want := range tc.wantStats {
				if got := store.Counter(name).Value(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
			f.OnDestroy()
		})
	}
}

// Status aliases keep the table short.
type Status = httpfilter.Status

const (
	Continue = httpfilter.Continue
	Stop     = httpfilter.Stop
)
