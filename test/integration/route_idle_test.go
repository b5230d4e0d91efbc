package integration

import (
	"fmt"
	nethttp "net/http"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestRouteIdleTimeout: a route's idle_timeout overrides the connection
// manager's stream_idle_timeout (default 5 min); when it fires before the
// upstream answered, Envoy answers 408 (route_components.proto idle_timeout).
func TestRouteIdleTimeout(t *testing.T) {
	t.Parallel()
	stall := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	routes := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: stall, timeout: 0s, idle_timeout: 0.3s }`
	h := testutil.Start(t, adminBlock+"static_resources:\n  listeners:\n"+hcmListener("l", routes, "")+"  clusters:\n"+staticCluster("stall", stall))
	start := time.Now()
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
	if code != 408 || body != "stream timeout" {
		t.Fatalf("got %d %q after %v, want 408 stream timeout", code, body, time.Since(start))
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat("http.ingress_http.downstream_rq_idle_timeout"); v != 1 {
			return fmt.Errorf("downstream_rq_idle_timeout = %d, want 1", v)
		}
		return nil
	})
}
