package grpchttp1bridge

import (
	"testing"

	grpchttp1bridgev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_http1_bridge/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&grpchttp1bridgev3.Config{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
}

func newFilter(t *testing.T, cfg *grpchttp1bridgev3.Config, protocol string) (*Filter, *httpfiltertest.Callbacks) {
	t.Helper()
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	cb.Info.Protocol = protocol
	return factory(cb).(*Filter), cb
}

func request(path, contentType string) *hhttp.Headers {
	h := httpfiltertest.Request()
	h.Set(hhttp.Method, "POST")
	h.Set(hhttp.Path, path)
	h.Add("content-type", contentType)
	return h
}

func kv(pairs ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

func TestBridge(t *testing.T) {
	const msg = "\x00\x00\x00\x00\x02ok"
	tests := []struct {
		name        string
		protocol    string
		trailers    *hhttp.Headers
		wantStatus  int
		wantHeaders map[string]string
		wantBody    string
		// passThrough: the filter leaves the response alone.
		passThrough bool
	}{
		{name: "ok", protocol: "HTTP/1.1", trailers: kv("grpc-status", "0"), wantStatus: 200,
			wantHeaders: map[string]string{"grpc-status": "0", "content-length": "7"}, wantBody: msg},
		{name: "error becomes 503", protocol: "HTTP/1.1", trailers: kv("grpc-status", "5", "grpc-message", "not found"), wantStatus: 503,
			wantHeaders: map[string]string{"grpc-status": "5", "grpc-message": "not found", "content-length": "7"}, wantBody: msg},
		{name: "unparsable status becomes 503", protocol: "HTTP/1.0", trailers: kv("grpc-status", "x"), wantStatus: 503,
			wantHeaders: map[string]string{"grpc-status": "x"}, wantBody: msg},
		{name: "HTTP/2 passes through", protocol: "HTTP/2", passThrough: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, cb := newFilter(t, &grpchttp1bridgev3.Config{}, tc.protocol)
			f.DecodeHeaders(request("/svc/M", "application/grpc"), false)
			h := httpfiltertest.Response(200)
			h.Add("content-type", "application/grpc")
			st := f.EncodeHeaders(h, false)
			if tc.passThrough {
				if st != httpfilter.Continue || f.EncodeData([]byte(msg), false) != httpfilter.Continue {
					t.Fatal("response not passed through")
				}
				return
			}
			if st != httpfilter.Stop || f.EncodeData([]byte(msg[:3]), false) != httpfilter.Stop ||
				f.EncodeData([]byte(msg[3:]), false) != httpfilter.Stop {
				t.Fatal("response not held until the trailers")
			}
			if f.EncodeTrailers(tc.trailers) != httpfilter.Stop {
				t.Fatal("EncodeTrailers did not stop the trailers")
			}
			if len(cb.Replies) != 1 || cb.Replies[0].Code != tc.wantStatus {
				t.Fatalf("replies %+v, want one with status %d", cb.Replies, tc.wantStatus)
			}
			for k, v := range tc.wantHeaders {
				if got := cb.Replies[0].Headers.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if string(cb.Encoded) != tc.wantBody || !cb.EncodedEnd {
				t.Errorf("body %q end=%v, want %q end=true", cb.Encoded, cb.EncodedEnd, tc.wantBody)
			}
		})
	}
}

func TestTrailersOnly(t *testing.T) {
	f, _ := newFilter(t, &grpchttp1bridgev3.Config{}, "HTTP/1.1")
	f.DecodeHeaders(request("/svc/M", "application/grpc"), false)
	h := httpfiltertest.Response(200)
	h.Add("grpc-status", "12")
	if f.EncodeHeaders(h, true) != httpfilter.Continue {
		t.Fatal("trailers-only response held")
	}
	if h.StatusCode() != 503 || h.Get("content-length") != "0" {
		t.Errorf("headers %v, want :status 503 and content-length 0", h.Fields)
	}
}

func TestUpgradeProtobuf(t *testing.T) {
	f, cb := newFilter(t, &grpchttp1bridgev3.Config{UpgradeProtobufToGrpc: true, IgnoreQueryParameters: true}, "HTTP/1.1")
	cb.RequestBody = []byte("abc")
	h := request("/svc/M?x=1", "application/x-protobuf")
	h.Add("content-length", "3")
	if f.DecodeHeaders(h, false) != httpfilter.Continue {
		t.Fatal("DecodeHeaders did not continue")
	}
	if got := string(cb.Buffered); got != "\x00\x00\x00\x00\x03abc" {
		t.Errorf("request body %q, want it framed", got)
	}
	if h.Get("content-type") != "application/grpc" || h.Get("te") != "trailers" || h.Has("content-length") || h.Path() != "/svc/M" {
		t.Errorf("request headers %v", h.Fields)
	}
	resp := httpfiltertest.Response(200)
	resp.Add("content-type", "application/grpc")
	f.EncodeHeaders(resp, false)
	f.EncodeData([]byte("\x00\x00\x00\x00\x02ok"), false)
	f.EncodeTrailers(kv("grpc-status", "0"))
	if string(cb.Encoded) != "ok" || cb.Replies[0].Headers.Get("content-length") != "2" {
		t.Errorf("body %q headers %v, want the message without its frame header", cb.Encoded, cb.Replies[0].Headers.Fields)
	}
}
