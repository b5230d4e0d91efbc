package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http2"

	"github.com/herald-proxy/herald/internal/testutil"
)

// compressibleBody is text that compresses a few times over (well under
// the gzip decompressor's default max_inflate_ratio of 100) and is well
// over the default min_content_length.
var compressibleBody = func() string {
	var b strings.Builder
	x := uint32(1)
	for i := 0; b.Len() < 20000; i++ {
		x = x*1664525 + 1013904223
		fmt.Fprintf(&b, "entry %05d value %08x status ok\n", i, x)
	}
	return b.String()
}()

// compressionBackend serves /big (compressibleBody with content-length),
// /small (10 bytes), /stream (two chunks, the second sent only once
// release is closed), /png (an image type), and echoes on /echo the
// request's body, content-encoding and accept-encoding.
func compressionBackend(t *testing.T, release <-chan struct{}) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		switch r.URL.Path {
		case "/small":
			w.Header().Set("content-type", "text/plain")
			io.WriteString(w, "tiny body!")
		case "/png":
			w.Header().Set("content-type", "image/png")
			io.WriteString(w, compressibleBody)
		case "/stream":
			w.Header().Set("content-type", "text/plain")
			io.WriteString(w, compressibleBody[:1000])
			w.(nethttp.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, compressibleBody[1000:])
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("x-seen-content-encoding", r.Header.Get("content-encoding"))
			w.Header().Set("x-seen-accept-encoding", r.Header.Get("accept-encoding"))
			w.Header().Set("x-seen-content-length", fmt.Sprint(r.ContentLength))
			w.Header().Set("content-type", "application/octet-stream")
			w.Write(b)
		default:
			w.Header().Set("content-type", "text/html; charset=utf-8")
			w.Header().Set("content-length", fmt.Sprint(len(compressibleBody)))
			w.Header().Set("etag", `"v1"`)
			io.WriteString(w, compressibleBody)
		}
	}))
}

func compressorFilter(name, lib, libType, extra string) string {
	return fmt.Sprintf(`          - name: %s
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
%s              compressor_library:
                name: %s
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.%s
`, name, extra, lib, libType)
}

