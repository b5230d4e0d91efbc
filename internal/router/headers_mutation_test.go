package router

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// fakeValueContext implements HeaderValueContext for tests.
type fakeValueContext struct {
	remote, direct, local netip.AddrPort
	protocol, upstream    string
	request               *hhttp.Headers
}

func (c *fakeValueContext) DownstreamRemoteAddress() netip.AddrPort       { return c.remote }
func (c *fakeValueContext) DownstreamDirectRemoteAddress() netip.AddrPort { return c.direct }
func (c *fakeValueContext) DownstreamLocalAddress() netip.AddrPort        { return c.local }
func (c *fakeValueContext) Protocol() string                              { return c.protocol }
func (c *fakeValueContext) UpstreamHost() string                          { return c.upstream }
func (c *fakeValueContext) RequestHeaders() *hhttp.Headers                { return c.request }

var _ HeaderValueContext = (*fakeValueContext)(nil)

// values returns every value of name, in order.
func values(h *hhttp.Headers, name string) []string { return h.Values(nil, name) }

// levelsConfig adds x-level at every level with the given append action;
// extra is appended to the route configuration.
func levelsConfig(action, extra string) string {
	hv := func(v string) string {
		return `[{header: {key: x-level, value: ` + v + `}, append_action: ` + action + `}]`
	}
	return `
request_headers_to_add: ` + hv("config") + `
response_headers_to_add: ` + hv("config") + `
` + extra + `
virtual_hosts:
- name: v
  domains: ["*"]
  request_headers_to_add: ` + hv("vhost") + `
  response_headers_to_add: ` + hv("vhost") + `
  routes:
  - match: {prefix: "/"}
    request_headers_to_add: ` + hv("route") + `
    response_headers_to_add: ` + hv("route") + `
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          request_headers_to_add: ` + hv("cluster") + `
          response_headers_to_add: ` + hv("cluster") + `
`
}

