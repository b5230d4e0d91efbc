package fault

import (
	"context"
	"testing"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&faultv3.HTTPFault{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(url); !ok {
		t.Fatalf("per-route %s not registered", url)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "abort and delay", config: "abort: {http_status: 503, percentage: {numerator: 100}}\ndelay: {fixed_delay: 1s, percentage: {numerator: 10}}\nmax_active_faults: 3"},
		{name: "header faults", config: "abort: {header_abort: {}, percentage: {numerator: 100}}\ndelay: {header_delay: {}, percentage: {numerator: 100}}"},
		{name: "response_rate_limit refused", config: "response_rate_limit: {fixed_limit: {limit_kbps: 1}, percentage: {numerator: 100}}", wantErr: ".response_rate_limit: response_rate_limit is not supported by herald yet (#8)"},
		{name: "upstream_cluster refused", config: "upstream_cluster: x", wantErr: ".upstream_cluster: upstream_cluster is not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(httpfiltertest.Parse(t, tc.config, &faultv3.HTTPFault{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func withHeaders(kv ...string) *hhttp.Headers {
	h := httpfiltertest.Request()
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		perRoute string
		req      *hhttp.Headers
		grpc     bool
		// wantCode 0: passed on.
		wantCode     int
		wantBody     string
		wantGRPC     string
		wantDelay    time.Duration // a lower bound
		wantFlags    streaminfo.ResponseFlag
		wantAborts   uint64
		wantDelays   uint64
		clusterStats bool
	}{
		{
			name:       "fixed abort",
			config:     "abort: {http_status: 503, percentage: {numerator: 100}}",
			req:        httpfiltertest.Request(),
			wantCode:   503,
			wantBody:   "fault filter abort",
			wantFlags:  streaminfo.FaultInjected,
			wantAborts: 1,
		},
		{
			name:     "zero percent never aborts",
			config:   "abort: {http_status: 503, percentage: {numerator: 0}}",
			req:      httpfiltertest.Request(),
			wantCode: 0,
		},
		{
			name:       "custom body",
			config:     "abort: {http_status: 418, percentage: {numerator: 100}, response_body: teapot}",
			req:        httpfiltertest.Request(),
			wantCode:   418,
			wantBody:   "teapot",
			wantFlags:  streaminfo.FaultInjected,
			wantAborts: 1,
		},
		{
			name:       "grpc status",
			config:     "abort: {grpc_status: 5, percentage: {numerator: 100}}",
			req:        httpfiltertest.Request(),
			grpc:       true,
			wantCode:   200,
			wantGRPC:   "5",
			wantBody:   "fault filter abort",
			wantFlags:  streaminfo.FaultInjected,
			wantAborts: 1,
		},
		{
			name:       "header abort",
			config:     "abort: {header_abort: {}, percentage: {numerator: 100}}",
			req:        withHeaders("x-envoy-fault-abort-request", "429"),
			wantCode:   429,
			wantBody:   "fault filter abort",
			wantFlags:  streaminfo.FaultInjected,
			wantAborts: 1,
		},
		{
			name:     "header abort out of range",
			config:   "abort: {header_abort: {}, percentage: {numerator: 100}}",
			req:      withHeaders("x-envoy-fault-abort-request", "600"),
			wantCode: 0,
		},
		{
			// The header's percentage is capped by, and uses the denominator of,
			// the configured one: 0 of 100 never aborts.
			name:     "header percentage",
			config:   "abort: {header_abort: {}, percentage: {numerator: 100}}",
			req:      withHeaders("x-envoy-fault-abort-request", "503", "x-envoy-fault-abort-request-percentage", "0"),
			wantCode: 0,
		},
		{
			name:       "header grpc abort",
			config:     "abort: {header_abort: {}, percentage: {numerator: 100}}",
			req:        withHeaders("x-envoy-fault-abort-grpc-request", "14"),
			grpc:       true,
			wantCode:   200,
			wantGRPC:   "14",
			wantBody:   "fault filter abort",
			wantFlags:  streaminfo.FaultInjected,
			wantAborts: 1,
		},
		{
			name:       "header delay then pass",
			config:     "delay: {header_delay: {}, percentage: {numerator: 100}}",
			req:        withHeaders("x-envoy-fault-delay-request", "30"),
			wantDelay:  30 * time.Millisecond,
			wantFlags:  streaminfo.DelayInjected,
			wantDelays: 1,
		},
		{
			name:       "fixed delay then abort",
			config:     "delay: {fixed_delay: 0.02s, percentage: {numerator: 100}}\nabort: {http_status: 502, percentage: {numerator: 100}}",
			req:        httpfiltertest.Request(),
			wantCode:   502,
			wantBody:   "fault filter abort",
			wantDelay:  20 * time.Millisecond,
			wantFlags:  streaminfo.DelayInjected | streaminfo.FaultInjected,
			wantDelays: 1,
			wantAborts: 1,
		},
		{
			name:     "headers must match",
			config:   "abort: {http_status: 503, percentage: {numerator: 100}}\nheaders: [{name: x-fault, exact_match: 'yes'}]",
			req:      withHeaders("x-fault", "no"),
			wantCode: 0,
		},
		{
			name:     "downstream node not listed",
			config:   "abort: {http_status: 503, percentage: {numerator: 100}}\ndownstream_nodes: [a]",
			req:      withHeaders("x-envoy-downstream-service-node", "b"),
			wantCode: 0,
		},
		{
			name:         "downstream node listed, cluster stats",
			config:       "abort: {http_status: 503, percentage: {numerator: 100}}\ndownstream_nodes: [a]",
			req:          withHeaders("x-envoy-downstream-service-node", "a", "x-envoy-downstream-service-cluster", "web"),
			wantCode:     503,
			wantBody:     "fault filter abort",
			wantFlags:    streaminfo.FaultInjected,
			wantAborts:   1,
			clusterStats: true,
		},
		{
			name:     "per-route settings replace the filter's",
			config:   "abort: {http_status: 503, percentage: {numerator: 100}}",
			perRoute: "abort: {http_status: 400, percentage: {numerator: 100}}",
			req:      httpfiltertest.Request(),
			wantCode: 400, wantBody: "fault filter abort", wantFlags: streaminfo.FaultInjected, wantAborts: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &faultv3.HTTPFault{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{GRPC: tc.grpc}
			if tc.perRoute != "" {
				s, err := BuildPerRoute(httpfiltertest.Parse(t, tc.perRoute, &faultv3.HTTPFault{}), ctx)
				if err != nil {
					t.Fatal(err)
				}
				cb.MatchedRoute = httpfiltertest.Route{Name: s}
			}
			f := factory(cb)
			start := time.Now()
			st := f.(httpfilter.DecoderFilter).DecodeHeaders(tc.req, true)
			took := time.Since(start)
			got := 0
			if st == httpfilter.Stop {
				r := cb.Replies[0]
				got = r.Code
				if r.Body != tc.wantBody || r.Details != Details {
					t.Errorf("reply body %q details %q, want %q %q", r.Body, r.Details, tc.wantBody, Details)
				}
				if tc.wantGRPC != "" && r.Headers.Get("grpc-status") != tc.wantGRPC {
					t.Errorf("grpc-status %q, want %q", r.Headers.Get("grpc-status"), tc.wantGRPC)
				}
			}
			if got != tc.wantCode {
				t.Errorf("code %d, want %d", got, tc.wantCode)
			}
			if took < tc.wantDelay {
				t.Errorf("DecodeHeaders took %v, want at least %v", took, tc.wantDelay)
			}
			if cb.Info.Flags != tc.wantFlags {
				t.Errorf("flags %v, want %v", cb.Info.Flags, tc.wantFlags)
			}
			if v := store.Counter("http.ingress.fault.aborts_injected").Value(); v != tc.wantAborts {
				t.Errorf("aborts_injected %d, want %d", v, tc.wantAborts)
			}
			if v := store.Counter("http.ingress.fault.delays_injected").Value(); v != tc.wantDelays {
				t.Errorf("delays_injected %d, want %d", v, tc.wantDelays)
			}
			if tc.clusterStats {
				if v := store.Counter("http.ingress.fault.web.aborts_injected").Value(); v != 1 {
					t.Errorf("http.ingress.fault.web.aborts_injected %d, want 1", v)
				}
			}
			f.(httpfilter.Destroyer).OnDestroy()
			if v := store.Gauge("http.ingress.fault.active_faults").Value(); v != 0 {
				t.Errorf("active_faults after the stream = %d, want 0", v)
			}
		})
	}
}

// TestMaxActiveFaults: a second concurrent fault past max_active_faults is
// not injected and counts faults_overflow.
func TestMaxActiveFaults(t *testing.T) {
	store := stats.NewStore()
	factory, err := Build(httpfiltertest.Parse(t, "abort: {http_status: 503, percentage: {numerator: 100}}\nmax_active_faults: 1", &faultv3.HTTPFault{}), httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	first := factory(&httpfiltertest.Callbacks{})
	if st := first.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true); st != httpfilter.Stop {
		t.Fatal("first request not aborted")
	}
	if v := store.Gauge("http.ingress.fault.active_faults").Value(); v != 1 {
		t.Errorf("active_faults = %d, want 1", v)
	}
	second := factory(&httpfiltertest.Callbacks{})
	if st := second.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true); st != httpfilter.Continue {
		t.Error("second request aborted past max_active_faults")
	}
	if v := store.Counter("http.ingress.fault.faults_overflow").Value(); v != 1 {
		t.Errorf("faults_overflow = %d, want 1", v)
	}
	second.(httpfilter.Destroyer).OnDestroy()
	first.(httpfilter.Destroyer).OnDestroy()
	if v := store.Gauge("http.ingress.fault.active_faults").Value(); v != 0 {
		t.Errorf("active_faults = %d, want 0", v)
	}
}

