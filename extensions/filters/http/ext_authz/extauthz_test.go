package extauthz

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// authServer is an in-process envoy.service.auth.v3.Authorization on
// loopback: it answers with respond and records the requests it saw.
type authServer struct {
	authv3.UnimplementedAuthorizationServer
	respond func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)

	mu   sync.Mutex
	reqs []*authv3.CheckRequest
}

func (s *authServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return s.respond(ctx, req)
}

func (s *authServer) requests() []*authv3.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), s.reqs...)
}

// startAuthServer serves s on 127.0.0.1:0 and returns its address.
func startAuthServer(t *testing.T, s *authServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func okResponse(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.OK)}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

func hv(key, value string, appendAction corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: appendAction}
}

func hvAppend(key, value string, app bool) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, Append: wrapperspb.Bool(app)}
}

// grpcConfig is a filter config calling addr with google_grpc, plus extra
// ExtAuthz fields (YAML, top level).
func grpcConfig(addr, extra string) string {
	return "grpc_service: {google_grpc: {target_uri: \"" + addr + "\", stat_prefix: authz}, timeout: 2s}\n" + extra
}

func build(t *testing.T, yaml string, store *stats.Store) httpfilter.Factory {
	t.Helper()
	cfg := httpfiltertest.Parse(t, yaml, &extauthzv3.ExtAuthz{})
	f, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return f
}

func perRoute(t *testing.T, yaml string) *PerRoute {
	t.Helper()
	cfg := httpfiltertest.Parse(t, yaml, &extauthzv3.ExtAuthzPerRoute{})
	pr, err := BuildPerRoute(cfg, httpfiltertest.BuildContext("", stats.NewStore()))
	if err != nil {
		t.Fatalf("BuildPerRoute: %v", err)
	}
	return pr.(*PerRoute)
}

// request is a GET /api with a few headers, as DecodeHeaders sees it.
func request() *hhttp.Headers {
	h := httpfiltertest.Request()
	h.Path()
	h.Set(hhttp.Path, "/api?a=1&b=2")
	h.Add(hhttp.Scheme, "http")
	h.Add("authorization", "Bearer t")
	h.Add("x-keep", "k")
	h.Add("x-append", "one")
	h.Add("x-drop", "d")
	h.Add("x-multi", "1")
	h.Add("x-multi", "2")
	h.Add(HeaderPartialBody, "forged")
	return h
}

// result is what one stream through the filter produced.
type result struct {
	status   httpfilter.Status
	request  *hhttp.Headers // request headers after DecodeHeaders
	reply    *httpfiltertest.Reply
	flags    streaminfo.ResponseFlag
	response *hhttp.Headers // a 200 from upstream after EncodeHeaders (when allowed)
}

func run(t *testing.T, factory httpfilter.Factory, cb *httpfiltertest.Callbacks, h *hhttp.Headers, endStream bool) result {
	t.Helper()
	if cb.MatchedRoute == nil {
		cb.MatchedRoute = httpfiltertest.Route{}
	}
	f := factory(cb)
	cb.Filter = f
	st := f.(httpfilter.DecoderFilter).DecodeHeaders(h, endStream)
	r := result{status: st, request: h, flags: cb.Info.Flags}
	if len(cb.Replies) > 0 {
		r.reply = &cb.Replies[0]
	}
	if st == httpfilter.Continue {
		r.response = httpfiltertest.Response(200)
		r.response.Add("x-upstream", "u")
		f.(httpfilter.EncoderFilter).EncodeHeaders(r.response, false)
	}
	f.(httpfilter.Destroyer).OnDestroy()
	return r
}

func fields(h *hhttp.Headers, names ...string) map[string][]string {
	out := map[string][]string{}
	for _, n := range names {
		if v := h.Values(nil, n); len(v) > 0 {
			out[n] = v
		}
	}
	return out
}

