package compressor

import (
	"bytes"
	"io"
	"strings"
	"testing"

	compressorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/compressor/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const (
	gzipLib   = "compressor_library: {name: gz, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}}\n"
	brotliLib = "compressor_library: {name: br, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli}}\n"
	zstdLib   = "compressor_library: {name: zs, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd}}\n"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&compressorv3.Compressor{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&compressorv3.CompressorPerRoute{})); !ok {
		t.Fatal("CompressorPerRoute not registered")
	}
}

func build(t *testing.T, store *stats.Store, config string) *Config {
	t.Helper()
	cfg := httpfiltertest.Parse(t, config, &compressorv3.Compressor{})
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	return factory(&httpfiltertest.Callbacks{}).(*Filter).cfg
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "gzip", config: gzipLib},
		{name: "brotli with directions", config: brotliLib + "response_direction_config: {common_config: {min_content_length: 100, content_type: [text/html]}, disable_on_etag_header: true}\nrequest_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}}"},
		{name: "deprecated fields", config: zstdLib + "content_length: 10\ncontent_type: [text/plain]\ndisable_on_etag_header: true\nremove_accept_encoding_header: true"},
		{name: "status header refused", config: gzipLib + "response_direction_config: {status_header_enabled: true}", wantErr: ".response_direction_config.status_header_enabled: status_header_enabled is not supported by herald yet (#8)"},
		{name: "content_type_matcher refused", config: gzipLib + "response_direction_config: {common_config: {content_type_matcher: [{exact: a}]}}", wantErr: ".response_direction_config.common_config.content_type_matcher"},
		{name: "unknown library", config: "compressor_library: {name: x, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip}}", wantErr: ".compressor_library.typed_config: unknown compressor library"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &compressorv3.Compressor{}
			if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
				t.Fatal(err)
			}
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

// TestChooseEncoding is the negotiation table: a chain of gzip, br and zstd
// compressors (registered in that order) against accept-encoding values.
func TestChooseEncoding(t *testing.T) {
	store := stats.NewStore()
	gz := build(t, store, gzipLib)
	br := build(t, store, brotliLib)
	zs := build(t, store, zstdLib)
	zsFirst := build(t, store, zstdLib+"choose_first: true")
	htmlOnly := build(t, store, brotliLib+"response_direction_config: {common_config: {content_type: [text/html]}}")
	tests := []struct {
		name        string
		chain       []*Config
		accept      string
		contentType string
		want        decision
	}{
		{name: "single", chain: []*Config{gz}, accept: "gzip", want: decision{"gzip", statValidCompressor}},
		{name: "first listed of equal q", chain: []*Config{gz, br}, accept: "br, gzip", want: decision{"br", statValidCompressor}},
		{name: "highest q wins", chain: []*Config{gz, br, zs}, accept: "gzip;q=0.5, br;q=0.8, zstd;q=0.7", want: decision{"br", statValidCompressor}},
		{name: "q parameter case and spaces", chain: []*Config{gz, br}, accept: "gzip ; Q = 0.9 , br;q=0.1", want: decision{"gzip", statValidCompressor}},
		{name: "q=0 refuses", chain: []*Config{gz}, accept: "gzip;q=0", want: decision{"identity", statNotValid}},
		{name: "q=0 not revived by wildcard", chain: []*Config{gz, br}, accept: "gzip;q=0, *", want: decision{"br", statWildcard}},
		{name: "wildcard picks first registered", chain: []*Config{zs, gz}, accept: "*", want: decision{"zstd", statWildcard}},
		{name: "identity preferred", chain: []*Config{gz}, accept: "identity, gzip;q=0.5", want: decision{"identity", statIdentity}},
		{name: "unknown encoding only", chain: []*Config{gz}, accept: "deflate", want: decision{"identity", statNotValid}},
		{name: "empty", chain: []*Config{gz}, accept: "", want: decision{"identity", statNotValid}},
		{name: "unparsable q skipped", chain: []*Config{gz, br}, accept: "gzip;q=x, br;q=0.2", want: decision{"br", statValidCompressor}},
		{name: "other parameters ignored", chain: []*Config{gz}, accept: "gzip;level=1", want: decision{"gzip", statValidCompressor}},
		{name: "choose_first breaks ties", chain: []*Config{gz, zsFirst}, accept: "gzip, zstd", want: decision{"zstd", statValidCompressor}},
		{name: "content type excludes a compressor", chain: []*Config{htmlOnly, gz}, accept: "br, gzip;q=0.9", contentType: "application/json", want: decision{"gzip", statValidCompressor}},
		{name: "content type keeps it", chain: []*Config{htmlOnly, gz}, accept: "br, gzip;q=0.9", contentType: "text/html; charset=utf-8", want: decision{"br", statValidCompressor}},
		{name: "case-sensitive encoding names", chain: []*Config{gz}, accept: "GZIP", want: decision{"identity", statNotValid}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := chooseEncoding(tc.chain, tc.accept, tc.contentType)
			if got != tc.want {
				t.Fatalf("chooseEncoding(%q) = %+v, want %+v", tc.accept, got, tc.want)
			}
		})
	}
}

