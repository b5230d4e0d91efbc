package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herald-proxy/herald/internal/testutil"
)

// bodyBackend answers with what it saw of the request body: its length,
// content-length and transfer-encoding.
func bodyBackend(t *testing.T) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "len=%d cl=%d te=%v", len(b), r.ContentLength, r.TransferEncoding)
	}))
}

func TestHTTPFilterBuffer(t *testing.T) {
	t.Parallel()
	backend := bodyBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/stream" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.buffer:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    disabled: true
              - match: { prefix: "/small" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.buffer:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute
                    buffer: { max_request_bytes: 10 }
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1024
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("buf", vhosts, filters)}, staticCluster("app", backend)))
	addr := h.ListenerAddr("buf")

	tests := []struct {
		name     string
		path     string
		size     int
		chunked  bool // send without content-length
		wantCode int
		wantBody string
	}{
		// A chunked body is buffered and reaches the backend with
		// content-length set.
		{name: "chunked body gets content-length", path: "/", size: 500, chunked: true, wantCode: 200, wantBody: "len=500 cl=500 te=[]"},
		{name: "exactly max", path: "/", size: 1024, chunked: true, wantCode: 200, wantBody: "len=1024 cl=1024 te=[]"},
		{name: "content-length kept", path: "/", size: 700, wantCode: 200, wantBody: "len=700 cl=700 te=[]"},
		{name: "over max", path: "/", size: 5000, chunked: true, wantCode: 413, wantBody: "Payload Too Large"},
		{name: "route disables", path: "/stream", size: 5000, chunked: true, wantCode: 200, wantBody: "len=5000 cl=-1 te=[chunked]"},
		{name: "route lowers the limit", path: "/small", size: 11, wantCode: 413, wantBody: "Payload Too Large"},
		{name: "route limit", path: "/small", size: 10, chunked: true, wantCode: 200, wantBody: "len=10 cl=10 te=[]"},
	}
	for _, tc := range tests {
		// Raw requests, written whole before the response is read: a 413
		// comes while the body may still be in flight, which a client
		// that streams its body can see as a broken pipe.
		body := strings.Repeat("b", tc.size)
		var req string
		if tc.chunked {
			req = fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", tc.path, tc.size, body)
		} else {
			req = fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", tc.path, tc.size, body)
		}
		c, r := dialHTTP(t, addr)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp, got := readResponse(t, r, "POST")
		c.Close()
		if resp.StatusCode != tc.wantCode || got != tc.wantBody {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, got, tc.wantCode, tc.wantBody)
		}
		if tc.wantCode == 413 && resp.Header.Get("content-type") != "text/plain" {
			t.Errorf("%s: content-type %q, want text/plain", tc.name, resp.Header.Get("content-type"))
		}
	}

	// HTTP/2 downstream (h2c): a body without content-length gets one; an
	// oversized one is refused while its DATA frames are still coming.
	h2 := &nethttp.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}}
	for _, tc := range []struct {
		size     int
		wantCode int
		wantBody string
	}{
		{size: 900, wantCode: 200, wantBody: "len=900 cl=900 te=[]"},
		{size: 100000, wantCode: 413, wantBody: "Payload Too Large"},
	} {
		req, _ := nethttp.NewRequest("POST", "http://"+addr+"/", io.MultiReader(strings.NewReader(strings.Repeat("h", tc.size))))
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("h2 %d bytes: %v", tc.size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.wantCode || string(b) != tc.wantBody {
			t.Errorf("h2 %d bytes: HTTP/%d %d %q, want %d %q", tc.size, resp.ProtoMajor, resp.StatusCode, b, tc.wantCode, tc.wantBody)
		}
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_too_large", 3)
}

// TestHTTPFilterBufferAfterDecompressor: the decompressor before the buffer
// filter inflates chunk by chunk; the buffer holds the inflated body and
// sets content-length to its length, as Envoy's docs suggest pairing them.
func TestHTTPFilterBufferAfterDecompressor(t *testing.T) {
	t.Parallel()
	backend := bodyBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.decompressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor
              decompressor_library:
                name: basic
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 100000
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("decbuf", vhosts, filters)}, staticCluster("app", backend)))
	c := newClient()
	compressed := gzipString(compressibleBody)
	req, _ := nethttp.NewRequest("POST", "http://"+h.ListenerAddr("decbuf")+"/", strings.NewReader(compressed))
	req.Header.Set("content-encoding", "gzip")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("len=%d cl=%d te=[]", len(compressibleBody), len(compressibleBody))
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("%d %q, want 200 %q", resp.StatusCode, b, want)
	}
}