// TestGRPCCheck drives the filter against a real gRPC Authorization
// server: how each kind of answer reaches the request, the upstream
// response or the client.
func TestGRPCCheck(t *testing.T) {
	tests := []struct {
		name    string
		extra   string // ExtAuthz fields
		respond func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)

		wantStatus  httpfilter.Status
		wantRequest map[string][]string // request fields after the check (names below)
		wantPath    string
		wantReply   int // 0: no local reply
		wantBody    string
		wantDetails string
		wantReplyH  map[string][]string // local reply fields
		wantRespH   map[string][]string // upstream response fields after EncodeHeaders
		wantStats   map[string]uint64
	}{
		{
			name: "ok with mutations",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{
					Headers: []*corev3.HeaderValueOption{
						hv("x-user", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
						hv("x-keep", "k2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
						hvAppend("x-append", "two", true),
						hvAppend("x-absent-append", "z", true), // append only onto an existing header
						hv("x-keep", "never", corev3.HeaderValueOption_ADD_IF_ABSENT),
						hv("x-nothere", "never", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
					},
					HeadersToRemove:         []string{"x-drop", ":path", "host"},
					ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hvAppend("x-upstream", "authz", true), hvAppend("x-set", "s", false)},
					QueryParametersToSet:    []*corev3.QueryParameter{{Key: "a", Value: "9"}, {Key: "c", Value: "3"}},
					QueryParametersToRemove: []string{"b"},
				}), nil
			},
			wantStatus: httpfilter.Continue,
			wantRequest: map[string][]string{
				"x-user": {"alice"}, "x-keep": {"k", "k2"}, "x-append": {"one,two"},
			},
			wantPath:  "/api?a=9&c=3",
			wantRespH: map[string][]string{"x-upstream": {"u", "authz"}, "x-set": {"s"}},
			wantStats: map[string]uint64{"ok": 1},
		},
		{
			name: "denied with the service's reply",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{
					Status: &status.Status{Code: int32(codes.PermissionDenied)},
					HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
						Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
						Headers: []*corev3.HeaderValueOption{hvAppend("www-authenticate", "Bearer", false), hvAppend("set-cookie", "a=1", true), hvAppend("set-cookie", "b=2", true)},
						Body:    "go away",
					}},
				}, nil
			},
			wantStatus: httpfilter.Stop, wantReply: 401, wantBody: "go away", wantDetails: DetailsDenied,
			wantReplyH: map[string][]string{"www-authenticate": {"Bearer"}, "set-cookie": {"a=1", "b=2"}},
			wantStats:  map[string]uint64{"denied": 1},
		},
		{
			name:  "denied body truncated",
			extra: "max_denied_response_body_bytes: 3",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)},
					HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "go away"}}}, nil
			},
			wantStatus: httpfilter.Stop, wantReply: 403, wantBody: "go ", wantDetails: DetailsDenied,
			wantStats: map[string]uint64{"denied": 1},
		},
		{
			name: "denied without details is a 403",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.PermissionDenied)}}, nil
			},
			wantStatus: httpfilter.Stop, wantReply: 403, wantDetails: DetailsDenied,
			wantStats: map[string]uint64{"denied": 1},
		},
		{
			name: "call failure is a 403",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return nil, grpcstatus.Error(codes.Unavailable, "down")
			},
			wantStatus: httpfilter.Stop, wantReply: 403, wantDetails: DetailsError,
			wantStats: map[string]uint64{"error": 1, "failure_mode_allowed": 0},
		},
		{
			name:  "error_response is an error with status_on_error",
			extra: "status_on_error: {code: ServiceUnavailable}",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Internal)},
					HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "x"}}}, nil
			},
			wantStatus: httpfilter.Stop, wantReply: 503, wantDetails: DetailsError,
			wantStats: map[string]uint64{"error": 1},
		},
		{
			name:  "timeout with failure_mode_allow",
			extra: "failure_mode_allow: true\nfailure_mode_allow_header_add: true",
			respond: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				<-ctx.Done() // the filter's deadline (grpc_service.timeout) ends the call
				return nil, ctx.Err()
			},
			wantStatus:  httpfilter.Continue,
			wantRequest: map[string][]string{HeaderFailureModeAllowed: {"true"}},
			wantStats:   map[string]uint64{"error": 1, "failure_mode_allowed": 1},
		},
		{
			name:  "invalid mutation with validate_mutations",
			extra: "validate_mutations: true",
			respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{hvAppend("x-bad", "a\nb", false)}}), nil
			},
			wantStatus: httpfilter.Stop, wantReply: 500, wantDetails: DetailsInvalid,
			wantStats: map[string]uint64{"invalid": 1, "ok": 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &authServer{respond: tc.respond}
			addr := startAuthServer(t, srv)
			cfg := grpcConfig(addr, tc.extra)
			if strings.Contains(tc.name, "timeout") {
				cfg = strings.Replace(cfg, "timeout: 2s", "timeout: 0.05s", 1)
			}
			store := stats.NewStore()
			r := run(t, build(t, cfg, store), &httpfiltertest.Callbacks{}, request(), true)
			if r.status != tc.wantStatus {
				t.Fatalf("DecodeHeaders = %v, want %v (reply %+v)", r.status, tc.wantStatus, r.reply)
			}
			if tc.wantRequest != nil {
				names := make([]string, 0, len(tc.wantRequest)+3)
				for n := range tc.wantRequest {
					names = append(names, n)
				}
				if tc.name == "ok with mutations" {
					names = append(names, "x-drop", "x-nothere", "x-absent-append")
					// x-drop was removed; :path and host are never removable.
					if !r.request.Has(hhttp.Path) {
						t.Errorf(":path was removed")
					}
				}
				if diff := cmp.Diff(tc.wantRequest, fields(r.request, names...)); diff != "" {
					t.Errorf("request headers (-want +got):\n%s", diff)
				}
			}
			if tc.wantPath != "" && r.request.Path() != tc.wantPath {
				t.Errorf(":path = %q, want %q", r.request.Path(), tc.wantPath)
			}
			if tc.wantRespH != nil {
				if diff := cmp.Diff(tc.wantRespH, fields(r.response, "x-upstream", "x-set")); diff != "" {
					t.Errorf("response headers (-want +got):\n%s", diff)
				}
			}
			switch {
			case tc.wantReply == 0 && r.reply != nil:
				t.Errorf("unexpected local reply %+v", r.reply)
			case tc.wantReply != 0 && r.reply == nil:
				t.Errorf("no local reply, want %d", tc.wantReply)
			case tc.wantReply != 0:
				if r.reply.Code != tc.wantReply || r.reply.Body != tc.wantBody || r.reply.Details != tc.wantDetails {
					t.Errorf("reply %d %q %q, want %d %q %q", r.reply.Code, r.reply.Body, r.reply.Details, tc.wantReply, tc.wantBody, tc.wantDetails)
				}
				if r.flags&streaminfo.UnauthorizedExternalService == 0 {
					t.Errorf("UAEX flag not set")
				}
				if tc.wantReplyH != nil {
					if diff := cmp.Diff(tc.wantReplyH, fields(r.reply.Headers, "www-authenticate", "set-cookie")); diff != "" {
						t.Errorf("reply headers (-want +got):\n%s", diff)
					}
				}
			}
			for name, want := range tc.wantStats {
				if got := store.Counter("http.ingress.ext_authz." + name).Value(); got != want {
					t.Errorf("http.ingress.ext_authz.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestCheckRequest checks the CheckRequest the service gets: the header
// allow and deny lists, context_extensions merged over route levels, the
// body and x-envoy-auth-partial-body.
func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		levels     []string // ExtAuthzPerRoute YAML, least specific first
		body       string   // the rest of the request; "" means headers only
		wantStatus httpfilter.Status
		wantCalls  int
		wantH      map[string]string
		wantExt    map[string]string
		wantBody   string
		wantReply  int
	}{
		{
			name:       "every header by default",
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH: map[string]string{
				":method": "GET", ":path": "/api?a=1&b=2", ":authority": "example.com", ":scheme": "http",
				"authorization": "Bearer t", "x-keep": "k", "x-append": "one", "x-drop": "d", "x-multi": "1,2",
			},
		},
		{
			name:       "allowed and disallowed",
			extra:      "allowed_headers: {patterns: [{prefix: x-}]}\ndisallowed_headers: {patterns: [{exact: x-drop}]}",
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH: map[string]string{"x-keep": "k", "x-append": "one", "x-multi": "1,2"},
		},
		{
			name:       "context extensions merged",
			extra:      "allowed_headers: {patterns: [{exact: none}]}",
			levels:     []string{"check_settings: {context_extensions: {vh: app, k: vh}}", "check_settings: {context_extensions: {k: route}}"},
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH:   map[string]string{},
			wantExt: map[string]string{"vh": "app", "k": "route"},
		},
		{
			name:       "disabled on the route",
			levels:     []string{"disabled: true"},
			wantStatus: httpfilter.Continue, wantCalls: 0,
		},
		{
			name:       "body",
			extra:      "allowed_headers: {patterns: [{exact: none}]}\nwith_request_body: {max_request_bytes: 100}",
			body:       "hello world",
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH:    map[string]string{HeaderPartialBody: "false"},
			wantBody: "hello world",
		},
		{
			name:       "partial body",
			extra:      "allowed_headers: {patterns: [{exact: none}]}\nwith_request_body: {max_request_bytes: 5, allow_partial_message: true}",
			body:       "hello world",
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH:    map[string]string{HeaderPartialBody: "true"},
			wantBody: "hello",
		},
		{
			name:       "body too large",
			extra:      "with_request_body: {max_request_bytes: 5}\nfailure_mode_allow: true",
			body:       "hello world",
			wantStatus: httpfilter.Stop, wantCalls: 0, wantReply: 413,
		},
		{
			name:       "body buffering disabled on the route",
			extra:      "allowed_headers: {patterns: [{exact: none}]}\nwith_request_body: {max_request_bytes: 5}",
			levels:     []string{"check_settings: {disable_request_body_buffering: true}"},
			body:       "hello world",
			wantStatus: httpfilter.Continue, wantCalls: 1,
			wantH: map[string]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &authServer{respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(nil), nil
			}}
			addr := startAuthServer(t, srv)
			cb := &httpfiltertest.Callbacks{RequestBody: []byte(tc.body)}
			var levels []any
			for _, l := range tc.levels {
				levels = append(levels, perRoute(t, l))
			}
			route := httpfiltertest.ListRoute{Route: httpfiltertest.Route{}, Levels: levels}
			if len(levels) > 0 {
				route.Route[Name] = levels[len(levels)-1]
			}
			cb.MatchedRoute = route
			r := run(t, build(t, grpcConfig(addr, tc.extra), stats.NewStore()), cb, request(), tc.body == "")
			if r.status != tc.wantStatus {
				t.Fatalf("DecodeHeaders = %v, want %v", r.status, tc.wantStatus)
			}
			if tc.wantReply != 0 && (r.reply == nil || r.reply.Code != tc.wantReply) {
				t.Errorf("reply %+v, want %d", r.reply, tc.wantReply)
			}
			reqs := srv.requests()
			if len(reqs) != tc.wantCalls {
				t.Fatalf("service got %d checks, want %d", len(reqs), tc.wantCalls)
			}
			if tc.wantCalls == 0 {
				return
			}
			hr := reqs[0].GetAttributes().GetRequest().GetHttp()
			if diff := cmp.Diff(tc.wantH, hr.GetHeaders(), cmp.Comparer(func(a, b map[string]string) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if hr.GetBody() != tc.wantBody {
				t.Errorf("body %q, want %q", hr.GetBody(), tc.wantBody)
			}
			if got := reqs[0].GetAttributes().GetContextExtensions(); len(tc.wantExt) > 0 || len(got) > 0 {
				if diff := cmp.Diff(tc.wantExt, got); diff != "" {
					t.Errorf("context_extensions (-want +got):\n%s", diff)
				}
			}
			if hr.GetMethod() != "GET" || hr.GetPath() != "/api?a=1&b=2" || hr.GetHost() != "example.com" || hr.GetScheme() != "http" {
				t.Errorf("request attributes %v", hr)
			}
		})
	}
}

// TestFilterEnabled: filter_enabled at 0% skips the check (counting
// disabled); deny_at_disable turns that into status_on_error.
func TestFilterEnabled(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		wantStatus httpfilter.Status
		wantReply  int
	}{
		{name: "disabled", extra: "filter_enabled: {default_value: {numerator: 0}}", wantStatus: httpfilter.Continue},
		{name: "deny at disable", extra: "filter_enabled: {default_value: {numerator: 0}}\ndeny_at_disable: {default_value: true, runtime_key: k}", wantStatus: httpfilter.Stop, wantReply: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := &authServer{respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				return okResponse(nil), nil
			}}
			addr := startAuthServer(t, srv)
			store := stats.NewStore()
			r := run(t, build(t, grpcConfig(addr, tc.extra), store), &httpfiltertest.Callbacks{}, request(), true)
			if r.status != tc.wantStatus {
				t.Fatalf("DecodeHeaders = %v, want %v", r.status, tc.wantStatus)
			}
			if tc.wantReply != 0 && (r.reply == nil || r.reply.Code != tc.wantReply || r.reply.Details != DetailsError) {
				t.Errorf("reply %+v, want %d %s", r.reply, tc.wantReply, DetailsError)
			}
			if n := len(srv.requests()); n != 0 {
				t.Errorf("service got %d checks, want 0", n)
			}
			if got := store.Counter("http.ingress.ext_authz.disabled").Value(); got != 1 {
				t.Errorf("disabled = %d, want 1", got)
			}
		})
	}
}