func response(code string, kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, code)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// TestEncodeHeaders covers the rules deciding whether a response is
// compressed: length, content type, etag, existing encodings, no-transform,
// bodiless responses, per-route overrides, vary.
func TestEncodeHeaders(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		perRoute string
		method   string
		accept   string // "-" for no accept-encoding
		resp     *hhttp.Headers
		end      bool
		want     bool   // compressed
		wantHdrs string // response header fields after, "name: value" joined by "; "
		wantStat string // a counter under http.ingress.compressor.gz.gzip. that must be 1
	}{
		{name: "compresses", resp: response("200", "content-type", "text/plain", "content-length", "100"), want: true,
			wantHdrs: ":status: 200; content-type: text/plain; content-encoding: gzip; vary: accept-encoding", wantStat: "header_compressor_used"},
		{name: "too small", resp: response("200", "content-type", "text/plain", "content-length", "29"),
			wantHdrs: ":status: 200; content-type: text/plain; content-length: 29", wantStat: "content_length_too_small"},
		{name: "exactly min length", resp: response("200", "content-length", "30"), want: true,
			wantHdrs: ":status: 200; content-encoding: gzip; vary: accept-encoding"},
		{name: "no content-length", resp: response("200", "content-type", "application/json"), want: true,
			wantHdrs: ":status: 200; content-type: application/json; content-encoding: gzip; vary: accept-encoding"},
		{name: "content type not listed", resp: response("200", "content-type", "image/png"),
			wantHdrs: ":status: 200; content-type: image/png", wantStat: "not_compressed"},
		{name: "content type case and params", resp: response("200", "content-type", "Text/HTML; charset=utf-8"), want: true,
			wantHdrs: ":status: 200; content-type: Text/HTML; charset=utf-8; content-encoding: gzip; vary: accept-encoding"},
		{name: "configured content types", config: "response_direction_config: {common_config: {content_type: [image/png]}}", resp: response("200", "content-type", "image/png"), want: true,
			wantHdrs: ":status: 200; content-type: image/png; content-encoding: gzip; vary: accept-encoding", wantStat: "response.compressed"},
		{name: "no accept-encoding", accept: "-", resp: response("200"),
			wantHdrs: ":status: 200; vary: accept-encoding", wantStat: "no_accept_header"},
		{name: "identity still varies", accept: "identity", resp: response("200"),
			wantHdrs: ":status: 200; vary: accept-encoding", wantStat: "header_identity"},
		{name: "already encoded", resp: response("200", "content-encoding", "br"),
			wantHdrs: ":status: 200; content-encoding: br"},
		{name: "no-transform", resp: response("200", "cache-control", "public, No-Transform"),
			wantHdrs: ":status: 200; cache-control: public, No-Transform"},
		{name: "strong etag removed", resp: response("200", "etag", `"abc"`), want: true,
			wantHdrs: ":status: 200; content-encoding: gzip; vary: accept-encoding"},
		{name: "weak etag kept", resp: response("200", "etag", `W/"abc"`), want: true,
			wantHdrs: `:status: 200; etag: W/"abc"; content-encoding: gzip; vary: accept-encoding`},
		{name: "disable on etag", config: "disable_on_etag_header: true", resp: response("200", "etag", `"abc"`),
			wantHdrs: `:status: 200; etag: "abc"`, wantStat: "not_compressed_etag"},
		{name: "weaken etag", config: "response_direction_config: {weaken_etag_on_compress: true, disable_on_etag_header: true}", resp: response("200", "etag", `"abc"`), want: true,
			wantHdrs: `:status: 200; etag: W/"abc"; content-encoding: gzip; vary: accept-encoding`},
		{name: "existing vary", resp: response("200", "vary", "origin"), want: true,
			wantHdrs: ":status: 200; vary: origin, accept-encoding; content-encoding: gzip"},
		{name: "vary already there", resp: response("200", "vary", "Accept-Encoding"), want: true,
			wantHdrs: ":status: 200; vary: Accept-Encoding; content-encoding: gzip"},
		{name: "headers only", end: true, resp: response("200"),
			wantHdrs: ":status: 200; vary: accept-encoding"},
		{name: "HEAD", method: "HEAD", resp: response("200", "content-length", "100"),
			wantHdrs: ":status: 200; content-length: 100"},
		{name: "204", resp: response("204"), wantHdrs: ":status: 204"},
		{name: "304", resp: response("304", "etag", `"a"`), wantHdrs: `:status: 304; etag: "a"`},
		{name: "uncompressible code", config: "response_direction_config: {uncompressible_response_codes: [206]}", resp: response("206"), wantHdrs: ":status: 206"},
		{name: "disabled", config: "response_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}}", resp: response("200"), wantHdrs: ":status: 200"},
		{name: "route disables", perRoute: "disabled: true", resp: response("200"), wantHdrs: ":status: 200"},
		{name: "route enables", config: "response_direction_config: {common_config: {enabled: {default_value: false, runtime_key: k}}}", perRoute: "overrides: {response_direction_config: {}}", resp: response("200"), want: true,
			wantHdrs: ":status: 200; content-encoding: gzip; vary: accept-encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			cfg := httpfiltertest.Parse(t, gzipLib+tc.config, &compressorv3.Compressor{})
			factory, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{}
			if tc.perRoute != "" {
				pr, err := BuildPerRoute(httpfiltertest.Parse(t, tc.perRoute, &compressorv3.CompressorPerRoute{}), httpfiltertest.BuildContext("", store))
				if err != nil {
					t.Fatal(err)
				}
				cb.MatchedRoute = httpfiltertest.Route{Name: pr}
			}
			f := factory(cb).(*Filter)
			req := httpfiltertest.Request()
			if tc.method != "" {
				req.Set(hhttp.Method, tc.method)
			}
			switch tc.accept {
			case "":
				req.Add("accept-encoding", "gzip, deflate")
			case "-":
			default:
				req.Add("accept-encoding", tc.accept)
			}
			f.DecodeHeaders(req, true)
			f.EncodeHeaders(tc.resp, tc.end)
			if got := f.respComp != nil; got != tc.want {
				t.Errorf("compressing %v, want %v", got, tc.want)
			}
			if got := fields(tc.resp); got != tc.wantHdrs {
				t.Errorf("headers\n got %s\nwant %s", got, tc.wantHdrs)
			}
			if tc.wantStat != "" {
				if got := store.Counter("http.ingress.compressor.gz.gzip." + tc.wantStat).Value(); got != 1 {
					t.Errorf("%s = %d, want 1", tc.wantStat, got)
				}
			}
			f.OnDestroy()
		})
	}
}

