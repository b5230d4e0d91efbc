package buffer

import (
	"testing"

	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&bufferv3.Buffer{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&bufferv3.BufferPerRoute{})); !ok {
		t.Fatal("BufferPerRoute not registered")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "max_request_bytes", config: "max_request_bytes: 1024"},
		{name: "missing max_request_bytes", config: "{}", wantErr: ".max_request_bytes: max_request_bytes is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &bufferv3.Buffer{}
			if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
				t.Fatal(err)
			}
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func TestBuildPerRoute(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		want    Settings
		wantErr string
	}{
		{name: "disabled", config: "disabled: true", want: Settings{disabled: true}},
		{name: "override", config: "buffer: {max_request_bytes: 7}", want: Settings{maxRequestBytes: 7}},
		{name: "empty override", config: "buffer: {}", wantErr: ".buffer.max_request_bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &bufferv3.BufferPerRoute{}
			if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
				t.Fatal(err)
			}
			got, err := BuildPerRoute(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
			if err == nil && *got.(*Settings) != tc.want {
				t.Fatalf("settings %+v, want %+v", *got.(*Settings), tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name     string
		perRoute string // a BufferPerRoute, "" for none
		reqCL    string // content-length on the request, "" for none
		body     string
		end      bool // headers-only request
		// wantStatus is Continue or Stop; wantCode the local reply (0: none).
		wantStatus httpfilter.Status
		wantCode   int
		wantBody   string
		wantCL     string // content-length after DecodeHeaders
		wantBuffer bool   // BufferRequestBody was called
	}{
		{name: "buffers and sets content-length", body: "hello", wantStatus: httpfilter.Continue, wantCL: "5", wantBuffer: true},
		{name: "keeps content-length", reqCL: "5", body: "hello", wantStatus: httpfilter.Continue, wantCL: "5", wantBuffer: true},
		{name: "exactly max", body: "0123456789", wantStatus: httpfilter.Continue, wantCL: "10", wantBuffer: true},
		{name: "over max is 413", body: "0123456789a", wantStatus: httpfilter.Stop, wantCode: 413, wantBody: "Payload Too Large", wantBuffer: true},
		{name: "headers only", end: true, wantStatus: httpfilter.Continue},
		{name: "route disables", perRoute: "disabled: true", body: "0123456789abc", wantStatus: httpfilter.Continue},
		{name: "route override raises the limit", perRoute: "buffer: {max_request_bytes: 100}", body: "0123456789abc", wantStatus: httpfilter.Continue, wantCL: "13", wantBuffer: true},
		{name: "route override lowers the limit", perRoute: "buffer: {max_request_bytes: 2}", body: "abc", wantStatus: httpfilter.Stop, wantCode: 413, wantBody: "Payload Too Large", wantBuffer: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, "max_request_bytes: 10", &bufferv3.Buffer{})
			factory, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{RequestBody: []byte(tc.body)}
			if tc.perRoute != "" {
				pr := httpfiltertest.Parse(t, tc.perRoute, &bufferv3.BufferPerRoute{})
				built, err := BuildPerRoute(pr, httpfiltertest.BuildContext("", stats.NewStore()))
				if err != nil {
					t.Fatal(err)
				}
				cb.MatchedRoute = httpfiltertest.Route{Name: built}
			}
			f := factory(cb).(*Filter)
			cb.Filter = f
			h := httpfiltertest.Request()
			if tc.reqCL != "" {
				h.Add("content-length", tc.reqCL)
			}
			if st := f.DecodeHeaders(h, tc.end); st != tc.wantStatus {
				t.Fatalf("DecodeHeaders = %v, want %v", st, tc.wantStatus)
			}
			if got := cb.Buffered != nil; got != tc.wantBuffer {
				t.Errorf("buffered %v, want %v", got, tc.wantBuffer)
			}
			if got := h.Get("content-length"); got != tc.wantCL {
				t.Errorf("content-length %q, want %q", got, tc.wantCL)
			}
			checkReply(t, cb, tc.wantCode, tc.wantBody)
			f.OnDestroy()
		})
	}
}

func checkReply(t *testing.T, cb *httpfiltertest.Callbacks, code int, body string) {
	t.Helper()
	if code == 0 {
		if len(cb.Replies) != 0 {
			t.Fatalf("replied %+v, want none", cb.Replies)
		}
		return
	}
	if len(cb.Replies) != 1 || cb.Replies[0].Code != code || cb.Replies[0].Body != body || cb.Replies[0].Details != httpfilter.DetailsBodyTooLarge {
		t.Fatalf("replies %+v, want one %d %q %s", cb.Replies, code, body, httpfilter.DetailsBodyTooLarge)
	}
}