func decode(t *testing.T, encoding string, b []byte) string {
	t.Helper()
	var r io.Reader
	var err error
	switch encoding {
	case "gzip":
		r, err = gzip.NewReader(bytes.NewReader(b))
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return string(b)
	}
	if err != nil {
		t.Fatalf("%s reader: %v", encoding, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s decode: %v", encoding, err)
	}
	return string(out)
}

func TestHTTPFilterCompressor(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	backend := compressionBackend(t, release)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/nocompress" }
                route: { cluster: app, prefix_rewrite: "/big" }
                typed_per_filter_config:
                  gzip:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
                    disabled: true
                  br:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
                    disabled: true
                  zstd:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute
                    disabled: true
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := compressorFilter("gzip", "gz", "gzip.compressor.v3.Gzip", "") +
		compressorFilter("br", "brot", "brotli.compressor.v3.Brotli", "") +
		compressorFilter("zstd", "zs", "zstd.compressor.v3.Zstd", "              response_direction_config: {}\n")
	h := testutil.Start(t, bootstrap([]string{filtersListener("comp", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("comp")
	c := newClient()

	tests := []struct {
		name     string
		path     string
		accept   string
		wantEnc  string // content-encoding of the response
		wantVary string
		wantETag string
		wantBody string
	}{
		{name: "gzip", path: "/big", accept: "gzip", wantEnc: "gzip", wantVary: "accept-encoding", wantBody: compressibleBody},
		{name: "brotli", path: "/big", accept: "br", wantEnc: "br", wantVary: "accept-encoding", wantBody: compressibleBody},
		{name: "zstd", path: "/big", accept: "zstd", wantEnc: "zstd", wantVary: "accept-encoding", wantBody: compressibleBody},
		{name: "q-values", path: "/big", accept: "gzip;q=0.2, br;q=0.5, zstd;q=0.9", wantEnc: "zstd", wantVary: "accept-encoding", wantBody: compressibleBody},
		{name: "identity", path: "/big", accept: "identity", wantVary: "accept-encoding", wantETag: `"v1"`, wantBody: compressibleBody},
		{name: "no accept-encoding", path: "/big", wantVary: "accept-encoding", wantETag: `"v1"`, wantBody: compressibleBody},
		{name: "small body not compressed", path: "/small", accept: "gzip", wantBody: "tiny body!"},
		{name: "content type not compressed", path: "/png", accept: "gzip", wantBody: compressibleBody},
		{name: "route disables", path: "/nocompress", accept: "gzip", wantETag: `"v1"`, wantBody: compressibleBody},
	}
	for _, tc := range tests {
		req, _ := nethttp.NewRequest("GET", base+tc.path, nil)
		if tc.accept != "" {
			req.Header.Set("accept-encoding", tc.accept)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: body: %v", tc.name, err)
		}
		enc := resp.Header.Get("content-encoding")
		if resp.StatusCode != 200 || enc != tc.wantEnc {
			t.Errorf("%s: %d content-encoding %q, want 200 %q", tc.name, resp.StatusCode, enc, tc.wantEnc)
			continue
		}
		if got := decode(t, enc, raw); got != tc.wantBody {
			t.Errorf("%s: decoded body %d bytes, want %d", tc.name, len(got), len(tc.wantBody))
		}
		if enc != "" && len(raw) >= len(tc.wantBody)/2 {
			t.Errorf("%s: %d bytes on the wire for %d: not compressed", tc.name, len(raw), len(tc.wantBody))
		}
		if enc != "" && resp.Header.Get("content-length") != "" {
			t.Errorf("%s: compressed response kept content-length %q", tc.name, resp.Header.Get("content-length"))
		}
		if got := resp.Header.Get("vary"); got != tc.wantVary {
			t.Errorf("%s: vary %q, want %q", tc.name, got, tc.wantVary)
		}
		if got := resp.Header.Get("etag"); got != tc.wantETag {
			t.Errorf("%s: etag %q, want %q (strong etags go when compressing)", tc.name, got, tc.wantETag)
		}
	}

	// Streamed: the first chunk decodes on the client before the backend
	// sends the second — the filter flushes per chunk, never buffers.
	req, _ := nethttp.NewRequest("GET", base+"/stream", nil)
	req.Header.Set("accept-encoding", "gzip")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("content-encoding") != "gzip" {
		t.Fatalf("stream: content-encoding %q", resp.Header.Get("content-encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 1000)
	got := make(chan error, 1)
	go func() { _, err := io.ReadFull(zr, first); got <- err }()
	select {
	case err := <-got:
		if err != nil || string(first) != compressibleBody[:1000] {
			t.Fatalf("first chunk: %v %q", err, first[:20])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first chunk not decodable before the response ended: the compressor buffered it")
	}
	close(release)
	rest, err := io.ReadAll(zr)
	if err != nil || string(rest) != compressibleBody[1000:] {
		t.Fatalf("rest of stream: %v, %d bytes", err, len(rest))
	}

	// HTTP/2 downstream (h2c prior knowledge): the same filter chain.
	h2 := &nethttp.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP:          true,
		DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}}
	req, _ = nethttp.NewRequest("GET", base+"/big", nil)
	req.Header.Set("accept-encoding", "br")
	resp2, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.ProtoMajor != 2 || resp2.Header.Get("content-encoding") != "br" || decode(t, "br", raw) != compressibleBody {
		t.Fatalf("h2: proto %d content-encoding %q, %d bytes", resp2.ProtoMajor, resp2.Header.Get("content-encoding"), len(raw))
	}

	// Stats under Envoy's names: gzip and br have no
	// response_direction_config (stats at the library prefix), zstd has one
	// (".response.").
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.compressed", 2)
	waitStat(t, h, "http.ingress_http.compressor.brot.brotli.compressed", 2)
	waitStat(t, h, "http.ingress_http.compressor.zs.zstd.response.compressed", 2)
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.header_compressor_used", 2)
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.header_compressor_overshadowed", 4)
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.header_identity", 1)
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.no_accept_header", 1)
	waitStat(t, h, "http.ingress_http.compressor.gz.gzip.content_length_too_small", 1)
	if v := h.Stat("http.ingress_http.compressor.gz.gzip.total_uncompressed_bytes"); v != int64(2*len(compressibleBody)) {
		t.Errorf("gzip total_uncompressed_bytes = %d, want %d", v, 2*len(compressibleBody))
	}
	if v := h.Stat("http.ingress_http.compressor.gz.gzip.total_compressed_bytes"); v <= 0 || v >= int64(len(compressibleBody)) {
		t.Errorf("gzip total_compressed_bytes = %d", v)
	}
}

func TestHTTPFilterDecompressor(t *testing.T) {
	t.Parallel()
	backend := compressionBackend(t, nil)
	gzipped := func(s string) []byte { return []byte(gzipString(s)) }
	// The response side: a gzip backend answer decompressed on the way out.
	gzBackend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("content-encoding", "gzip")
		w.Header().Set("x-seen-accept-encoding", r.Header.Get("accept-encoding"))
		w.Write(gzipped(compressibleBody))
	}))
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/gz" }
                route: { cluster: gz }
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.decompressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor
              decompressor_library:
                name: basic
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("decomp", vhosts, filters)}, staticCluster("app", backend), staticCluster("gz", gzBackend)))
	base := "http://" + h.ListenerAddr("decomp")
	c := newClient()

	// Request: a gzip body reaches the backend decompressed, without
	// content-encoding, and accept-encoding advertises gzip.
	req, _ := nethttp.NewRequest("POST", base+"/echo", bytes.NewReader(gzipped(compressibleBody)))
	req.Header.Set("content-encoding", "gzip")
	req.Header.Set("accept-encoding", "br")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != compressibleBody {
		t.Fatalf("backend saw %d bytes, want the %d decompressed", len(body), len(compressibleBody))
	}
	if got := resp.Header.Get("x-seen-content-encoding"); got != "" {
		t.Errorf("backend saw content-encoding %q, want none", got)
	}
	if got := resp.Header.Get("x-seen-accept-encoding"); got != "br,gzip" {
		t.Errorf("backend saw accept-encoding %q, want %q", got, "br,gzip")
	}

	// Response: decompressed for the client.
	resp, err = c.Get(base + "/gz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != compressibleBody || resp.Header.Get("content-encoding") != "" {
		t.Fatalf("response %d bytes content-encoding %q, want %d plain bytes", len(body), resp.Header.Get("content-encoding"), len(compressibleBody))
	}

	waitStat(t, h, "http.ingress_http.decompressor.basic.gzip.request.decompressed", 1)
	waitStat(t, h, "http.ingress_http.decompressor.basic.gzip.response.decompressed", 1)
	waitStat(t, h, "http.ingress_http.decompressor.basic.gzip.request.total_uncompressed_bytes", int64(len(compressibleBody)))
	waitStat(t, h, "http.ingress_http.decompressor.basic.gzip.response.total_uncompressed_bytes", int64(len(compressibleBody)))
}

func gzipString(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.WriteString(w, s)
	w.Close()
	return b.String()
}
