package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// filtersListener renders a listener whose connection manager runs the
// given http_filters entries (indented 10 spaces, list items) before the
// router; vhosts are virtual_hosts list items indented 12 spaces.
func filtersListener(name, vhosts, filters string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
%s
          http_filters:
%s          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, name, vhosts, filters)
}

// countingBackend answers 200 "backend" and counts the requests it saw;
// it echoes x-added (a request header a filter may add) as x-seen-added.
func countingBackend(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n.Add(1)
		w.Header().Set("x-seen-added", r.Header.Get("x-added"))
		w.Header().Set("x-backend-secret", "1")
		io.WriteString(w, "backend")
	}))
	return addr, &n
}

// do sends one request and returns status, headers, body and how long the
// exchange took.
func do(t *testing.T, c *nethttp.Client, method, url string, hdr map[string]string) (int, nethttp.Header, string, time.Duration) {
	t.Helper()
	req, err := nethttp.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b), time.Since(start)
}

func TestHTTPFilterLocalRateLimit(t *testing.T) {
	t.Parallel()
	backend, _ := countingBackend(t)
	const enabled = `filter_enabled: { default_value: { numerator: 100 } }
                    filter_enforced: { default_value: { numerator: 100 } }`
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/limited" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.local_ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: route_rl
                    token_bucket: { max_tokens: 1, fill_interval: 3600s }
                    ` + enabled + `
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: rl
              token_bucket: { max_tokens: 2, fill_interval: 3600s }
              filter_enabled: { default_value: { numerator: 100 } }
              filter_enforced: { default_value: { numerator: 100 } }
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              response_headers_to_add:
              - header: { key: x-local-rate-limit, value: "true" }
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("rl", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("rl")
	c := newClient()
	steps := []struct {
		path      string
		wantCode  int
		wantBody  string
		remaining string // x-ratelimit-remaining; "" when absent
	}{
		{path: "/", wantCode: 200, wantBody: "backend", remaining: "1"},
		{path: "/", wantCode: 200, wantBody: "backend", remaining: "0"},
		{path: "/", wantCode: 429, wantBody: "local_rate_limited", remaining: "0"},
		// The route's own bucket: one token, untouched by the requests above.
		{path: "/limited", wantCode: 200, wantBody: "backend"},
		{path: "/limited", wantCode: 429, wantBody: "local_rate_limited"},
	}
	for i, s := range steps {
		code, hdr, body, _ := do(t, c, "GET", base+s.path, nil)
		if code != s.wantCode || body != s.wantBody {
			t.Fatalf("step %d GET %s: %d %q, want %d %q", i, s.path, code, body, s.wantCode, s.wantBody)
		}
		if got := hdr.Get("x-ratelimit-remaining"); got != s.remaining {
			t.Errorf("step %d: x-ratelimit-remaining %q, want %q", i, got, s.remaining)
		}
		if code == 429 && s.path == "/" {
			if hdr.Get("x-local-rate-limit") != "true" || hdr.Get("x-ratelimit-limit") != "2" {
				t.Errorf("429 headers: %v", hdr)
			}
		}
	}
	waitStat(t, h, "rl.http_local_rate_limit.rate_limited", 1)
	waitStat(t, h, "rl.http_local_rate_limit.ok", 2)
	waitStat(t, h, "rl.http_local_rate_limit.enforced", 1)
	waitStat(t, h, "route_rl.http_local_rate_limit.rate_limited", 1)
	waitStat(t, h, "route_rl.http_local_rate_limit.ok", 1)
}

func TestHTTPFilterCORS(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                  allow_origin_string_match: [{ exact: "https://app.example" }]
                  allow_methods: GET, PUT
                  allow_headers: content-type
                  expose_headers: x-request-id
                  max_age: "600"
                  allow_credentials: true
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("cors", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("cors")
	c := newClient()

	code, hdr, _, _ := do(t, c, "OPTIONS", base+"/x", map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
	})
	if code != 200 {
		t.Fatalf("preflight: %d, want 200", code)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Methods": "GET, PUT",
		"Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600",
		"Access-Control-Allow-Credentials": "true",
	} {
		if got := hdr.Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the preflight reached the backend (%d requests)", n)
	}

	code, hdr, body, _ := do(t, c, "GET", base+"/x", map[string]string{"Origin": "https://app.example"})
	if code != 200 || body != "backend" {
		t.Fatalf("actual request: %d %q", code, body)
	}
	if hdr.Get("Access-Control-Allow-Origin") != "https://app.example" || hdr.Get("Access-Control-Expose-Headers") != "x-request-id" {
		t.Errorf("actual request CORS headers: %v", hdr)
	}
	_, hdr, _, _ = do(t, c, "GET", base+"/x", map[string]string{"Origin": "https://evil.example"})
	if v := hdr.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("disallowed origin got Access-Control-Allow-Origin %q", v)
	}
	waitStat(t, h, "http.ingress_http.cors.origin_valid", 2)
	waitStat(t, h, "http.ingress_http.cors.origin_invalid", 1)
}