// TestNoRoute: Envoy skips the check when no route matched.
func TestNoRoute(t *testing.T) {
	srv := &authServer{respond: func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return okResponse(nil), nil
	}}
	addr := startAuthServer(t, srv)
	f := build(t, grpcConfig(addr, ""), stats.NewStore())(&httpfiltertest.Callbacks{})
	if st := f.(httpfilter.DecoderFilter).DecodeHeaders(request(), true); st != httpfilter.Continue {
		t.Errorf("DecodeHeaders = %v, want Continue", st)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("service got %d checks, want 0", n)
	}
}

// TestStreamCancelled: a check in flight ends with the stream.
func TestStreamCancelled(t *testing.T) {
	started := make(chan struct{})
	srv := &authServer{respond: func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	addr := startAuthServer(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	cb := &httpfiltertest.Callbacks{Ctx: ctx}
	start := time.Now()
	r := run(t, build(t, grpcConfig(addr, ""), stats.NewStore()), cb, request(), true)
	if r.status != httpfilter.Stop || r.reply != nil {
		t.Errorf("DecodeHeaders = %v with reply %+v, want Stop and no reply", r.status, r.reply)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v, want the cancel to end the check", d)
	}
}

func TestEditQuery(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		set    []hhttp.HeaderField
		remove []string
		want   string
	}{
		{name: "set new", path: "/a", set: []hhttp.HeaderField{{Name: "x", Value: "1"}}, want: "/a?x=1"},
		{name: "overwrite every value", path: "/a?x=1&y=2&x=3", set: []hhttp.HeaderField{{Name: "x", Value: "9"}}, want: "/a?x=9&y=2"},
		{name: "remove last", path: "/a?x=1", remove: []string{"x"}, want: "/a"},
		{name: "fragment kept", path: "/a?x=1#f", remove: []string{"y"}, want: "/a?x=1#f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := editQuery(tc.path, tc.set, tc.remove); got != tc.want {
				t.Errorf("editQuery(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// FuzzEditQuery feeds editQuery the service's untrusted query mutations:
// it must not panic, must keep the path before '?', and must drop every
// removed name.
func FuzzEditQuery(f *testing.F) {
	f.Add("/a?x=1&y=2#f", "x", "9", "y")
	f.Add("/", "", "", "")
	f.Add("?&&=&#", "=", "&", "#")
	f.Fuzz(func(t *testing.T, path, key, value, remove string) {
		got := editQuery(path, []hhttp.HeaderField{{Name: key, Value: value}}, []string{remove})
		base, _, _ := strings.Cut(path, "?")
		if !strings.HasPrefix(got, base) {
			t.Fatalf("editQuery(%q) = %q lost the path %q", path, got, base)
		}
		query, ok := strings.CutPrefix(got[len(base):], "?")
		// Names and values are meant URL-encoded (validate_mutations
		// refuses others); raw separators may split a parameter.
		if !ok || strings.ContainsAny(key+value+remove, "&#=") {
			return
		}
		query, _, _ = strings.Cut(query, "#")
		for _, p := range strings.Split(query, "&") {
			if k, _, _ := strings.Cut(p, "="); k == remove {
				t.Fatalf("editQuery(%q, remove %q) = %q still has it", path, remove, got)
			}
		}
	})
}
