package decompressor

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	brotlicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/compressor/v3"
	gzipcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	zstdcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/compressor/v3"
	decompressorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/decompressor/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/compression"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const gzipLib = "decompressor_library: {name: gz, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip}}\n"

var libs = map[string]struct {
	decomp string
	comp   proto.Message
}{
	"gzip": {decomp: gzipLib, comp: &gzipcv3.Gzip{}},
	"br":   {decomp: "decompressor_library: {name: b, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.brotli.decompressor.v3.Brotli}}\n", comp: &brotlicv3.Brotli{}},
	"zstd": {decomp: "decompressor_library: {name: z, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.zstd.decompressor.v3.Zstd}}\n", comp: &zstdcv3.Zstd{}},
}

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&decompressorv3.Decompressor{})
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
		{name: "gzip", config: gzipLib},
		{name: "directions", config: gzipLib + "request_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}, advertise_accept_encoding: false}\nresponse_direction_config: {common_config: {ignore_no_transform_header: true}}"},
		{name: "compressor library refused", config: "decompressor_library: {name: x, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}}", wantErr: ".decompressor_library.typed_config: unknown decompressor library"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &decompressorv3.Decompressor{}
			if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
				t.Fatal(err)
			}
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func compress(t *testing.T, m proto.Message, chunks ...string) [][]byte {
	t.Helper()
	a, _ := anypb.New(m)
	cf, err := compression.BuildCompressor(&corev3.TypedExtensionConfig{Name: "c", TypedConfig: a}, "c")
	if err != nil {
		t.Fatal(err)
	}
	c := cf.New()
	defer c.Release()
	var out [][]byte
	for i, ch := range chunks {
		b, err := c.Compress(nil, []byte(ch), i == len(chunks)-1)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func newFilter(t *testing.T, store *stats.Store, config string) (*Filter, *httpfiltertest.Callbacks) {
	t.Helper()
	cfg := httpfiltertest.Parse(t, config, &decompressorv3.Decompressor{})
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	return factory(cb).(*Filter), cb
}

// TestRequest: each library's request body is decompressed chunk by chunk
// and injected; accept-encoding advertises the library.
func TestRequest(t *testing.T) {
	chunks := []string{strings.Repeat("one ", 100), strings.Repeat("two ", 300), "three"}
	for name, l := range libs {
		t.Run(name, func(t *testing.T) {
			store := stats.NewStore()
			f, cb := newFilter(t, store, l.decomp)
			h := httpfiltertest.Request()
			h.Set(hhttp.Method, "POST")
			h.Add("content-encoding", name)
			h.Add("content-length", "123")
			h.Add("accept-encoding", "deflate")
			f.DecodeHeaders(h, false)
			if got := fields(h); got != ":method: POST; :path: /; :authority: example.com; accept-encoding: deflate,"+name {
				t.Fatalf("headers %s", got)
			}
			var want string
			var inBytes int
			for i, c := range compress(t, l.comp, chunks...) {
				end := i == len(chunks)-1
				if st := f.DecodeData(c, end); st != httpfilter.Stop {
					t.Fatalf("DecodeData = %v, want Stop", st)
				}
				want += chunks[i]
				inBytes += len(c)
				if cb.Injected == nil || string(cb.Injected) != want {
					t.Fatalf("after chunk %d injected %d bytes, want %d", i, len(cb.Injected), len(want))
				}
			}
			if !cb.InjectedEnd {
				t.Fatal("request body not ended")
			}
			prefix := "http.ingress.decompressor." + f.cfg.factory.StatPrefix
			prefix = strings.Replace(prefix, "decompressor.", "decompressor."+libName(name)+".", 1)
			for stat, want := range map[string]uint64{
				"request.decompressed":             1,
				"request.total_compressed_bytes":   uint64(inBytes),
				"request.total_uncompressed_bytes": uint64(len(want)),
				"response.decompressed":            0,
			} {
				if got := store.Counter(prefix + stat).Value(); got != want {
					t.Errorf("%s%s = %d, want %d", prefix, stat, got, want)
				}
			}
			f.OnDestroy()
		})
	}
}

func libName(enc string) string {
	return map[string]string{"gzip": "gz", "br": "b", "zstd": "z"}[enc]
}

func fields(h *hhttp.Headers) string {
	var parts []string
	for _, f := range h.Fields {
		parts = append(parts, f.Name+": "+f.Value)
	}
	return strings.Join(parts, "; ")
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		headers  []string // request headers after the defaults
		end      bool
		want     bool // decompressing
		wantHdrs string
	}{
		{name: "gzip", headers: []string{"content-encoding", "gzip"}, want: true,
			wantHdrs: ":method: GET; :path: /; :authority: example.com; accept-encoding: gzip"},
		{name: "case-insensitive", headers: []string{"content-encoding", "GZip"}, want: true,
			wantHdrs: ":method: GET; :path: /; :authority: example.com; accept-encoding: gzip"},
		{name: "first of several codings", headers: []string{"content-encoding", "gzip, br"}, want: true,
			wantHdrs: ":method: GET; :path: /; :authority: example.com; content-encoding: br; accept-encoding: gzip"},
		{name: "not the first coding", headers: []string{"content-encoding", "br, gzip"},
			wantHdrs: ":method: GET; :path: /; :authority: example.com; content-encoding: br, gzip; accept-encoding: gzip"},
		{name: "no-transform", headers: []string{"content-encoding", "gzip", "cache-control", "no-transform"},
			wantHdrs: ":method: GET; :path: /; :authority: example.com; content-encoding: gzip; cache-control: no-transform; accept-encoding: gzip"},
		{name: "no-transform ignored", config: "request_direction_config: {common_config: {ignore_no_transform_header: true}}", headers: []string{"content-encoding", "gzip", "cache-control", "no-transform"}, want: true,
			wantHdrs: ":method: GET; :path: /; :authority: example.com; cache-control: no-transform; accept-encoding: gzip"},
		{name: "request direction disabled", config: "request_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}}", headers: []string{"content-encoding", "gzip"},
			wantHdrs: ":method: GET; :path: /; :authority: example.com; content-encoding: gzip; accept-encoding: gzip"},
		{name: "no advertising", config: "request_direction_config: {advertise_accept_encoding: false}", headers: []string{"content-encoding", "gzip"}, want: true,
			wantHdrs: ":method: GET; :path: /; :authority: example.com"},
		{name: "response disabled: no advertising", config: "response_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}}",
			wantHdrs: ":method: GET; :path: /; :authority: example.com"},
		{name: "headers only", end: true, headers: []string{"content-encoding", "gzip"},
			wantHdrs: ":method: GET; :path: /; :authority: example.com; content-encoding: gzip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, stats.NewStore(), gzipLib+tc.config)
			h := httpfiltertest.Request()
			for i := 0; i+1 < len(tc.headers); i += 2 {
				h.Add(tc.headers[i], tc.headers[i+1])
			}
			f.DecodeHeaders(h, tc.end)
			if got := f.req != nil; got != tc.want {
				t.Errorf("decompressing %v, want %v", got, tc.want)
			}
			if got := fields(h); got != tc.wantHdrs {
				t.Errorf("headers\n got %s\nwant %s", got, tc.wantHdrs)
			}
			f.OnDestroy()
		})
	}
}

