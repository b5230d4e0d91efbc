package integration

import (
	"crypto/tls"
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

// TestHTTPFilterRBACAuthenticated: envoy.filters.http.rbac's authenticated
// principals on a TLS listener that asks for (but does not require) a
// client certificate. /mtls needs the client certificate whose DNS SAN is
// client.example.com (Envoy tries URI SANs, then DNS SANs, then the
// subject); /tls needs any TLS connection (authenticated without
// principal_name). A client certificate from the same CA with another name
// is refused on /mtls.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/rbac/v3/rbac.proto#envoy-v3-api-msg-config-rbac-v3-principal-authenticated
func TestHTTPFilterRBACAuthenticated(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	other := f.leaf(t, "other", "other.example.com")
	backend, hits := countingBackend(t)
	extra := fmt.Sprintf(`            validation_context:
              trusted_ca: { filename: %q }
`, f.ca)
	l := tlsHCMListener(f, "rbac_mtls", "app", extra)
	rbacFilter := `          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  mtls-client:
                    permissions: [{ url_path: { path: { prefix: /mtls } } }]
                    principals: [{ authenticated: { principal_name: { exact: client.example.com } } }]
                  any-tls:
                    permissions: [{ url_path: { path: { prefix: /tls } } }]
                    principals: [{ authenticated: {} }]
`
	if !strings.Contains(l, "          http_filters:\n") {
		t.Fatal("listener template changed: no http_filters")
	}
	l = strings.Replace(l, "          http_filters:\n", "          http_filters:\n"+rbacFilter, 1)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("app", backend)))
	addr := h.ListenerAddr("rbac_mtls")
	tests := []struct {
		name     string
		certs    []tls.Certificate
		path     string
		wantCode int
	}{
		{name: "client certificate on /mtls", certs: []tls.Certificate{f.client}, path: "/mtls/a", wantCode: 200},
		{name: "other certificate on /mtls", certs: []tls.Certificate{other}, path: "/mtls/a", wantCode: 403},
		{name: "no certificate on /mtls", path: "/mtls/a", wantCode: 403},
		{name: "no certificate on /tls", path: "/tls/a", wantCode: 200},
		{name: "other certificate on /tls", certs: []tls.Certificate{other}, path: "/tls/a", wantCode: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, h2 := range []bool{false, true} {
				cfg := &tls.Config{RootCAs: f.roots, ServerName: "example.com", Certificates: tc.certs}
				resp, err := httpsClient(cfg, h2).Get("https://" + addr + tc.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantCode {
					t.Errorf("h2=%v: status %d, want %d", h2, resp.StatusCode, tc.wantCode)
				}
			}
		})
	}
	if n := hits.Load(); n != 6 {
		t.Errorf("backend saw %d requests, want 6", n)
	}
	waitStat(t, h, "http.rbac_mtls.rbac.allowed", 6)
	waitStat(t, h, "http.rbac_mtls.rbac.denied", 4)
}