func TestHeaderMutationOrder(t *testing.T) {
	tests := []struct {
		name   string
		action string
		extra  string
		want   []string
	}{
		// Envoy: weighted cluster first, then route, virtual host, route
		// configuration; overwrites mean the last one applied wins.
		{name: "append, default order", action: "APPEND_IF_EXISTS_OR_ADD", want: []string{"orig", "cluster", "route", "vhost", "config"}},
		{name: "overwrite, default order: config wins", action: "OVERWRITE_IF_EXISTS_OR_ADD", want: []string{"config"}},
		{name: "append, most specific wins", action: "APPEND_IF_EXISTS_OR_ADD", extra: "most_specific_header_mutations_wins: true", want: []string{"orig", "cluster", "config", "vhost", "route"}},
		{name: "overwrite, most specific wins: route wins", action: "OVERWRITE_IF_EXISTS_OR_ADD", extra: "most_specific_header_mutations_wins: true", want: []string{"route"}},
		// The header exists from the start, so nobody adds.
		{name: "add if absent", action: "ADD_IF_ABSENT", want: []string{"orig"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := mustBuild(t, levelsConfig(tc.action, tc.extra))
			r, _ := tbl.Match(req("h", "/"))
			_, wc := r.PickCluster(req("h", "/"), 0)
			if wc == nil {
				t.Fatal("no weighted cluster picked")
			}
			reqH := req("h", "/", "x-level", "orig")
			r.ApplyRequestHeaders(reqH, wc, nil)
			if diff := cmp.Diff(tc.want, values(reqH, "x-level")); diff != "" {
				t.Errorf("request x-level (-want +got):\n%s", diff)
			}
			resp := &hhttp.Headers{}
			resp.Add(hhttp.Status, "200")
			resp.Add("x-level", "orig")
			r.ApplyResponseHeaders(resp, wc, nil)
			if diff := cmp.Diff(tc.want, values(resp, "x-level")); diff != "" {
				t.Errorf("response x-level (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendActions(t *testing.T) {
	tests := []struct {
		name    string
		option  string
		headers []string // existing request headers
		want    []string
	}{
		{name: "append to existing", option: `{header: {key: x-a, value: new}}`, headers: []string{"x-a", "old"}, want: []string{"old", "new"}},
		{name: "append adds", option: `{header: {key: x-a, value: new}, append_action: APPEND_IF_EXISTS_OR_ADD}`, want: []string{"new"}},
		{name: "add if absent: absent", option: `{header: {key: x-a, value: new}, append_action: ADD_IF_ABSENT}`, want: []string{"new"}},
		{name: "add if absent: present", option: `{header: {key: x-a, value: new}, append_action: ADD_IF_ABSENT}`, headers: []string{"x-a", "old"}, want: []string{"old"}},
		{name: "overwrite or add: present", option: `{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}`, headers: []string{"x-a", "1", "x-a", "2"}, want: []string{"new"}},
		{name: "overwrite or add: absent", option: `{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}`, want: []string{"new"}},
		{name: "overwrite if exists: present", option: `{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS}`, headers: []string{"x-a", "old"}, want: []string{"new"}},
		{name: "overwrite if exists: absent", option: `{header: {key: x-a, value: new}, append_action: OVERWRITE_IF_EXISTS}`, want: nil},
		{name: "legacy append true", option: `{header: {key: x-a, value: new}, append: true}`, headers: []string{"x-a", "old"}, want: []string{"old", "new"}},
		{name: "legacy append false overwrites", option: `{header: {key: x-a, value: new}, append: false}`, headers: []string{"x-a", "old"}, want: []string{"new"}},
		{name: "empty value is skipped", option: `{header: {key: x-a, value: ""}}`, want: nil},
		{name: "keep_empty_value", option: `{header: {key: x-a, value: ""}, keep_empty_value: true}`, want: []string{""}},
		{name: "key is lowercased", option: `{header: {key: X-A, value: new}}`, want: []string{"new"}},
		{name: "raw_value", option: `{header: {key: x-a, raw_value: "cmF3"}}`, want: []string{"raw"}},
		{name: "percent escape", option: `{header: {key: x-a, value: "100%%"}}`, want: []string{"100%"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", `route: {cluster: c}, request_headers_to_add: [`+tc.option+`]`)
			h := req("h", "/", tc.headers...)
			r.ApplyRequestHeaders(h, nil, nil)
			if diff := cmp.Diff(tc.want, values(h, "x-a")); diff != "" {
				t.Errorf("x-a (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRemoveBeforeAdd(t *testing.T) {
	r := routeWith(t, "", `route: {cluster: c},
    request_headers_to_add: [{header: {key: x-a, value: new}}, {header: {key: x-b, value: "%REQ(x-a)%"}}],
    request_headers_to_remove: [x-a, X-Gone]`)
	h := req("h", "/", "x-a", "old", "x-gone", "1")
	r.ApplyRequestHeaders(h, nil, nil)
	if diff := cmp.Diff([]string{"new"}, values(h, "x-a")); diff != "" {
		t.Errorf("x-a (-want +got):\n%s", diff)
	}
	if h.Has("x-gone") {
		t.Error("x-gone not removed")
	}
	// Values are formatted after removal and before any addition.
	if h.Has("x-b") {
		t.Errorf("x-b = %q, want absent: %%REQ(x-a)%% saw the removed header", h.Get("x-b"))
	}
}

func TestCommandOperators(t *testing.T) {
	ctx := &fakeValueContext{
		remote:   netip.MustParseAddrPort("[2001:db8::1]:1234"),
		direct:   netip.MustParseAddrPort("10.0.0.1:5555"),
		local:    netip.MustParseAddrPort("127.0.0.1:8080"),
		protocol: "HTTP/1.1",
		upstream: "10.1.1.1:80",
		request:  req("h", "/", "x-req", "from-request"),
	}
	tests := []struct {
		name     string
		value    string
		response bool
		ctx      HeaderValueContext
		want     string
	}{
		{name: "remote address", value: "%DOWNSTREAM_REMOTE_ADDRESS%", want: "[2001:db8::1]:1234"},
		{name: "remote address without port", value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", want: "2001:db8::1"},
		{name: "remote port", value: "%DOWNSTREAM_REMOTE_PORT%", want: "1234"},
		{name: "direct remote address", value: "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", want: "10.0.0.1:5555"},
		{name: "direct remote without port", value: "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%", want: "10.0.0.1"},
		{name: "local address", value: "%DOWNSTREAM_LOCAL_ADDRESS%", want: "127.0.0.1:8080"},
		{name: "local port", value: "%DOWNSTREAM_LOCAL_PORT%", want: "8080"},
		{name: "protocol", value: "%PROTOCOL%", want: "HTTP/1.1"},
		{name: "upstream host", value: "%UPSTREAM_HOST%", want: "10.1.1.1:80"},
		{name: "mixed with literals", value: "for=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;proto=%PROTOCOL% 100%%", want: "for=2001:db8::1;proto=HTTP/1.1 100%"},
		{name: "max length", value: "%PROTOCOL:4%", want: "HTTP"},
		{name: "request header", value: "%REQ(X-Req)%", want: "from-request"},
		{name: "request header alternative", value: "%REQ(x-none?x-req)%", want: "from-request"},
		{name: "request header in a response", value: "%REQ(x-req)%", response: true, want: "from-request"},
		{name: "response header", value: "%RESP(x-resp)%", response: true, want: "resp-value"},
		{name: "nil context drops the header", value: "%PROTOCOL%", ctx: nilContext{}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseHeaderValue(tc.value)
			if err != nil {
				t.Fatalf("parseHeaderValue(%q): %v", tc.value, err)
			}
			var c HeaderValueContext = ctx
			if _, ok := tc.ctx.(nilContext); ok {
				c = nil
			}
			h := ctx.request
			if tc.response {
				h = &hhttp.Headers{}
				h.Add(hhttp.Status, "200")
				h.Add("x-resp", "resp-value")
			}
			if got := v.format(c, h, tc.response); got != tc.want {
				t.Errorf("format(%q) = %q, want %q", tc.value, got, tc.want)
			}
		})
	}
}

// nilContext marks a test case that passes a nil HeaderValueContext.
type nilContext struct{ HeaderValueContext }

func TestFinalizeRequestHeaders(t *testing.T) {
	r := routeWith(t, `{prefix: "/api"}`, `route: {prefix_rewrite: "/v1", host_rewrite_header: x-target,
    weighted_clusters: {clusters: [{name: a, weight: 1, host_rewrite_literal: wc.com,
      request_headers_to_add: [{header: {key: x-target, value: from-cluster}}]}]}},
    request_headers_to_add: [{header: {key: x-route, value: "1"}}]`)
	h := req("orig.com", "/api/x?q=1")
	_, wc := r.PickCluster(h, 0)
	r.FinalizeRequestHeaders(h, wc, nil, true)
	want := []hhttp.HeaderField{
		{Name: hhttp.Method, Value: "GET"},
		{Name: hhttp.Scheme, Value: "http"},
		// host_rewrite_header reads the header the weighted cluster added.
		{Name: hhttp.Authority, Value: "from-cluster"},
		{Name: hhttp.Path, Value: "/v1/x?q=1"},
		{Name: "x-target", Value: "from-cluster"},
		{Name: "x-route", Value: "1"},
		{Name: "x-envoy-original-path", Value: "/api/x?q=1"},
	}
	if diff := cmp.Diff(want, h.Fields); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestTableApplyResponseHeaders(t *testing.T) {
	tbl := mustBuild(t, `
response_headers_to_add: [{header: {key: x-served-by, value: herald}}]
response_headers_to_remove: [server]`)
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, "404")
	h.Add("server", "upstream")
	tbl.ApplyResponseHeaders(h, nil)
	want := []hhttp.HeaderField{{Name: hhttp.Status, Value: "404"}, {Name: "x-served-by", Value: "herald"}}
	if diff := cmp.Diff(want, h.Fields); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// TestApplyHeadersAllocatesNothing: literal mutations on a header list with
// spare capacity allocate nothing.
func TestApplyHeadersAllocatesNothing(t *testing.T) {
	tbl := mustBuild(t, levelsConfig("OVERWRITE_IF_EXISTS_OR_ADD", `request_headers_to_remove: [x-remove]`))
	r, _ := tbl.Match(req("h", "/"))
	_, wc := r.PickCluster(req("h", "/"), 0)
	orig := req("h", "/", "x-remove", "1", "x-level", "a")
	h := &hhttp.Headers{Fields: make([]hhttp.HeaderField, 0, 32)}
	n := testing.AllocsPerRun(100, func() {
		h.CopyFrom(orig)
		r.ApplyRequestHeaders(h, wc, nil)
	})
	if n != 0 {
		t.Errorf("ApplyRequestHeaders allocates %v times per call, want 0", n)
	}
}