// TestDelayEndsWithStream: an aborted stream wakes a delayed filter.
func TestDelayEndsWithStream(t *testing.T) {
	factory, err := Build(httpfiltertest.Parse(t, "delay: {fixed_delay: 3600s, percentage: {numerator: 100}}", &faultv3.HTTPFault{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cb := &httpfiltertest.Callbacks{Ctx: ctx}
	f := factory(cb)
	done := make(chan httpfilter.Status)
	go func() { done <- f.(httpfilter.DecoderFilter).DecodeHeaders(httpfiltertest.Request(), true) }()
	cancel()
	select {
	case st := <-done:
		if st != httpfilter.Stop {
			t.Errorf("DecodeHeaders = %v, want Stop", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delay did not end with the stream")
	}
	f.(httpfilter.Destroyer).OnDestroy()
}

func BenchmarkNoFault(b *testing.B) {
	cfg := &faultv3.HTTPFault{}
	if _, err := httpfiltertest.Unmarshal(cfg, "abort: {http_status: 503, percentage: {numerator: 0}}\nheaders: [{name: x-fault, present_match: true}]"); err != nil {
		b.Fatal(err)
	}
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		b.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	h := withHeaders("x-fault", "1")
	b.ReportAllocs()
	for b.Loop() {
		f := factory(cb)
		f.(httpfilter.DecoderFilter).DecodeHeaders(h, true)
		f.(httpfilter.Destroyer).OnDestroy()
	}
}