func fields(h *hhttp.Headers) string {
	var parts []string
	for _, f := range h.Fields {
		parts = append(parts, f.Name+": "+f.Value)
	}
	return strings.Join(parts, "; ")
}

// TestStreamedResponse: every chunk is compressed and flushed on at once
// (each piece decodes to what was sent so far), trailers end the
// compressed stream first, and the byte stats add up.
func TestStreamedResponse(t *testing.T) {
	for _, withTrailers := range []bool{false, true} {
		name := "end in data"
		if withTrailers {
			name = "end in trailers"
		}
		t.Run(name, func(t *testing.T) {
			store := stats.NewStore()
			cfg := httpfiltertest.Parse(t, gzipLib, &compressorv3.Compressor{})
			factory, _ := Build(cfg, httpfiltertest.BuildContext(Name, store))
			cb := &httpfiltertest.Callbacks{}
			f := factory(cb).(*Filter)
			req := httpfiltertest.Request()
			req.Add("accept-encoding", "gzip")
			f.DecodeHeaders(req, true)
			f.EncodeHeaders(response("200", "content-type", "text/plain"), false)
			chunks := []string{strings.Repeat("alpha ", 50), strings.Repeat("beta ", 80), strings.Repeat("gamma ", 20)}
			var sent string
			for i, c := range chunks {
				end := i == len(chunks)-1 && !withTrailers
				if st := f.EncodeData([]byte(c), end); st != httpfilter.Stop {
					t.Fatalf("EncodeData = %v, want Stop", st)
				}
				sent += c
				if got := gunzipPrefix(t, cb.Encoded); got != sent {
					t.Fatalf("after chunk %d the downstream can decode %d bytes, want %d", i, len(got), len(sent))
				}
			}
			if withTrailers {
				if st := f.EncodeTrailers(&hhttp.Headers{}); st != httpfilter.Continue {
					t.Fatalf("EncodeTrailers = %v, want Continue", st)
				}
				if cb.EncodedEnd {
					t.Fatal("data before trailers ended the stream")
				}
			} else if !cb.EncodedEnd {
				t.Fatal("last chunk did not end the stream")
			}
			zr, err := gzip.NewReader(bytes.NewReader(cb.Encoded))
			if err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(zr)
			if err != nil || string(all) != sent {
				t.Fatalf("complete body: %v, %d bytes, want %d", err, len(all), len(sent))
			}
			got := map[string]uint64{
				"compressed":               store.Counter("http.ingress.compressor.gz.gzip.compressed").Value(),
				"total_uncompressed_bytes": store.Counter("http.ingress.compressor.gz.gzip.total_uncompressed_bytes").Value(),
				"total_compressed_bytes":   store.Counter("http.ingress.compressor.gz.gzip.total_compressed_bytes").Value(),
				"request.not_compressed":   store.Counter("http.ingress.compressor.gz.gzip.request.not_compressed").Value(),
			}
			want := map[string]uint64{
				"compressed": 1, "total_uncompressed_bytes": uint64(len(sent)),
				"total_compressed_bytes": uint64(len(cb.Encoded)), "request.not_compressed": 1,
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("stats (-want +got):\n%s", d)
			}
			f.OnDestroy()
		})
	}
}

