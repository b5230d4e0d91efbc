package tcpproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"

	// A STATIC cluster with the default round_robin policy (an internal
	// test cannot import extensions/all, which imports this package).
	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream"
)

func TestAppendH1Request(t *testing.T) {
	tests := []struct {
		name string
		req  []hhttp.HeaderField
		want string
	}{
		{
			// Envoy's HTTP/1.1 encoder: authority-form target, host from
			// :authority, no framing header.
			name: "connect",
			req:  []hhttp.HeaderField{{Name: ":method", Value: "CONNECT"}, {Name: ":authority", Value: "h:443"}, {Name: "x-a", Value: "1"}},
			want: "CONNECT h:443 HTTP/1.1\r\nhost: h:443\r\nx-a: 1\r\n\r\n",
		},
		{
			name: "post",
			req:  []hhttp.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":authority", Value: "h:1"}, {Name: ":path", Value: "/t"}},
			want: "POST /t HTTP/1.1\r\nhost: h:1\r\n\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendH1Request(nil, &hhttp.Headers{Fields: tc.req}))
			if got != tc.want {
				t.Errorf("request head = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadH1ResponseHead(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []hhttp.HeaderField
		wantRest string // tunnel bytes left in the reader
		wantErr  string
	}{
		{
			name:     "200 with tunnel bytes behind the head",
			in:       "HTTP/1.1 200 Connection established\r\nX-Via: p\r\n\r\nhello",
			want:     []hhttp.HeaderField{{Name: ":status", Value: "200"}, {Name: "x-via", Value: "p"}},
			wantRest: "hello",
		},
		{
			name: "1xx skipped",
			in:   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\n\r\n",
			want: []hhttp.HeaderField{{Name: ":status", Value: "403"}},
		},
		{name: "bad status line", in: "HTTP/2 200\r\n\r\n", wantErr: "bad status line"},
		{name: "truncated", in: "HTTP/1.1 200 OK\r\nx: y\r\n", wantErr: "unexpected EOF"},
		{name: "too large", in: "HTTP/1.1 200 OK\r\nx: " + strings.Repeat("a", maxTunnelResponseHead) + "\r\n\r\n", wantErr: "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 4<<10)
			got, err := readH1ResponseHead(br)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.Fields); diff != "" {
				t.Errorf("head (-want +got):\n%s", diff)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tc.wantRest {
				t.Errorf("tunnel bytes = %q, want %q", rest, tc.wantRest)
			}
		})
	}
}

// TestServeConnH2TunnelFilterState runs a connection through an HTTP/2
// tunnel in process (under -race) and checks what
// propagate_response_headers and propagate_response_trailers leave in the
// connection's filter state.
func TestServeConnH2TunnelFilterState(t *testing.T) {
	backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-resp", "yes")
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		io.Copy(w, r.Body)
		w.Header().Set(nethttp.TrailerPrefix+"x-trailer", "done")
	}))
	host, port, _ := net.SplitHostPort(backend)
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	var cl clusterv3.Cluster
	clusterYAML := fmt.Sprintf(`
name: tunnel
type: STATIC
connect_timeout: 1s
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: { http2_protocol_options: {} }
load_assignment:
  cluster_name: tunnel
  endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: %q, port_value: %s } } } }] }]
`, host, port)
	if _, err := bootstrap.Unmarshal("cluster.yaml", []byte(clusterYAML), &cl); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Apply(context.Background(), []*clusterv3.Cluster{&cl}, func(int) string { return "clusters[0]" }); err != nil {
		t.Fatal(err)
	}
	ctx, _ := tcpBuildContext(t)
	ctx.Clusters, ctx.Stats = mgr, store
	nf, err := Build(parseTCPProxy(t, `
stat_prefix: db
cluster: tunnel
tunneling_config: { hostname: "h:1", propagate_response_headers: true, propagate_response_trailers: true }
`, false), ctx)
	if err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := network.NewConn(context.Background(), server, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nf.(*Filter).ServeConn(c)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("ping"))
	client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v; want \"ping\"", got, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after both sides ended")
	}
	rh, _ := c.FilterState(FilterStateResponseHeaders).(*hhttp.Headers)
	if rh == nil || rh.Get(":status") != "200" || rh.Get("x-resp") != "yes" {
		t.Errorf("%s = %+v, want :status 200 and x-resp: yes", FilterStateResponseHeaders, rh)
	}
	tr, _ := c.FilterState(FilterStateResponseTrailers).(*hhttp.Headers)
	if tr == nil || tr.Get("x-trailer") != "done" {
		t.Errorf("%s = %+v, want x-trailer: done", FilterStateResponseTrailers, tr)
	}
}
