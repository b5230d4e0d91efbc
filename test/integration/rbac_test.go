package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestHTTPFilterRBAC: envoy.filters.http.rbac on the real binary. An ALLOW
// policy (path prefix /api and an x-user header) guards the listener; /local
// replaces it with a DENY policy on the direct peer 127.0.0.1/32; /open
// disables the filter with an RBACPerRoute without rbac.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rbac_filter
func TestHTTPFilterRBAC(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/open" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute
              - match: { prefix: "/local" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.rbac:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute
                    rbac:
                      rules:
                        action: DENY
                        policies:
                          "deny local":
                            permissions: [{ any: true }]
                            principals: [{ direct_remote_ip: { address_prefix: 127.0.0.1, prefix_len: 32 } }]
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  api-users:
                    permissions:
                    - url_path: { path: { prefix: /api } }
                    principals:
                    - header: { name: x-user, present_match: true }
              shadow_rules:
                action: DENY
                policies:
                  shadow-secret:
                    permissions: [{ url_path: { path: { exact: /api/secret } } }]
                    principals: [{ any: true }]
`
	l := filtersListener("rbac", vhosts, filters)
	l = strings.Replace(l, "          stat_prefix: ingress_http\n", fmt.Sprintf(`          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_CODE_DETAILS%%\n"
`, logPath), 1)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("app", backend)), "--file-flush-interval-msec", "50")
	base := "http://" + h.ListenerAddr("rbac")
	c := newClient()
	user := map[string]string{"x-user": "alice"}
	steps := []struct {
		path        string
		hdr         map[string]string
		wantCode    int
		wantBody    string
		wantDetails string
	}{
		{path: "/api/items", hdr: user, wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		{path: "/api/secret", hdr: user, wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		{path: "/api/items", wantCode: 403, wantBody: "RBAC: access denied", wantDetails: "rbac_access_denied_matched_policy[none]"},
		{path: "/other", hdr: user, wantCode: 403, wantBody: "RBAC: access denied", wantDetails: "rbac_access_denied_matched_policy[none]"},
		{path: "/open/x", wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		{path: "/local/api", hdr: user, wantCode: 403, wantBody: "RBAC: access denied", wantDetails: "rbac_access_denied_matched_policy[deny_local]"},
	}
	for i, s := range steps {
		code, _, body, _ := do(t, c, "GET", base+s.path, s.hdr)
		if code != s.wantCode || body != s.wantBody {
			t.Errorf("step %d GET %s: %d %q, want %d %q", i, s.path, code, body, s.wantCode, s.wantBody)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("backend saw %d requests, want 3", n)
	}
	lines := waitLines(t, logPath, len(steps))
	for _, s := range steps {
		want := fmt.Sprintf("%s %d %s", s.path, s.wantCode, s.wantDetails)
		if !slices.Contains(lines, want) {
			t.Errorf("access log has no line %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	// Allowed: 2 by the filter's rules; denied: 2 by them, 1 by /local's.
	// /open has no engine and counts nothing; the filter's shadow rules
	// ran for the 4 requests without a route config.
	waitStat(t, h, "http.ingress_http.rbac.allowed", 2)
	waitStat(t, h, "http.ingress_http.rbac.denied", 3)
	waitStat(t, h, "http.ingress_http.rbac.shadow_denied", 1)
	waitStat(t, h, "http.ingress_http.rbac.shadow_allowed", 3)
}
