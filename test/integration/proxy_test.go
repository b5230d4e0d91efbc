package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

func hcmListener(name, routes, extra string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
%s          route_config:
            virtual_hosts:
%s
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, name, extra, routes)
}

func TestProxyBasicRoundTrip(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-xff", r.Header.Get("x-forwarded-for"))
		w.Header().Set("x-seen-proto", r.Header.Get("x-forwarded-proto"))
		w.Header().Set("x-seen-request-id", r.Header.Get("x-request-id"))
		w.Header().Set("x-seen-host", r.Host)
		w.Header().Set("x-seen-timeout", r.Header.Get("x-envoy-expected-rq-timeout-ms"))
		io.WriteString(w, "Hello from backend!")
	}))
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend_service }`, "          use_remote_address: true\n") +
		"  clusters:\n" + staticCluster("backend_service", backend)
	h := testutil.Start(t, cfg)
	addr := h.ListenerAddr("listener_0")
	c := newClient()
	code, hdr, body := get(t, c, "http://"+addr+"/hello", "example.com")
	if code != 200 || body != "Hello from backend!" {
		t.Fatalf("got %d %q, want 200 Hello from backend!", code, body)
	}
	checks := map[string]string{
		"x-seen-xff":     "127.0.0.1",
		"x-seen-proto":   "http",
		"x-seen-host":    "example.com",
		"x-seen-timeout": "15000",
		"server":         "envoy",
	}
	for k, want := range checks {
		if got := hdr.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if id := hdr.Get("x-seen-request-id"); len(id) != 36 {
		t.Errorf("x-request-id %q is not a UUID", id)
	}
	if hdr.Get("x-envoy-upstream-service-time") == "" {
		t.Error("x-envoy-upstream-service-time missing")
	}
	if hdr.Get("date") == "" {
		t.Error("date missing")
	}
	// Keep-alive: several requests, stats counted.
	for i := 0; i < 5; i++ {
		if code, _, _ := get(t, c, "http://"+addr+"/", ""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat("http.ingress_http.downstream_rq_2xx"); v != 6 {
			return fmt.Errorf("downstream_rq_2xx = %d, want 6", v)
		}
		if v := h.Stat("cluster.backend_service.upstream_rq_total"); v != 6 {
			return fmt.Errorf("upstream_rq_total = %d, want 6", v)
		}
		if v := h.Stat("cluster.backend_service.upstream_rq_2xx"); v != 6 {
			return fmt.Errorf("upstream_rq_2xx = %d, want 6", v)
		}
		return nil
	})
	// Upstream keep-alive: far fewer upstream connections than requests.
	if v := h.Stat("cluster.backend_service.upstream_cx_total"); v < 1 || v > 2 {
		t.Errorf("upstream_cx_total = %d, want 1..2 (connection reuse)", v)
	}
	_, prom := h.Admin("GET", "/stats/prometheus")
	if !strings.Contains(prom, `envoy_cluster_upstream_rq_total{envoy_cluster_name="backend_service"} 6`) {
		t.Errorf("prometheus output lacks the tagged cluster counter:\n%s", prom)
	}
}

func TestPathRoutingSeed(t *testing.T) {
	t.Parallel()
	app := map[string]string{}
	for _, n := range []string{"app1", "app2", "app3", "app4"} {
		app[n] = testutil.NamedBackend(t, n)
	}
	routes := `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/admin" }
                direct_response:
                  status: 403
                  body: { inline_string: "Forbidden" }
              - match: { prefix: "/app1" }
                route: { cluster: app1_cluster }
              - match: { prefix: "/app2" }
                route: { cluster: app2_cluster }
              - match: { prefix: "/app3" }
                route: { cluster: app3_cluster }
              - match: { prefix: "/app4" }
                route: { cluster: app4_cluster }
              - match: { prefix: "/" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: app1_cluster, weight: 80 }
                    - { name: app2_cluster, weight: 20 }`
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("http_listener", routes, "") +
		"  clusters:\n" + staticCluster("app1_cluster", app["app1"]) + staticCluster("app2_cluster", app["app2"]) +
		staticCluster("app3_cluster", app["app3"]) + staticCluster("app4_cluster", app["app4"])
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("http_listener")
	c := newClient()
	tests := []struct {
		name     string
		path     string
		wantCode int
		wantBody string
	}{
		{name: "admin blocked by direct_response", path: "/admin/users", wantCode: 403, wantBody: "Forbidden"},
		{name: "app1 prefix", path: "/app1/x", wantCode: 200, wantBody: "app1"},
		{name: "app2 prefix", path: "/app2", wantCode: 200, wantBody: "app2"},
		{name: "app3 prefix", path: "/app3/a/b?q=1", wantCode: 200, wantBody: "app3"},
		{name: "app4 prefix", path: "/app4", wantCode: 200, wantBody: "app4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := get(t, c, base+tc.path, "")
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("GET %s = %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	// Weighted 80/20 split on "/": 400 requests, expect app1 in a wide band.
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		_, _, body := get(t, c, base+"/", "")
		counts[body]++
	}
	if counts["app1"]+counts["app2"] != 400 || counts["app1"] < 270 || counts["app1"] > 370 {
		t.Fatalf("weighted split = %v, want about 320/80", counts)
	}
}

func TestLocalReplies(t *testing.T) {
	t.Parallel()
	closed := testutil.ClosedPort(t)
	slow := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	routes := `            - name: vh
              domains: ["served.example"]
              routes:
              - match: { prefix: "/down" }
                route: { cluster: down }
              - match: { prefix: "/slow" }
                route: { cluster: slow, timeout: 0.2s }
              - match: { prefix: "/redirect" }
                redirect: { host_redirect: "other.example", response_code: FOUND }`
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("l", routes, "") +
		"  clusters:\n" + staticCluster("down", closed) + staticCluster("slow", slow)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	tests := []struct {
		name     string
		host     string
		path     string
		wantCode int
		wantBody string
		wantLoc  string
	}{
		{name: "no virtual host is 404", host: "unknown.example", path: "/", wantCode: 404, wantBody: ""},
		{name: "no route is 404", host: "served.example", path: "/nothing", wantCode: 404, wantBody: ""},
		{name: "connect failure is 503", host: "served.example", path: "/down", wantCode: 503,
			wantBody: "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"},
		{name: "route timeout is 504", host: "served.example", path: "/slow", wantCode: 504, wantBody: "upstream request timeout"},
		{name: "redirect", host: "served.example", path: "/redirect/x?y=1", wantCode: 302, wantLoc: "http://other.example/redirect/x?y=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := get(t, c, base+tc.path, tc.host)
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
			if tc.wantLoc != "" && hdr.Get("location") != tc.wantLoc {
				t.Fatalf("location = %q, want %q", hdr.Get("location"), tc.wantLoc)
			}
		})
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat("cluster.slow.upstream_rq_timeout"); v != 1 {
			return fmt.Errorf("upstream_rq_timeout = %d", v)
		}
		if v := h.Stat("cluster.down.upstream_cx_connect_fail"); v < 1 {
			return fmt.Errorf("upstream_cx_connect_fail = %d", v)
		}
		return nil
	})
}
