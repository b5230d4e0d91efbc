package healthcheck

import (
	"sync/atomic"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// fakeServer stands for internal/server.Server.
type fakeServer struct{ failed atomic.Bool }

func (s *fakeServer) HealthcheckFailed() bool { return s.failed.Load() }
func (s *fakeServer) ServerInfo() *adminv3.ServerInfo {
	return &adminv3.ServerInfo{Node: &corev3.Node{Cluster: "front"}}
}

func TestRegistered(t *testing.T) {
	if e, ok := httpfilter.Registry.ByTypeURL(registry.TypeURL(&hcv3.HealthCheck{})); !ok || e.Name != Name {
		t.Fatalf("HealthCheck registered as %v, %v", e, ok)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "valid", config: "pass_through_mode: false\nheaders: [{name: ':path', string_match: {exact: /healthz}}]"},
		{name: "cache_time refused", config: "pass_through_mode: true\ncache_time: 5s", wantErr: ".cache_time: cache_time is not supported by herald yet (#8)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(httpfiltertest.Parse(t, tc.config, &hcv3.HealthCheck{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func TestFilter(t *testing.T) {
	const nonPass = "pass_through_mode: false\nheaders: [{name: ':path', string_match: {exact: /healthz}}]"
	const pass = "pass_through_mode: true\nheaders: [{name: ':path', string_match: {exact: /healthz}}]"
	tests := []struct {
		name        string
		config      string
		path        string
		failed      bool
		wantCode    int // 0: passed on
		wantDetails string
		// wantHeader is checked on the reply or on the upstream response.
		wantHeader, wantValue string
		wantFlag              bool
	}{
		{name: "health check answered", config: nonPass, path: "/healthz", wantCode: 200, wantDetails: DetailsOK, wantHeader: hdrHealthCheckedCluster, wantValue: "front"},
		{name: "failing answers 503", config: nonPass, path: "/healthz", failed: true, wantCode: 503, wantDetails: DetailsFailed, wantHeader: hdrHealthCheckedCluster, wantValue: "front", wantFlag: true},
		{name: "other requests pass", config: nonPass, path: "/app", wantCode: 0},
		{name: "other requests say the server fails", config: nonPass, path: "/app", failed: true, wantCode: 0, wantHeader: hdrImmediateFail, wantValue: "true"},
		{name: "pass through", config: pass, path: "/healthz", wantCode: 0, wantHeader: hdrHealthCheckedCluster, wantValue: "front"},
		{name: "pass through answers 503 when failing", config: pass, path: "/healthz", failed: true, wantCode: 503, wantDetails: DetailsFailed, wantFlag: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &fakeServer{}
			srv.failed.Store(tc.failed)
			ctx := httpfiltertest.BuildContext(Name, stats.NewStore())
			ctx.ServerContext = srv
			factory, err := Build(httpfiltertest.Parse(t, tc.config, &hcv3.HealthCheck{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{}
			f := factory(cb)
			cb.Filter = f
			req := httpfiltertest.Request()
			req.Set(":path", tc.path)
			// The request has a body: the answer waits for its end.
			st := f.(httpfilter.DecoderFilter).DecodeHeaders(req, false)
			if len(cb.Replies) != 0 {
				t.Fatal("answered before the request ended")
			}
			if st == httpfilter.Stop {
				f.(httpfilter.DecoderFilter).DecodeData([]byte("x"), true)
			}
			code := 0
			resp := httpfiltertest.Response(200)
			if len(cb.Replies) == 1 {
				code, resp = cb.Replies[0].Code, cb.Replies[0].Headers
				if cb.Replies[0].Details != tc.wantDetails {
					t.Errorf("details %q, want %q", cb.Replies[0].Details, tc.wantDetails)
				}
			} else {
				f.(httpfilter.EncoderFilter).EncodeHeaders(resp, true)
			}
			if code != tc.wantCode {
				t.Errorf("code %d, want %d", code, tc.wantCode)
			}
			if tc.wantHeader != "" && resp.Get(tc.wantHeader) != tc.wantValue {
				t.Errorf("%s = %q, want %q", tc.wantHeader, resp.Get(tc.wantHeader), tc.wantValue)
			}
			if got := cb.Info.HasFlag(streaminfo.FailedLocalHealthCheck); got != tc.wantFlag {
				t.Errorf("LH flag %v, want %v", got, tc.wantFlag)
			}
			f.(httpfilter.Destroyer).OnDestroy()
		})
	}
}