// TestResponse: a gzip response is decompressed and encoded on, trailers
// end it; a corrupt one counts zlib_data_error and ends what was decoded.
func TestResponse(t *testing.T) {
	store := stats.NewStore()
	f, cb := newFilter(t, store, gzipLib)
	f.DecodeHeaders(httpfiltertest.Request(), true)
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, "200")
	h.Add("content-encoding", "gzip")
	h.Add("content-length", "10")
	f.EncodeHeaders(h, false)
	if h.Has("content-encoding") || h.Has("content-length") {
		t.Fatalf("headers %s", fields(h))
	}
	parts := compress(t, &gzipcv3.Gzip{}, "hello ", "world")
	f.EncodeData(parts[0], false)
	f.EncodeData(parts[1][:len(parts[1])/2], false)
	f.EncodeTrailers(&hhttp.Headers{})
	if got := string(cb.Encoded); !strings.HasPrefix("hello world", got) || len(got) < len("hello ") {
		t.Fatalf("encoded %q, want a prefix of %q", got, "hello world")
	}
	if got := store.Counter("http.ingress.decompressor.gz.gzip.zlib_data_error").Value(); got != 1 {
		t.Errorf("zlib_data_error = %d, want 1 (truncated stream)", got)
	}
	f.OnDestroy()

	// A complete response.
	f, cb = newFilter(t, store, gzipLib)
	h = &hhttp.Headers{}
	h.Add(hhttp.Status, "200")
	h.Add("content-encoding", "gzip")
	f.EncodeHeaders(h, false)
	for i, p := range compress(t, &gzipcv3.Gzip{}, "hello ", "world") {
		f.EncodeData(p, i == 1)
	}
	if string(cb.Encoded) != "hello world" || !cb.EncodedEnd {
		t.Fatalf("encoded %q end=%v, want %q end=true", cb.Encoded, cb.EncodedEnd, "hello world")
	}
	if got := store.Counter("http.ingress.decompressor.gz.gzip.response.decompressed").Value(); got != 2 {
		t.Errorf("response.decompressed = %d, want 2", got)
	}
	f.OnDestroy()
}
