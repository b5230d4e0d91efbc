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

// connectProxyBackend is an HTTP/1.1 server that terminates CONNECT
// itself: 200, then it echoes the tunnel's bytes upper-cased until the
// client half-closes.
func connectProxyBackend(t *testing.T) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method != nethttp.MethodConnect {
			nethttp.Error(w, "want CONNECT, got "+r.Method, 400)
			return
		}
		conn, brw, err := nethttp.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 200 Connection Established\r\nX-Proxy: %s\r\n\r\n", r.Host)
		if brw.Flush() != nil {
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write([]byte(strings.ToUpper(string(buf[:n])))); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}))
}

// TestConnect proxies HTTP/1.1 CONNECT
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#connect-support):
// upgrade_configs enables the "CONNECT" upgrade type, connect_matcher
// routes match CONNECT requests; a route with connect_config terminates
// the CONNECT (herald dials the host over TCP, answers 200 and relays the
// payload), one without forwards the CONNECT request upstream.
func TestConnect(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	proxy := connectProxyBackend(t)
	hcmExtra := `          upgrade_configs:
          - upgrade_type: CONNECT
`
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match:
                  connect_matcher: {}
                  headers: [{ name: x-deny, present_match: true }]
                route:
                  cluster: echo
                  upgrade_configs: [{ upgrade_type: CONNECT, enabled: false }]
              - match:
                  connect_matcher: {}
                  headers: [{ name: x-forward, present_match: true }]
                route: { cluster: proxy }
              - match: { connect_matcher: {} }
                route:
                  cluster: echo
                  upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }]
              - match: { prefix: "/" }
                route: { cluster: proxy }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "l", vhosts: vhosts, hcmExtra: hcmExtra})},
		staticCluster("echo", echo), staticCluster("proxy", proxy)))
	addr := h.ListenerAddr("l")

	// connect sends a CONNECT with the extra header lines and reads the
	// response head.
	connect := func(t *testing.T, extra string) (net.Conn, *bufio.Reader, *nethttp.Response) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n%s\r\n", extra)
		br := bufio.NewReader(c)
		res, err := nethttp.ReadResponse(br, &nethttp.Request{Method: nethttp.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return c, br, res
	}
	// roundTrips writes each message and reads want(message) back, then
	// half-closes and expects the end of the tunnel.
	roundTrips := func(t *testing.T, c net.Conn, br *bufio.Reader, want func(string) string) {
		t.Helper()
		for i := 0; i < 100; i++ {
			msg := fmt.Sprintf("message %d;", i)
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("round trip %d: %v", i, err)
			}
			if string(got) != want(msg) {
				t.Fatalf("round trip %d: got %q, want %q", i, got, want(msg))
			}
		}
		io.WriteString(c, "last")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("reading to the end of the tunnel: %v", err)
		}
		if string(rest) != want("last") {
			t.Errorf("after the half-close got %q, want %q and the end", rest, want("last"))
		}
	}

	t.Run("connect_config terminates the CONNECT: TCP to the host", func(t *testing.T) {
		c, br, res := connect(t, "")
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		if res.Header.Get("Content-Length") != "" || len(res.TransferEncoding) > 0 || res.Header.Get("Connection") != "" {
			t.Errorf("2xx to CONNECT carries framing or connection fields: %v %v", res.Header, res.TransferEncoding)
		}
		roundTrips(t, c, br, func(s string) string { return s })
	})

	t.Run("without connect_config the CONNECT is forwarded", func(t *testing.T) {
		c, br, res := connect(t, "X-Forward: 1\r\n")
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		if got := res.Header.Get("X-Proxy"); got != "tunnel.example:443" {
			t.Errorf("upstream proxy saw authority %q, want tunnel.example:443", got)
		}
		roundTrips(t, c, br, strings.ToUpper)
	})

	t.Run("CONNECT disabled on its route gets 403", func(t *testing.T) {
		_, _, res := connect(t, "X-Deny: 1\r\n")
		if res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", res.StatusCode)
		}
	})

	t.Run("stats", func(t *testing.T) {
		if got := h.Stat("http.ingress_http.downstream_cx_upgrades_total"); got != 2 {
			t.Errorf("downstream_cx_upgrades_total = %d, want 2", got)
		}
		if got := h.Stat("http.ingress_http.downstream_rq_ws_on_non_ws_route"); got != 1 {
			t.Errorf("downstream_rq_ws_on_non_ws_route = %d, want 1", got)
		}
		waitStat(t, h, "http.ingress_http.downstream_cx_upgrades_active", 0)
	})
}
