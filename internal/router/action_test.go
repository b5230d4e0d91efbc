package router

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// routeWith builds a one-route table (match prefix "/" unless match is set)
// and returns the route.
func routeWith(t *testing.T, match, action string) *Route {
	t.Helper()
	if match == "" {
		match = `{prefix: "/"}`
	}
	tbl := mustBuild(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes: [{name: r, match: `+match+`, `+action+`}]`)
	return tbl.VirtualHosts()[0].Routes()[0]
}

func TestPickCluster(t *testing.T) {
	weighted := `route: {weighted_clusters: {clusters: [{name: a, weight: 80}, {name: b, weight: 20}]}}`
	tests := []struct {
		name    string
		action  string
		random  uint64
		headers []string
		want    string
		wantWC  string // name of the picked weighted cluster, "" for none
	}{
		{name: "cluster", action: `route: {cluster: c}`, want: "c"},
		{name: "cluster_header", action: `route: {cluster_header: X-Cluster}`, headers: []string{"x-cluster", "from-header"}, want: "from-header"},
		{name: "cluster_header first value", action: `route: {cluster_header: x-cluster}`, headers: []string{"x-cluster", "one", "x-cluster", "two"}, want: "one"},
		{name: "cluster_header missing", action: `route: {cluster_header: x-cluster}`, want: ""},
		{name: "weighted first interval", action: weighted, random: 79, want: "a", wantWC: "a"},
		{name: "weighted second interval", action: weighted, random: 80, want: "b", wantWC: "b"},
		{name: "weighted wraps", action: weighted, random: 199, want: "b", wantWC: "b"},
		{
			name:    "weighted header_name overrides random",
			action:  `route: {weighted_clusters: {header_name: x-rnd, clusters: [{name: a, weight: 1}, {name: b, weight: 1}]}}`,
			random:  0,
			headers: []string{"x-rnd", "1"},
			want:    "b", wantWC: "b",
		},
		{
			name:    "weighted header_name must be a number",
			action:  `route: {weighted_clusters: {header_name: x-rnd, clusters: [{name: a, weight: 1}, {name: b, weight: 1}]}}`,
			random:  0,
			headers: []string{"x-rnd", "abc"},
			want:    "a", wantWC: "a",
		},
		{
			name:    "weighted header_name must be single-valued",
			action:  `route: {weighted_clusters: {header_name: x-rnd, clusters: [{name: a, weight: 1}, {name: b, weight: 1}]}}`,
			random:  0,
			headers: []string{"x-rnd", "1", "x-rnd", "1"},
			want:    "a", wantWC: "a",
		},
		{
			name:    "weighted cluster_header",
			action:  `route: {weighted_clusters: {clusters: [{cluster_header: x-c, weight: 1}]}}`,
			headers: []string{"x-c", "dyn"},
			want:    "dyn", wantWC: "",
		},
		{
			name:   "weighted cluster_header missing",
			action: `route: {weighted_clusters: {clusters: [{cluster_header: x-c, weight: 1}]}}`,
			want:   "", wantWC: "",
		},
		{name: "direct response has no cluster", action: `direct_response: {status: 200}`, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", tc.action)
			got, wc := r.PickCluster(req("h", "/", tc.headers...), tc.random)
			if got != tc.want {
				t.Errorf("PickCluster = %q, want %q", got, tc.want)
			}
			if r.ClusterName(req("h", "/", tc.headers...), tc.random) != got {
				t.Error("ClusterName disagrees with PickCluster")
			}
			gotWC := ""
			if wc != nil {
				gotWC = wc.Name()
			}
			if gotWC != tc.wantWC {
				t.Errorf("weighted cluster = %q, want %q", gotWC, tc.wantWC)
			}
		})
	}
}

func TestWeightedDistribution(t *testing.T) {
	r := routeWith(t, "", `route: {weighted_clusters: {clusters: [{name: a, weight: 3}, {name: b, weight: 1}]}}`)
	counts := map[string]int{}
	for i := uint64(0); i < 400; i++ {
		counts[r.ClusterName(req("h", "/"), i)]++
	}
	if diff := cmp.Diff(map[string]int{"a": 300, "b": 100}, counts); diff != "" {
		t.Errorf("picks over one full cycle (-want +got):\n%s", diff)
	}
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name        string
		action      string
		wantTimeout time.Duration
		wantIdle    time.Duration
		wantIdleSet bool
		wantMSD     time.Duration
		wantMSDSet  bool
	}{
		{name: "defaults", action: `route: {cluster: c}`, wantTimeout: 15 * time.Second},
		{name: "zero disables", action: `route: {cluster: c, timeout: 0s}`, wantTimeout: 0},
		{name: "set", action: `route: {cluster: c, timeout: 2.5s, idle_timeout: 7s}`, wantTimeout: 2500 * time.Millisecond, wantIdle: 7 * time.Second, wantIdleSet: true},
		{name: "idle zero is set", action: `route: {cluster: c, idle_timeout: 0s}`, wantTimeout: 15 * time.Second, wantIdleSet: true},
		{name: "max stream duration", action: `route: {cluster: c, max_stream_duration: {max_stream_duration: 30s}}`, wantTimeout: 15 * time.Second, wantMSD: 30 * time.Second, wantMSDSet: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", tc.action)
			if got := r.Timeout(); got != tc.wantTimeout {
				t.Errorf("Timeout() = %v, want %v", got, tc.wantTimeout)
			}
			if got, ok := r.IdleTimeout(); got != tc.wantIdle || ok != tc.wantIdleSet {
				t.Errorf("IdleTimeout() = %v, %v; want %v, %v", got, ok, tc.wantIdle, tc.wantIdleSet)
			}
			if got, ok := r.MaxStreamDuration(); got != tc.wantMSD || ok != tc.wantMSDSet {
				t.Errorf("MaxStreamDuration() = %v, %v; want %v, %v", got, ok, tc.wantMSD, tc.wantMSDSet)
			}
		})
	}
}

func TestRouteActionAccessors(t *testing.T) {
	r := routeWith(t, "", `route: {cluster: c, auto_host_rewrite: true, cluster_not_found_response_code: NOT_FOUND,
    hash_policy: [{header: {header_name: x-user}}]}`)
	if r.Kind() != ActionCluster || !r.AutoHostRewrite() || r.ClusterNotFoundCode() != 404 || r.HashPolicy() == nil {
		t.Errorf("kind %v, auto host %v, not found %d, hash policy %v", r.Kind(), r.AutoHostRewrite(), r.ClusterNotFoundCode(), r.HashPolicy())
	}
	if got := routeWith(t, "", `route: {cluster: c}`).ClusterNotFoundCode(); got != 503 {
		t.Errorf("default ClusterNotFoundCode() = %d, want 503", got)
	}
}

func TestRewritePath(t *testing.T) {
	tests := []struct {
		name         string
		match        string
		action       string
		path         string
		want         string
		wantOriginal string
	}{
		{name: "prefix rewrite", match: `{prefix: "/api/"}`, action: `route: {cluster: c, prefix_rewrite: "/"}`, path: "/api/users?x=1", want: "/users?x=1", wantOriginal: "/api/users?x=1"},
		{name: "prefix rewrite to longer", match: `{prefix: "/a"}`, action: `route: {cluster: c, prefix_rewrite: "/b/c"}`, path: "/a/x", want: "/b/c/x", wantOriginal: "/a/x"},
		// The matched length is replaced, whatever the request's case.
		{name: "prefix rewrite case-insensitive", match: `{prefix: "/api", case_sensitive: false}`, action: `route: {cluster: c, prefix_rewrite: "/v2"}`, path: "/API/x", want: "/v2/x", wantOriginal: "/API/x"},
		{name: "path route prefix rewrite", match: `{path: "/old"}`, action: `route: {cluster: c, prefix_rewrite: "/new"}`, path: "/old?q", want: "/new?q", wantOriginal: "/old?q"},
		{name: "regex route prefix rewrite replaces the path", match: `{safe_regex: {regex: "/v[0-9]/.*"}}`, action: `route: {cluster: c, prefix_rewrite: "/x"}`, path: "/v1/a/b?q=1", want: "/x?q=1", wantOriginal: "/v1/a/b?q=1"},
		{name: "regex rewrite", match: `{prefix: "/"}`, action: `route: {cluster: c, regex_rewrite: {pattern: {regex: "^/service/([^/]+)(/.*)$"}, substitution: "\\2/instance/\\1"}}`, path: "/service/foo/v1/api?a=b", want: "/v1/api/instance/foo?a=b", wantOriginal: "/service/foo/v1/api?a=b"},
		{name: "regex rewrite replaces every match", match: `{prefix: "/"}`, action: `route: {cluster: c, regex_rewrite: {pattern: {regex: "a"}, substitution: "b"}}`, path: "/aaa", want: "/bbb", wantOriginal: "/aaa"},
		{name: "regex rewrite dollar is literal", match: `{prefix: "/"}`, action: `route: {cluster: c, regex_rewrite: {pattern: {regex: "x"}, substitution: "$1"}}`, path: "/x", want: "/$1", wantOriginal: "/x"},
		{name: "no rewrite", match: `{prefix: "/"}`, action: `route: {cluster: c}`, path: "/a", want: "/a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, tc.match, tc.action)
			h := req("h", tc.path)
			changed := r.RewritePath(h, true)
			if got := h.Path(); got != tc.want {
				t.Errorf(":path = %q, want %q", got, tc.want)
			}
			if got := h.Get("x-envoy-original-path"); got != tc.wantOriginal {
				t.Errorf("x-envoy-original-path = %q, want %q", got, tc.wantOriginal)
			}
			if changed != (tc.wantOriginal != "") {
				t.Errorf("RewritePath returned %v", changed)
			}
		})
	}
}

func TestRewriteHost(t *testing.T) {
	tests := []struct {
		name     string
		action   string
		headers  []string
		random   uint64
		want     string
		wantXFH  string
		wantDone bool
	}{
		{name: "literal", action: `route: {cluster: c, host_rewrite_literal: new.com}`, want: "new.com", wantDone: true},
		{name: "literal with xfh", action: `route: {cluster: c, host_rewrite_literal: new.com, append_x_forwarded_host: true}`, want: "new.com", wantXFH: "orig.com", wantDone: true},
		{name: "xfh appended", action: `route: {cluster: c, host_rewrite_literal: new.com, append_x_forwarded_host: true}`, headers: []string{"x-forwarded-host", "first.com"}, want: "new.com", wantXFH: "first.com,orig.com", wantDone: true},
		{name: "xfh idempotent", action: `route: {cluster: c, host_rewrite_literal: new.com, append_x_forwarded_host: true}`, headers: []string{"x-forwarded-host", "a.com,orig.com"}, want: "new.com", wantXFH: "a.com,orig.com", wantDone: true},
		{name: "from header", action: `route: {cluster: c, host_rewrite_header: x-host}`, headers: []string{"x-host", "h.com"}, want: "h.com", wantDone: true},
		{name: "from missing header", action: `route: {cluster: c, host_rewrite_header: x-host}`, want: "orig.com"},
		{name: "from empty header", action: `route: {cluster: c, host_rewrite_header: x-host}`, headers: []string{"x-host", ""}, want: "orig.com"},
		{name: "path regex", action: `route: {cluster: c, host_rewrite_path_regex: {pattern: {regex: "^/(.+)/.+$"}, substitution: "\\1"}}`, want: "svc", wantDone: true},
		{name: "weighted literal", action: `route: {weighted_clusters: {clusters: [{name: a, weight: 1, host_rewrite_literal: wc.com}]}}`, want: "wc.com", wantDone: true},
		{name: "route rewrite wins over weighted", action: `route: {host_rewrite_literal: route.com, weighted_clusters: {clusters: [{name: a, weight: 1, host_rewrite_literal: wc.com}]}}`, want: "route.com", wantDone: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", tc.action)
			h := req("orig.com", "/svc/x?q=1", tc.headers...)
			_, wc := r.PickCluster(h, tc.random)
			done := r.RewriteHost(h, wc)
			if got := h.Authority(); got != tc.want {
				t.Errorf(":authority = %q, want %q", got, tc.want)
			}
			if got := h.Get("x-forwarded-host"); got != tc.wantXFH {
				t.Errorf("x-forwarded-host = %q, want %q", got, tc.wantXFH)
			}
			if done != tc.wantDone {
				t.Errorf("RewriteHost returned %v, want %v", done, tc.wantDone)
			}
		})
	}
}

func TestDirectResponse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(file, []byte("from file"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_ROUTER_TEST_BODY", "from env")
	tests := []struct {
		name     string
		action   string
		wantCode int
		wantBody string
	}{
		{name: "no body", action: `direct_response: {status: 204}`, wantCode: 204},
		{name: "inline_string", action: `direct_response: {status: 403, body: {inline_string: "Forbidden"}}`, wantCode: 403, wantBody: "Forbidden"},
		{name: "inline_bytes", action: `direct_response: {status: 200, body: {inline_bytes: "aGk="}}`, wantCode: 200, wantBody: "hi"},
		{name: "filename", action: `direct_response: {status: 200, body: {filename: "` + file + `"}}`, wantCode: 200, wantBody: "from file"},
		{name: "environment_variable", action: `direct_response: {status: 503, body: {environment_variable: HERALD_ROUTER_TEST_BODY}}`, wantCode: 503, wantBody: "from env"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", tc.action)
			if r.Kind() != ActionDirectResponse || r.Status() != tc.wantCode || r.DirectResponseBody() != tc.wantBody {
				t.Errorf("kind %v status %d body %q; want direct response %d %q", r.Kind(), r.Status(), r.DirectResponseBody(), tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestRedirectLocation(t *testing.T) {
	tests := []struct {
		name      string
		match     string
		redirect  string
		authority string
		path      string
		xfp       string // x-forwarded-proto; "http" when empty
		scheme    string // :scheme; "http" when empty
		want      string
		wantCode  int
	}{
		{name: "https_redirect", redirect: `{https_redirect: true}`, authority: "foo.com", path: "/x?a=1", want: "https://foo.com/x?a=1"},
		{name: "https drops the http default port", redirect: `{https_redirect: true}`, authority: "foo.com:80", path: "/x", want: "https://foo.com/x"},
		{name: "https keeps other ports", redirect: `{https_redirect: true}`, authority: "foo.com:8080", path: "/x", want: "https://foo.com:8080/x"},
		// The port is judged against x-forwarded-proto, not :scheme.
		{name: "port kept when xfp is https", redirect: `{https_redirect: true}`, authority: "foo.com:80", path: "/x", xfp: "https", want: "https://foo.com:80/x"},
		{name: "scheme_redirect drops the https default port", redirect: `{scheme_redirect: http}`, authority: "foo.com:443", path: "/x", xfp: "https", scheme: "https", want: "http://foo.com/x"},
		{name: "ipv6 default port", redirect: `{https_redirect: true}`, authority: "[::1]:80", path: "/x", want: "https://[::1]/x"},
		{name: "ipv6 without port", redirect: `{https_redirect: true}`, authority: "[::1]", path: "/x", want: "https://[::1]/x"},
		{name: "keeps the request scheme", redirect: `{host_redirect: new.com}`, authority: "foo.com:8080", path: "/x", scheme: "https", want: "https://new.com/x"},
		{name: "port_redirect replaces the port", redirect: `{port_redirect: 8443}`, authority: "foo.com:80", path: "/x", want: "http://foo.com:8443/x"},
		{name: "port_redirect adds a port", redirect: `{port_redirect: 8443, https_redirect: true}`, authority: "foo.com", path: "/x", want: "https://foo.com:8443/x"},
		{name: "host and port", redirect: `{host_redirect: new.com, port_redirect: 9000}`, authority: "foo.com", path: "/x", want: "http://new.com:9000/x"},
		{name: "path_redirect keeps the query", redirect: `{path_redirect: "/new"}`, authority: "foo.com", path: "/x?a=1", want: "http://foo.com/new?a=1"},
		{name: "path_redirect with its own query", redirect: `{path_redirect: "/new?b=2"}`, authority: "foo.com", path: "/x?a=1", want: "http://foo.com/new?b=2"},
		{name: "path_redirect gets a slash", redirect: `{path_redirect: "new"}`, authority: "foo.com", path: "/x", want: "http://foo.com/new"},
		{name: "path_redirect strip_query", redirect: `{path_redirect: "/new", strip_query: true}`, authority: "foo.com", path: "/x?a=1", want: "http://foo.com/new"},
		{name: "strip_query keeps path_redirect's query", redirect: `{path_redirect: "/new?b=2", strip_query: true}`, authority: "foo.com", path: "/x?a=1", want: "http://foo.com/new?b=2"},
		{name: "strip_query", redirect: `{strip_query: true}`, authority: "foo.com", path: "/x?a=1", want: "http://foo.com/x"},
		{name: "prefix_rewrite", match: `{prefix: "/old"}`, redirect: `{prefix_rewrite: "/new"}`, authority: "foo.com", path: "/old/x?a=1", want: "http://foo.com/new/x?a=1"},
		{name: "prefix_rewrite strip_query", match: `{prefix: "/old"}`, redirect: `{prefix_rewrite: "/new", strip_query: true}`, authority: "foo.com", path: "/old/x?a=1", want: "http://foo.com/new/x"},
		{name: "regex_rewrite", redirect: `{regex_rewrite: {pattern: {regex: "^/a/(.*)$"}, substitution: "/b/\\1"}}`, authority: "foo.com", path: "/a/c?q", want: "http://foo.com/b/c?q"},
		{name: "FOUND", redirect: `{https_redirect: true, response_code: FOUND}`, authority: "foo.com", path: "/", want: "https://foo.com/", wantCode: 302},
		{name: "SEE_OTHER", redirect: `{https_redirect: true, response_code: SEE_OTHER}`, authority: "foo.com", path: "/", want: "https://foo.com/", wantCode: 303},
		{name: "TEMPORARY_REDIRECT", redirect: `{https_redirect: true, response_code: TEMPORARY_REDIRECT}`, authority: "foo.com", path: "/", want: "https://foo.com/", wantCode: 307},
		{name: "PERMANENT_REDIRECT", redirect: `{https_redirect: true, response_code: PERMANENT_REDIRECT}`, authority: "foo.com", path: "/", want: "https://foo.com/", wantCode: 308},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, tc.match, "redirect: "+tc.redirect)
			xfp, scheme := tc.xfp, tc.scheme
			if xfp == "" {
				xfp = "http"
			}
			h := &hhttp.Headers{}
			if scheme != "" {
				h.Add(hhttp.Scheme, scheme)
			} else {
				h.Add(hhttp.Scheme, "http")
			}
			h.Add(hhttp.Authority, tc.authority)
			h.Add(hhttp.Path, tc.path)
			h.Add("x-forwarded-proto", xfp)
			if got := r.RedirectLocation(h); got != tc.want {
				t.Errorf("RedirectLocation = %q, want %q", got, tc.want)
			}
			wantCode := tc.wantCode
			if wantCode == 0 {
				wantCode = 301 // MOVED_PERMANENTLY is the default
			}
			if r.Kind() != ActionRedirect || r.Status() != wantCode {
				t.Errorf("kind %v status %d, want redirect %d", r.Kind(), r.Status(), wantCode)
			}
			if r.RewritePath(h, true) {
				t.Error("RewritePath changed a redirect route's request")
			}
		})
	}
}

func TestDirectResponseLocation(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   string
	}{
		{name: "3xx gets the request URL", status: 301, want: "http://foo.com/x?a=1"},
		{name: "201 gets the request URL", status: 201, want: "http://foo.com/x?a=1"},
		{name: "200 gets none", status: 200, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := routeWith(t, "", "direct_response: {status: "+itoa(tc.status)+"}")
			h := req("foo.com", "/x?a=1", "x-forwarded-proto", "http")
			if got := r.RedirectLocation(h); got != tc.want {
				t.Errorf("RedirectLocation = %q, want %q", got, tc.want)
			}
		})
	}
	if got := routeWith(t, "", `route: {cluster: c}`).RedirectLocation(req("foo.com", "/")); got != "" {
		t.Errorf("cluster route RedirectLocation = %q, want \"\"", got)
	}
}

func itoa(n int) string { return hhttp.StatusText3(n) }
