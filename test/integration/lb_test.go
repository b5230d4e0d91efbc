package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// nameBackend answers every request with its name.
func nameBackend(t *testing.T, name string) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, name)
	}))
}

// TestHashingLoadBalancers: with ring_hash and maglev, requests carrying the
// same hash_policy header go to the same host, different keys spread over
// the hosts, and a cookie policy with a ttl generates the cookie
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers#ring-hash).
func TestHashingLoadBalancers(t *testing.T) {
	t.Parallel()
	backends := []string{nameBackend(t, "a"), nameBackend(t, "b"), nameBackend(t, "c")}
	for _, policy := range []string{"RING_HASH", "MAGLEV"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/cookie" }
                route:
                  cluster: hashed
                  hash_policy:
                  - cookie: { name: sticky, ttl: 3600s, path: / }
              - match: { prefix: "/" }
                route:
                  cluster: hashed
                  hash_policy:
                  - header: { header_name: x-user }`, "") +
				"  clusters:\n" + staticCluster("hashed", backends...) + "    lb_policy: " + policy + "\n"
			h := testutil.Start(t, cfg)
			base := "http://" + h.ListenerAddr("listener_0")
			c := newClient()
			send := func(path, user, cookie string) (string, nethttp.Header) {
				t.Helper()
				req, _ := nethttp.NewRequest("GET", base+path, nil)
				if user != "" {
					req.Header.Set("x-user", user)
				}
				if cookie != "" {
					req.Header.Set("cookie", cookie)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
				}
				return string(b), resp.Header
			}

			seen := map[string]bool{}
			for i := 0; i < 30; i++ {
				user := fmt.Sprintf("user-%d", i)
				first, _ := send("/", user, "")
				seen[first] = true
				for j := 0; j < 3; j++ {
					if got, _ := send("/", user, ""); got != first {
						t.Fatalf("%s: request %d went to %s, first went to %s", user, j, got, first)
					}
				}
			}
			if len(seen) < 2 {
				t.Errorf("30 keys all went to %v, want them spread over the hosts", seen)
			}

			// No cookie yet: herald generates one and the response sets it;
			// sending it back keeps the host.
			first, hdr := send("/cookie", "", "")
			sc := hdr.Get("set-cookie")
			if !strings.HasPrefix(sc, "sticky=") || !strings.Contains(sc, "Max-Age=3600") || !strings.Contains(sc, "Path=/") {
				t.Fatalf("set-cookie = %q, want a generated sticky cookie with Max-Age=3600; Path=/", sc)
			}
			cookie := strings.SplitN(sc, ";", 2)[0]
			for j := 0; j < 5; j++ {
				got, hdr := send("/cookie", "", cookie)
				if got != first {
					t.Fatalf("with cookie %s, request %d went to %s, want %s", cookie, j, got, first)
				}
				if hdr.Get("set-cookie") != "" {
					t.Fatalf("a request carrying the cookie got set-cookie %q", hdr.Get("set-cookie"))
				}
			}
		})
	}
}

// TestImmediateHealthCheckFail: an upstream response carrying
// x-envoy-immediate-health-check-fail takes the host out of rotation at
// once, before its next health check
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-immediate-health-check-fail).
func TestImmediateHealthCheckFail(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	a := nameBackend(t, "a")
	b := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if failing.Load() && r.URL.Path != "/healthz" {
			w.Header().Set("x-envoy-immediate-health-check-fail", "true")
		}
		if failing.Load() && r.URL.Path == "/healthz" {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "b")
	}))
	// A long interval: only the header can take b out during the test.
	cluster := staticCluster("hc", a, b) + `    health_checks:
    - timeout: 1s
      interval: 60s
      no_traffic_interval: 60s
      unhealthy_threshold: 3
      healthy_threshold: 1
      http_health_check: { path: /healthz }
`
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("listener_0", `            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: hc }`, "") + "  clusters:\n" + cluster
	h := testutil.Start(t, cfg)
	url := "http://" + h.ListenerAddr("listener_0") + "/"
	c := newClient()
	testutil.Eventually(t, 10*time.Second, func() error {
		got := map[string]int{}
		for range 6 {
			_, _, body := get(t, c, url, "")
			got[body]++
		}
		if got["a"] == 0 || got["b"] == 0 {
			return fmt.Errorf("served %v, want both hosts healthy first", got)
		}
		return nil
	})
	failing.Store(true)
	// Round robin reaches b within two requests; its answer fails it.
	for range 2 {
		get(t, c, url, "")
	}
	_, text := h.Admin("GET", "/clusters")
	if !strings.Contains(text, "hc::"+b+"::health_flags::/failed_active_hc") {
		t.Fatalf("after b answered with x-envoy-immediate-health-check-fail, /clusters:\n%s", text)
	}
	for i := 0; i < 10; i++ {
		if _, _, body := get(t, c, url, ""); body != "a" {
			t.Fatalf("request %d went to %q, want only a", i, body)
		}
	}
}
