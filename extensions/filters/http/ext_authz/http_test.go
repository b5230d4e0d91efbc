package extauthz

import (
	"context"
	"io"
	nethttp "net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

	// The HTTP service's cluster needs a cluster type and a load balancer.
	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream"
)

// seenRequest is what the HTTP authorization service received.
type seenRequest struct {
	method, path string
	header       nethttp.Header
	body         string
}

// httpAuthServer answers by path: /check/allow 200 with headers for the
// upstream and the client, /check/deny 401 with a challenge and a body,
// /check/fail 503; it records every request.
func httpAuthServer(t *testing.T) (string, func() []seenRequest) {
	var mu sync.Mutex
	var seen []seenRequest
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, seenRequest{method: r.Method, path: r.URL.RequestURI(), header: r.Header.Clone(), body: string(b)})
		mu.Unlock()
		switch r.URL.Path {
		case "/check/allow":
			w.Header().Set("x-auth-user", "alice")
			w.Header().Set("x-append", "two")
			w.Header().Set("x-not-allowed", "no")
			w.Header().Set("x-on-success", "yes")
			w.Header().Set(HeaderToRemove, "x-drop, x-keep-not")
		case "/check/deny":
			w.Header().Set("www-authenticate", "Basic")
			w.Header().Set("x-secret", "s")
			w.WriteHeader(401)
			io.WriteString(w, "who are you")
		default:
			w.WriteHeader(503)
		}
	}))
	return addr, func() []seenRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]seenRequest(nil), seen...)
	}
}

func clusterManager(t *testing.T, store *stats.Store, name, addr string) *upstream.Manager {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
					}}},
				}},
			}}}},
		},
	}
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mgr.Apply(ctx, []*clusterv3.Cluster{c}, func(int) string { return "clusters" }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return mgr
}

// TestHTTPService drives the filter against a real HTTP authorization
// service through a cluster.
func TestHTTPService(t *testing.T) {
	addr, seen := httpAuthServer(t)
	const base = `http_service:
  server_uri: {uri: "http://authz", cluster: authz, timeout: 2s}
  path_prefix: /check
  authorization_request:
    allowed_headers: {patterns: [{exact: x-keep}]}
    headers_to_add: [{key: x-from, value: herald}]
  authorization_response:
    allowed_upstream_headers: {patterns: [{prefix: x-auth-}]}
    allowed_upstream_headers_to_append: {patterns: [{exact: x-append}]}
    allowed_client_headers_on_success: {patterns: [{exact: x-on-success}]}
`
	tests := []struct {
		name        string
		path        string
		extra       string
		wantStatus  httpfilter.Status
		wantRequest map[string][]string
		wantRespH   map[string][]string
		wantReply   int
		wantBody    string
		wantDetails string
		wantReplyH  map[string][]string
	}{
		{
			name: "allowed", path: "/allow", wantStatus: httpfilter.Continue,
			wantRequest: map[string][]string{"x-auth-user": {"alice"}, "x-append": {"one,two"}, "x-keep": {"k"}},
			wantRespH:   map[string][]string{"x-on-success": {"yes"}},
		},
		{
			name: "denied", path: "/deny", wantStatus: httpfilter.Stop,
			wantReply: 401, wantBody: "who are you", wantDetails: DetailsDenied,
			// allowed_client_headers unset: every header but Host.
			wantReplyH: map[string][]string{"www-authenticate": {"Basic"}, "x-secret": {"s"}},
		},
		{
			name: "denied with allowed_client_headers", path: "/deny", wantStatus: httpfilter.Stop,
			extra:     "    allowed_client_headers: {patterns: [{exact: x-other}]}\n",
			wantReply: 401, wantBody: "who are you", wantDetails: DetailsDenied,
			// www-authenticate is always allowed once the list is set.
			wantReplyH: map[string][]string{"www-authenticate": {"Basic"}},
		},
		{name: "5xx is an error", path: "/fail", wantStatus: httpfilter.Stop, wantReply: 403, wantDetails: DetailsError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			ctx.Clusters = clusterManager(t, store, "authz", addr)
			cfg := httpfiltertest.Parse(t, base+tc.extra, &extauthzv3.ExtAuthz{})
			factory, err := Build(cfg, ctx)
			if err != nil {
				t.Fatal(err)
			}
			h := request()
			h.Set(":path", tc.path)
			n := len(seen())
			r := run(t, factory, &httpfiltertest.Callbacks{}, h, true)
			if r.status != tc.wantStatus {
				t.Fatalf("DecodeHeaders = %v, want %v (reply %+v)", r.status, tc.wantStatus, r.reply)
			}
			reqs := seen()[n:]
			if len(reqs) != 1 {
				t.Fatalf("service got %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			// Envoy: the method and path of the request (path_prefix
			// first), Host, Authorization, the allowed headers,
			// headers_to_add, content-length 0.
			if got.method != "GET" || got.path != "/check"+tc.path {
				t.Errorf("service saw %s %s, want GET /check%s", got.method, got.path, tc.path)
			}
			wantHdr := map[string]string{"Authorization": "Bearer t", "X-Keep": "k", "X-From": "herald", "Content-Length": "0", "X-Drop": "", "X-Append": ""}
			for k, want := range wantHdr {
				if v := got.header.Get(k); v != want {
					t.Errorf("service saw %s: %q, want %q", k, v, want)
				}
			}
			if tc.wantRequest != nil {
				names := []string{"x-auth-user", "x-append", "x-keep", "x-not-allowed", "x-drop"}
				if diff := cmp.Diff(tc.wantRequest, fields(r.request, names...)); diff != "" {
					t.Errorf("request headers (-want +got):\n%s", diff)
				}
			}
			if tc.wantRespH != nil {
				if diff := cmp.Diff(tc.wantRespH, fields(r.response, "x-on-success", "x-auth-user")); diff != "" {
					t.Errorf("response headers (-want +got):\n%s", diff)
				}
			}
			if tc.wantReply != 0 {
				if r.reply == nil || r.reply.Code != tc.wantReply || r.reply.Body != tc.wantBody || r.reply.Details != tc.wantDetails {
					t.Fatalf("reply %+v, want %d %q %s", r.reply, tc.wantReply, tc.wantBody, tc.wantDetails)
				}
				if tc.wantReplyH != nil {
					if diff := cmp.Diff(tc.wantReplyH, fields(r.reply.Headers, "www-authenticate", "x-secret", "host")); diff != "" {
						t.Errorf("reply headers (-want +got):\n%s", diff)
					}
				}
			}
		})
	}
}
