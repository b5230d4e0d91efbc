package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herald-proxy/herald/internal/testutil"
)

func catchAllConfig(listener, cluster string, clusterBlock string, hcmExtra string) string {
	return adminBlock + "static_resources:\n  listeners:\n" + hcmListener(listener, `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: `+cluster+` }`, hcmExtra) + "  clusters:\n" + clusterBlock
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	var hits int
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		hits++
		io.WriteString(w, "ok")
	}))
	h := testutil.Start(t, catchAllConfig("l", "b", staticCluster("b", backend), "          max_request_headers_kb: 1\n"))
	addr := h.ListenerAddr("l")
	tests := []struct {
		name       string
		req        string
		wantStatus string
		wantBody   string
	}{
		{name: "content-length and chunked", req: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", wantStatus: "HTTP/1.1 400"},
		{name: "bad request line", req: "GARBAGE\r\n\r\n", wantStatus: "HTTP/1.1 400", wantBody: "\r\n\r\nBad Request"},
		{name: "space before colon", req: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", wantStatus: "HTTP/1.1 400"},
		{name: "headers too large", req: "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 2048) + "\r\n\r\n", wantStatus: "HTTP/1.1 431", wantBody: "\r\n\r\nRequest Header Fields Too Large"},
		{name: "bad chunk size", req: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantStatus: "HTTP/1.1 400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, addr, tc.req)
			if !strings.HasPrefix(resp, tc.wantStatus) {
				t.Fatalf("response %q, want status %q", resp, tc.wantStatus)
			}
			if !strings.HasSuffix(resp, tc.wantBody) {
				t.Fatalf("response %q does not end with body %q", resp, tc.wantBody)
			}
			if strings.Count(resp, "HTTP/1.1 ") != 1 {
				t.Fatalf("got more than one response: %q", resp)
			}
		})
	}
	// The process survived and still serves.
	code, _, body := get(t, newClient(), "http://"+addr+"/", "")
	if code != 200 || body != "ok" {
		t.Fatalf("after malformed requests: %d %q", code, body)
	}
}

func TestLargeBodiesStream(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method == "POST" {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", n)
			return
		}
		w.Header().Set("content-length", fmt.Sprint(size))
		buf := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < size/len(buf); i++ {
			w.Write(buf)
		}
	}))
	h := testutil.Start(t, catchAllConfig("l", "b", staticCluster("b", backend), ""))
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	// Upload, chunked (unknown length).
	req, _ := nethttp.NewRequest("POST", base+"/up", io.LimitReader(zeroReader{}, size))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprint(size) {
		t.Fatalf("upload: backend saw %s bytes, want %d", b, size)
	}
	// Download.
	resp, err = c.Get(base + "/down")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, err %v; want %d", n, err, size)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestHTTP2DownstreamAndUpstream(t *testing.T) {
	t.Parallel()
	backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-upstream-proto", r.Proto)
		w.Header().Set("trailer", "grpc-status")
		io.WriteString(w, "h2 ok")
		w.Header().Set("grpc-status", "0")
	}))
	cluster := staticCluster("h2", backend) + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
	h := testutil.Start(t, catchAllConfig("l", "h2", cluster, ""))
	addr := h.ListenerAddr("l")
	// h2c prior knowledge downstream on the AUTO codec.
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}}
	c := &nethttp.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "h2 ok" || resp.Proto != "HTTP/2.0" {
		t.Fatalf("got %d %q over %s", resp.StatusCode, body, resp.Proto)
	}
	if got := resp.Header.Get("x-upstream-proto"); got != "HTTP/2.0" {
		t.Fatalf("upstream saw %q, want HTTP/2.0", got)
	}
	if got := resp.Trailer.Get("grpc-status"); got != "0" {
		t.Fatalf("trailer grpc-status = %q, want 0", got)
	}
	// HTTP/1.1 on the same port still works (AUTO).
	code, _, b := get(t, newClient(), "http://"+addr+"/y", "")
	if code != 200 || b != "h2 ok" {
		t.Fatalf("HTTP/1.1 on AUTO: %d %q", code, b)
	}
}

// TestHTTP2UpstreamTimeouts: the route timeout and a retry policy's
// per_try_timeout apply to HTTP/2 upstreams as to HTTP/1.1 ones: a stalled
// h2 backend gets 504 "upstream request timeout" with UT, and a per-try
// timeout is retried on a new stream.
func TestHTTP2UpstreamTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var calls atomic.Int32
	backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n := calls.Add(1)
		if r.URL.Path == "/stall" || (r.URL.Path == "/first-stalls" && n%2 == 1) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "h2 ok")
	}))
	t.Cleanup(func() { close(release) })
	cluster := staticCluster("h2", backend) + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("l", `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/first-stalls" }
                route:
                  cluster: h2
                  timeout: 10s
                  retry_policy: { retry_on: "reset", num_retries: 1, per_try_timeout: 0.2s }
              - match: { prefix: "/" }
                route: { cluster: h2, timeout: 0.2s }`, "") + "  clusters:\n" + cluster
	h := testutil.Start(t, cfg)
	addr := h.ListenerAddr("l")
	c := newClient()

	code, hdr, body := get(t, c, "http://"+addr+"/stall", "")
	if code != 504 || body != "upstream request timeout" {
		t.Fatalf("stalled h2 upstream: %d %q, want 504 upstream request timeout", code, body)
	}
	if hdr.Get("x-envoy-upstream-service-time") != "" {
		t.Errorf("a timeout answer carries x-envoy-upstream-service-time %q", hdr.Get("x-envoy-upstream-service-time"))
	}
	if got := h.Stat("cluster.h2.upstream_rq_timeout"); got != 1 {
		t.Errorf("upstream_rq_timeout = %d, want 1", got)
	}

	calls.Store(0)
	code, _, body = get(t, c, "http://"+addr+"/first-stalls", "")
	if code != 200 || body != "h2 ok" {
		t.Fatalf("per-try timeout then retry: %d %q, want 200 h2 ok", code, body)
	}
	if got := h.Stat("cluster.h2.upstream_rq_per_try_timeout"); got != 1 {
		t.Errorf("upstream_rq_per_try_timeout = %d, want 1", got)
	}
}
