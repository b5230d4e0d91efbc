package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// HTTP upgrades (issue #6). herald does not proxy upgrades yet and refuses
// upgrade_configs at config load, so it answers every HTTP/1.1 upgrade
// request as Envoy answers one that no upgrade_configs entry enables: 403,
// response_code_details upgrade_failed, downstream_rq_ws_on_non_ws_route,
// and the connection closes (ConnectionManagerImpl::ActiveStream::
// decodeHeaders; https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
func TestUpgradeRejected(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "upgrade=%q", r.Header.Get("Upgrade"))
	}))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/ws" }
                route: { cluster: web }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "l", vhosts: vhosts})}, staticCluster("web", backend)))
	addr := h.ListenerAddr("l")

	// exchange sends one raw request and reads the response.
	exchange := func(t *testing.T, req string) (*nethttp.Response, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}
	const wsHeaders = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

	t.Run("websocket upgrade on a route gets 403 and the connection closes", func(t *testing.T) {
		res, _ := exchange(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\n"+wsHeaders+"\r\n")
		if res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", res.StatusCode)
		}
		if !res.Close {
			t.Error("the connection stays open after a rejected upgrade; Envoy closes it")
		}
		if got := h.Stat("http.ingress_http.downstream_rq_ws_on_non_ws_route"); got != 1 {
			t.Errorf("downstream_rq_ws_on_non_ws_route = %d, want 1", got)
		}
	})

	t.Run("upgrade without a matching route gets the router's 404", func(t *testing.T) {
		res, _ := exchange(t, "GET /other HTTP/1.1\r\nHost: example.com\r\n"+wsHeaders+"\r\n")
		if res.StatusCode != 404 {
			t.Fatalf("status %d, want 404", res.StatusCode)
		}
	})

	t.Run("upgrade header without the connection token is a normal request", func(t *testing.T) {
		res, body := exchange(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n")
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		// Upgrade is hop-by-hop: not forwarded.
		if !strings.Contains(body, `upgrade=""`) {
			t.Errorf("backend saw %s, want no upgrade header", body)
		}
	})
}