// gunzipPrefix decodes as much of a gzip stream as is there.
func gunzipPrefix(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(zr)
	return string(out)
}

// TestChainSharesDecision: with gzip and br filters in one chain, the br
// filter (encoding first, being later) decides; gzip is overshadowed.
func TestChainSharesDecision(t *testing.T) {
	store := stats.NewStore()
	gzF, _ := Build(httpfiltertest.Parse(t, gzipLib, &compressorv3.Compressor{}), httpfiltertest.BuildContext("gz", store))
	brF, _ := Build(httpfiltertest.Parse(t, brotliLib, &compressorv3.Compressor{}), httpfiltertest.BuildContext("br", store))
	cb := &httpfiltertest.Callbacks{}
	g := gzF(cb).(*Filter)
	b := brF(cb).(*Filter)
	req := httpfiltertest.Request()
	req.Add("accept-encoding", "gzip;q=0.5, br")
	g.DecodeHeaders(req, true)
	b.DecodeHeaders(req, true)
	h := response("200")
	b.EncodeHeaders(h, false)
	g.EncodeHeaders(h, false)
	if b.respComp == nil || g.respComp != nil {
		t.Fatalf("br compressing %v, gzip %v; want br only", b.respComp != nil, g.respComp != nil)
	}
	if got := h.Get("content-encoding"); got != "br" {
		t.Fatalf("content-encoding %q, want br", got)
	}
	if got := store.Counter("http.ingress.compressor.gz.gzip.header_compressor_overshadowed").Value(); got != 1 {
		t.Errorf("gzip header_compressor_overshadowed = %d, want 1", got)
	}
	if got := store.Counter("http.ingress.compressor.br.brotli.header_compressor_used").Value(); got != 1 {
		t.Errorf("br header_compressor_used = %d, want 1", got)
	}
}

// TestRequestDirection: request bodies are compressed and injected.
func TestRequestDirection(t *testing.T) {
	store := stats.NewStore()
	cfg := httpfiltertest.Parse(t, gzipLib+"request_direction_config: {}\nremove_accept_encoding_header: true", &compressorv3.Compressor{})
	factory, _ := Build(cfg, httpfiltertest.BuildContext(Name, store))
	cb := &httpfiltertest.Callbacks{}
	f := factory(cb).(*Filter)
	req := httpfiltertest.Request()
	req.Set(hhttp.Method, "POST")
	req.Add("content-type", "application/json")
	req.Add("content-length", "100")
	req.Add("accept-encoding", "gzip")
	f.DecodeHeaders(req, false)
	if got := fields(req); got != ":method: POST; :path: /; :authority: example.com; content-type: application/json; content-encoding: gzip" {
		t.Fatalf("request headers %s", got)
	}
	body := strings.Repeat(`{"k":"v"}`, 20)
	if st := f.DecodeData([]byte(body[:50]), false); st != httpfilter.Stop {
		t.Fatalf("DecodeData = %v, want Stop", st)
	}
	if st := f.DecodeTrailers(&hhttp.Headers{}); st != httpfilter.Continue {
		t.Fatalf("DecodeTrailers = %v, want Continue", st)
	}
	if got := gunzipPrefix(t, cb.Injected); got != body[:50] {
		t.Fatalf("injected decodes to %q, want %q", got, body[:50])
	}
	if got := store.Counter("http.ingress.compressor.gz.gzip.request.compressed").Value(); got != 1 {
		t.Errorf("request.compressed = %d, want 1", got)
	}
	// The response still negotiates from the captured accept-encoding.
	h := response("200")
	f.EncodeHeaders(h, false)
	if h.Get("content-encoding") != "gzip" {
		t.Errorf("response not compressed: %s", fields(h))
	}
	f.OnDestroy()
}