func TestHTTPFilterFault(t *testing.T) {
	t.Parallel()
	backend, _ := countingBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/abort" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    abort: { http_status: 503, percentage: { numerator: 100 } }
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              delay: { header_delay: {}, percentage: { numerator: 100 } }
              abort: { header_abort: {}, percentage: { numerator: 100 } }
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("fault", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("fault")
	c := newClient()

	code, _, body, _ := do(t, c, "GET", base+"/abort", nil)
	if code != 503 || body != "fault filter abort" {
		t.Fatalf("GET /abort: %d %q, want 503 \"fault filter abort\"", code, body)
	}
	code, _, body, _ = do(t, c, "GET", base+"/", map[string]string{"x-envoy-fault-abort-request": "418"})
	if code != 418 || body != "fault filter abort" {
		t.Fatalf("header abort: %d %q, want 418", code, body)
	}
	const delay = 300 * time.Millisecond
	code, _, body, took := do(t, c, "GET", base+"/", map[string]string{"x-envoy-fault-delay-request": "300"})
	if code != 200 || body != "backend" {
		t.Fatalf("delayed request: %d %q, want 200 backend", code, body)
	}
	if took < delay {
		t.Errorf("delayed request took %v, want at least %v", took, delay)
	}
	waitStat(t, h, "http.ingress_http.fault.aborts_injected", 2)
	waitStat(t, h, "http.ingress_http.fault.delays_injected", 1)
	waitStat(t, h, "http.ingress_http.fault.active_faults", 0)
}

func TestHTTPFilterHeaderMutation(t *testing.T) {
	t.Parallel()
	backend, _ := countingBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/v2" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.header_mutation:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute
                    mutations:
                      request_mutations:
                      - append: { header: { key: x-added, value: route }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := `          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append: { header: { key: x-added, value: filter } }
                response_mutations:
                - remove: x-backend-secret
                - append: { header: { key: x-mutated, value: "yes" } }
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("hm", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("hm")
	c := newClient()
	tests := []struct {
		path      string
		wantAdded string
	}{
		{path: "/", wantAdded: "filter"},
		// The route's overwrite runs after the filter's append.
		{path: "/v2", wantAdded: "route"},
	}
	for _, tc := range tests {
		code, hdr, _, _ := do(t, c, "GET", base+tc.path, nil)
		if code != 200 {
			t.Fatalf("GET %s: %d", tc.path, code)
		}
		if got := hdr.Get("x-seen-added"); got != tc.wantAdded {
			t.Errorf("GET %s: backend saw x-added %q, want %q", tc.path, got, tc.wantAdded)
		}
		if hdr.Get("x-mutated") != "yes" || hdr.Get("x-backend-secret") != "" {
			t.Errorf("GET %s: response headers not mutated: %v", tc.path, hdr)
		}
	}
}

func TestHTTPFilterHealthCheck(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	filters := `          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{ name: ":path", string_match: { exact: /healthz } }]
`
	cfg := "node: { id: n1, cluster: front }\n" + bootstrap([]string{filtersListener("hc", catchAllVhost("app"), filters)}, staticCluster("app", backend))
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("hc")
	c := newClient()

	code, hdr, _, _ := do(t, c, "GET", base+"/healthz", nil)
	if code != 200 || hdr.Get("x-envoy-upstream-healthchecked-cluster") != "front" {
		t.Fatalf("health check: %d %v, want 200 with x-envoy-upstream-healthchecked-cluster: front", code, hdr)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the health check reached the backend (%d requests)", n)
	}
	if code, body := h.Admin("POST", "/healthcheck/fail"); code != 200 {
		t.Fatalf("POST /healthcheck/fail: %d %s", code, body)
	}
	if code, _, _, _ := do(t, c, "GET", base+"/healthz", nil); code != 503 {
		t.Errorf("health check while failing: %d, want 503", code)
	}
	code, hdr, body, _ := do(t, c, "GET", base+"/app", nil)
	if code != 200 || body != "backend" || hdr.Get("x-envoy-immediate-health-check-fail") != "true" {
		t.Errorf("other request while failing: %d %q %v, want 200 with x-envoy-immediate-health-check-fail", code, body, hdr)
	}
	if code, body := h.Admin("POST", "/healthcheck/ok"); code != 200 {
		t.Fatalf("POST /healthcheck/ok: %d %s", code, body)
	}
	if code, _, _, _ := do(t, c, "GET", base+"/healthz", nil); code != 200 {
		t.Errorf("health check after /healthcheck/ok: %d, want 200", code)
	}
}

// TestHTTPFilterDisabled: http_filters[].disabled keeps a filter off except
// where typed_per_filter_config enables it (a FilterConfig with an empty
// config), and FilterConfig.disabled turns an enabled filter off for one
// route (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route.proto#config-route-v3-filterconfig).
func TestHTTPFilterDisabled(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/enabled" }
                route: { cluster: app }
                typed_per_filter_config:
                  abort_all:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    config: {}
                  teapot:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - match: { prefix: "/" }
                route: { cluster: app }`
	// abort_all is disabled by default; teapot is on by default.
	filters := `          - name: abort_all
            disabled: true
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: { http_status: 503, percentage: { numerator: 100 } }
          - name: teapot
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: { http_status: 418, percentage: { numerator: 100 } }
`
	h := testutil.Start(t, bootstrap([]string{filtersListener("disabled", vhosts, filters)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("disabled")
	c := newClient()
	tests := []struct {
		path     string
		wantCode int
	}{
		// Only teapot runs.
		{path: "/other", wantCode: 418},
		// abort_all is enabled, teapot disabled: abort_all answers.
		{path: "/enabled", wantCode: 503},
	}
	for _, tc := range tests {
		if code, _, body, _ := do(t, c, "GET", base+tc.path, nil); code != tc.wantCode {
			t.Errorf("GET %s = %d %q, want %d", tc.path, code, body, tc.wantCode)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("backend saw %d requests, want 0 (every route has one aborting filter)", n)
	}
}
