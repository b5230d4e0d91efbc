package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestHTTPFilterHeaderToMetadata: envoy.filters.http.header_to_metadata on
// the real binary. Request headers become dynamic metadata that the access
// log prints (%DYNAMIC_METADATA%) and that envoy.filters.http.rbac's
// metadata matcher reads; a response header becomes metadata too; /v2
// replaces the rules with a per-route Config.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/header_to_metadata_filter
func TestHTTPFilterHeaderToMetadata(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/v2" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.header_to_metadata:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
                    request_rules:
                    - header: x-tenant-v2
                      on_header_present: { metadata_namespace: tenants, key: tenant }
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.header_to_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config
              request_rules:
              - header: x-tenant
                remove: true
                on_header_present: { metadata_namespace: tenants, key: tenant }
                on_header_missing: { metadata_namespace: tenants, key: tenant, value: anonymous }
              - header: x-user-id
                on_header_present: { metadata_namespace: tenants, key: uid, type: NUMBER }
              - cookie: plan
                on_header_present: { metadata_namespace: tenants, key: plan }
              response_rules:
              - header: x-backend-secret
                on_header_present: { metadata_namespace: resp, key: secret }
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  tenants:
                    permissions:
                    - metadata:
                        filter: tenants
                        path: [ { key: tenant } ]
                        value: { or_match: { value_matchers: [ { string_match: { exact: acme } }, { string_match: { exact: anonymous } } ] } }
                    principals: [ { any: true } ]
`
	l := filtersListener("h2m", vhosts, filters)
	l = strings.Replace(l, "          stat_prefix: ingress_http\n", fmt.Sprintf(`          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% tenant=%%DYNAMIC_METADATA(tenants:tenant)%% uid=%%DYNAMIC_METADATA(tenants:uid)%% plan=%%DYNAMIC_METADATA(tenants:plan)%% secret=%%DYNAMIC_METADATA(resp:secret)%%\n"
`, logPath), 1)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("app", backend)), "--file-flush-interval-msec", "50")
	base := "http://" + h.ListenerAddr("h2m")
	c := newClient()
	steps := []struct {
		path     string
		hdr      map[string]string
		wantCode int
		wantLog  string
	}{
		{path: "/a", hdr: map[string]string{"x-tenant": "acme", "x-user-id": " 42 ", "cookie": "a=1; plan=gold"}, wantCode: 200, wantLog: "/a 200 tenant=acme uid=42 plan=gold secret=1"},
		// on_header_missing writes its value.
		{path: "/b", wantCode: 200, wantLog: "/b 200 tenant=anonymous uid=- plan=- secret=1"},
		// RBAC's metadata matcher refuses another tenant; the response rule
		// sees the local reply, which has no x-backend-secret.
		{path: "/c", hdr: map[string]string{"x-tenant": "globex", "x-user-id": "x"}, wantCode: 403, wantLog: "/c 403 tenant=globex uid=- plan=- secret=-"},
		// The route's Config replaces the filter's rules (request and
		// response): x-tenant is not read, there is no tenant and RBAC
		// denies; x-backend-secret is not read either.
		{path: "/v2/x", hdr: map[string]string{"x-tenant": "acme"}, wantCode: 403, wantLog: "/v2/x 403 tenant=- uid=- plan=- secret=-"},
		{path: "/v2/y", hdr: map[string]string{"x-tenant-v2": "acme"}, wantCode: 200, wantLog: "/v2/y 200 tenant=acme uid=- plan=- secret=-"},
	}
	for i, s := range steps {
		code, _, _, _ := do(t, c, "GET", base+s.path, s.hdr)
		if code != s.wantCode {
			t.Errorf("step %d GET %s: %d, want %d", i, s.path, code, s.wantCode)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("backend saw %d requests, want 3", n)
	}
	lines := waitLines(t, logPath, len(steps))
	for _, s := range steps {
		if !slices.Contains(lines, s.wantLog) {
			t.Errorf("access log has no line %q:\n%s", s.wantLog, strings.Join(lines, "\n"))
		}
	}
	waitStat(t, h, "http.ingress_http.rbac.allowed", 3)
	waitStat(t, h, "http.ingress_http.rbac.denied", 2)
}
