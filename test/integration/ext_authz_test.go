package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/testutil"
)

// extAuthzGRPC is a real envoy.service.auth.v3.Authorization server: a
// call whose metadata says x-decision: deny, or an HTTP request whose path
// starts with /deny, is denied with 401, a header and a body; anything
// else is allowed with a request header for the upstream and a response
// header for the client. It records the checked paths, the bodies and the
// context_extensions of the last /api request.
type extAuthzGRPC struct {
	authv3.UnimplementedAuthorizationServer
	mu    sync.Mutex
	paths []string
	ext   map[string]string
	// bodies are the checked bodies with x-envoy-auth-partial-body.
	bodies []string
}

func (s *extAuthzGRPC) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	hr := req.GetAttributes().GetRequest().GetHttp()
	s.mu.Lock()
	s.paths = append(s.paths, hr.GetPath())
	if strings.HasPrefix(hr.GetPath(), "/api") {
		s.ext = req.GetAttributes().GetContextExtensions()
	}
	if hr.GetBody() != "" {
		s.bodies = append(s.bodies, hr.GetBody()+" partial="+hr.GetHeaders()["x-envoy-auth-partial-body"])
	}
	s.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	if strings.HasPrefix(hr.GetPath(), "/deny") || (len(md.Get("x-decision")) > 0 && md.Get("x-decision")[0] == "deny") {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-denied-by", Value: "grpc-authz"}}},
				Body:    "denied by grpc-authz",
			}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "grpc-authz"}, Append: wrapperspb.Bool(false)}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-authz-response", Value: "yes"}}},
		}},
	}, nil
}

func (s *extAuthzGRPC) checked() ([]string, map[string]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...), s.ext, append([]string(nil), s.bodies...)
}

func startExtAuthzGRPC(t *testing.T) (string, *extAuthzGRPC) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &extAuthzGRPC{}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String(), srv
}

// extAuthzHTTP is a real HTTP authorization service: /auth/deny... is a
// 403 with a body and x-reason, anything else a 200 with x-added.
func extAuthzHTTP(t *testing.T) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if strings.HasPrefix(r.URL.Path, "/auth/deny") {
			w.Header().Set("x-reason", "http-authz says no")
			w.WriteHeader(403)
			io.WriteString(w, "denied by http-authz")
			return
		}
		w.Header().Set("x-added", "http-authz:"+r.Header.Get("x-user"))
		w.Header().Set("x-not-for-upstream", "1")
	}))
}

// authzBackend echoes the request headers an authorization filter may
// add as x-seen-* response headers.
func authzBackend(t *testing.T) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-added", r.Header.Get("x-added"))
		w.Header().Set("x-seen-not-for-upstream", r.Header.Get("x-not-for-upstream"))
		w.Header().Set("x-seen-failure-mode", r.Header.Get("x-envoy-auth-failure-mode-allowed"))
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("x-seen-body", string(b))
		io.WriteString(w, "backend")
	}))
}

// extAuthzListener renders an HTTP listener whose connection manager
// (stat_prefix name) runs one ext_authz filter (ExtAuthz fields indented
// 14 spaces) before the router and logs "<name> path code details flags"
// to logPath; /public disables it, /api adds a context extension.
func extAuthzListener(name, authz, logPath string) string {
	return fmt.Sprintf(`  - name: %[1]s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %[1]s
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %[3]s
              log_format:
                text_format_source:
                  inline_string: "%[1]s %%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_CODE_DETAILS%% %%RESPONSE_FLAGS%%\n"
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              typed_per_filter_config:
                envoy.filters.http.ext_authz:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                  check_settings: { context_extensions: { vhost: app, level: vhost } }
              routes:
              - match: { prefix: "/public" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    disabled: true
              - match: { prefix: "/api" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    check_settings: { context_extensions: { level: route } }
              - match: { prefix: "/" }
                route: { cluster: app }
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
%[2]s          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, name, authz, logPath)
}

// grpcCluster renders a STATIC HTTP/2 cluster, as Envoy wants for gRPC.
func grpcCluster(name, addr string) string {
	return staticCluster(name, addr) + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
`
}

// extAuthzTCPListener renders a TCP listener: network ext_authz (whose
// call carries x-decision: decision) then tcp_proxy to cluster echo.
func extAuthzTCPListener(name, decision string) string {
	return fmt.Sprintf(`  - name: %[1]s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.ext_authz
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz
          stat_prefix: %[1]s
          transport_api_version: V3
          grpc_service:
            envoy_grpc: { cluster_name: authz-grpc }
            initial_metadata: [{ key: x-decision, value: %[2]s }]
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %[1]s
          cluster: echo
`, name, decision)
}

// TestExtAuthz runs both ext_authz filters on the real binary against a
// real gRPC Authorization server and a real HTTP authorization service.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/ext_authz_filter
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/ext_authz_filter
func TestExtAuthz(t *testing.T) {
	t.Parallel()
	grpcAddr, grpcSrv := startExtAuthzGRPC(t)
	httpAddr := extAuthzHTTP(t)
	backend := authzBackend(t)
	echo := testutil.TCPEcho(t)
	down := testutil.ClosedPort(t)
	logPath := filepath.Join(t.TempDir(), "access.log")

	grpcAuthz := "              grpc_service: { envoy_grpc: { cluster_name: authz-grpc }, timeout: 2s }\n" +
		"              with_request_body: { max_request_bytes: 5, allow_partial_message: true }\n"
	httpAuthz := `              http_service:
                server_uri: { uri: "http://authz", cluster: authz-http, timeout: 2s }
                path_prefix: /auth
                authorization_request: { allowed_headers: { patterns: [{ exact: x-user }] } }
                authorization_response:
                  allowed_upstream_headers: { patterns: [{ exact: x-added }] }
                  allowed_client_headers: { patterns: [{ exact: x-reason }] }
`
	downAuthz := "              grpc_service: { envoy_grpc: { cluster_name: authz-down }, timeout: 1s }\n"
	allowAuthz := downAuthz + "              failure_mode_allow: true\n              failure_mode_allow_header_add: true\n"
	cfg := bootstrap([]string{
		extAuthzListener("grpc_authz", grpcAuthz, logPath),
		extAuthzListener("http_authz", httpAuthz, logPath),
		extAuthzListener("down_authz", downAuthz, logPath),
		extAuthzListener("allow_authz", allowAuthz, logPath),
		extAuthzTCPListener("tcp_allow", "allow"),
		extAuthzTCPListener("tcp_deny", "deny"),
	},
		staticCluster("app", backend),
		staticCluster("echo", echo),
		grpcCluster("authz-grpc", grpcAddr),
		staticCluster("authz-http", httpAddr),
		grpcCluster("authz-down", down),
	)
	h := testutil.Start(t, cfg, "--file-flush-interval-msec", "50")
	c := newClient()

	tests := []struct {
		name       string
		listener   string
		path       string
		hdr        map[string]string
		wantCode   int
		wantBody   string
		wantHeader map[string]string // response headers the client must see ("" = absent)
	}{
		{
			name: "grpc allowed", listener: "grpc_authz", path: "/allow",
			wantCode: 200, wantBody: "backend",
			wantHeader: map[string]string{"x-seen-added": "grpc-authz", "x-authz-response": "yes"},
		},
		{
			name: "grpc denied", listener: "grpc_authz", path: "/deny",
			wantCode: 401, wantBody: "denied by grpc-authz",
			wantHeader: map[string]string{"x-denied-by": "grpc-authz"},
		},
		{
			name: "grpc disabled per route", listener: "grpc_authz", path: "/public/deny",
			wantCode: 200, wantBody: "backend", wantHeader: map[string]string{"x-seen-added": "", "x-authz-response": ""},
		},
		{
			name: "grpc context extensions", listener: "grpc_authz", path: "/api/x",
			wantCode: 200, wantBody: "backend",
		},
		{
			name: "http allowed", listener: "http_authz", path: "/allow", hdr: map[string]string{"x-user": "bob"},
			wantCode: 200, wantBody: "backend",
			// only allowed_upstream_headers reach the upstream
			wantHeader: map[string]string{"x-seen-added": "http-authz:bob", "x-seen-not-for-upstream": ""},
		},
		{
			name: "http denied", listener: "http_authz", path: "/deny",
			wantCode: 403, wantBody: "denied by http-authz",
			wantHeader: map[string]string{"x-reason": "http-authz says no"},
		},
		{
			name: "service down", listener: "down_authz", path: "/allow",
			wantCode: 403, wantBody: "",
		},
		{
			name: "service down with failure_mode_allow", listener: "allow_authz", path: "/allow",
			wantCode: 200, wantBody: "backend",
			wantHeader: map[string]string{"x-seen-failure-mode": "true"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body, _ := do(t, c, "GET", "http://"+h.ListenerAddr(tc.listener)+tc.path, tc.hdr)
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("GET %s on %s: %d %q, want %d %q", tc.path, tc.listener, code, body, tc.wantCode, tc.wantBody)
			}
			for k, want := range tc.wantHeader {
				if got := hdr.Get(k); got != want {
					t.Errorf("response header %s = %q, want %q", k, got, want)
				}
			}
		})
	}

	t.Run("grpc with request body", func(t *testing.T) {
		// The service sees the first max_request_bytes, marked partial;
		// the upstream still gets the whole body.
		req, err := nethttp.NewRequest("POST", "http://"+h.ListenerAddr("grpc_authz")+"/allow/body", strings.NewReader("hello world"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("x-seen-body") != "hello world" {
			t.Errorf("POST: %d, upstream saw body %q; want 200 and the whole body", resp.StatusCode, resp.Header.Get("x-seen-body"))
		}
		if _, _, bodies := grpcSrv.checked(); len(bodies) != 1 || bodies[0] != "hello partial=true" {
			t.Errorf("the service saw bodies %q, want [\"hello partial=true\"]", bodies)
		}
	})

	paths, ext, _ := grpcSrv.checked()
	for _, p := range paths {
		if strings.HasPrefix(p, "/public") {
			t.Errorf("the service checked %s, which disables the filter", p)
		}
	}
	// The route's level overrides the virtual host's on the same key.
	if ext["vhost"] != "app" || ext["level"] != "route" {
		t.Errorf("/api context_extensions = %v, want vhost=app level=route", ext)
	}

	// Response code details and the UAEX flag, as Envoy logs them.
	lines := waitLines(t, logPath, len(tests)+1)
	for _, want := range []string{
		"grpc_authz /allow 200 via_upstream -",
		"grpc_authz /deny 401 ext_authz_denied UAEX",
		"http_authz /deny 403 ext_authz_denied UAEX",
		"down_authz /allow 403 ext_authz_error UAEX",
		"allow_authz /allow 200 via_upstream -",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("access log has no line %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}

	t.Run("tcp allowed", func(t *testing.T) {
		got, err := tcpRoundTrip(h.ListenerAddr("tcp_allow"), "ping")
		if err != nil || got != "ping" {
			t.Errorf("round trip through tcp_allow = %q, %v; want the echo", got, err)
		}
	})
	t.Run("tcp denied", func(t *testing.T) {
		got, _ := tcpRoundTrip(h.ListenerAddr("tcp_deny"), "ping")
		if got != "" {
			t.Errorf("tcp_deny echoed %q, want the connection closed", got)
		}
	})

	for name, want := range map[string]int64{
		"http.grpc_authz.ext_authz.ok":                    3,
		"http.grpc_authz.ext_authz.denied":                1,
		"http.http_authz.ext_authz.ok":                    1,
		"http.http_authz.ext_authz.denied":                1,
		"http.down_authz.ext_authz.error":                 1,
		"http.allow_authz.ext_authz.error":                1,
		"http.allow_authz.ext_authz.failure_mode_allowed": 1,
		"ext_authz.tcp_allow.total":                       1,
		"ext_authz.tcp_allow.ok":                          1,
		"ext_authz.tcp_deny.denied":                       1,
		"ext_authz.tcp_deny.cx_closed":                    1,
		"ext_authz.tcp_allow.active":                      0,
	} {
		waitStat(t, h, name, want)
	}
}
