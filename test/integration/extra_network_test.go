package integration

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestExtraIPv6ListenerAndBackend runs a listener on [::1]:0 proxying to a
// backend on [::1].
func TestExtraIPv6ListenerAndBackend(t *testing.T) {
	t.Parallel()
	backend, err := testutil.HTTPBackendOn(t, "[::1]:0", nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-xff", r.Header.Get("x-forwarded-for"))
		io.WriteString(w, "v6 ok")
	}))
	if err != nil {
		t.Skipf("cannot bind [::1]: %v", err)
	}
	l := extraHCMListener(hcmSpec{name: "l6", address: "::1", hcmExtra: "          use_remote_address: true\n", vhosts: catchAllVhost("v6")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("v6", backend)))
	addr := h.ListenerAddr("l6")
	if !strings.HasPrefix(addr, "[::1]:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("listener address %q, want [::1]:<port>", addr)
	}
	code, hdr, body := get(t, newClient(), "http://"+addr+"/x", "")
	if code != 200 || body != "v6 ok" {
		t.Fatalf("got %d %q, want 200 %q", code, body, "v6 ok")
	}
	// Envoy: with use_remote_address the downstream peer address (::1) is
	// appended to x-forwarded-for.
	if got := hdr.Get("x-seen-xff"); got != "::1" {
		t.Errorf("backend saw x-forwarded-for %q, want ::1", got)
	}
	waitStat(t, h, "cluster.v6.upstream_rq_2xx", 1)
}

// TestExtraDNSClusters resolves the endpoint "localhost" with STRICT_DNS and
// LOGICAL_DNS clusters and reaches a 127.0.0.1 backend through each.
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery
func TestExtraDNSClusters(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "dns-backend")
	_, port, _ := net.SplitHostPort(backend)
	dnsCluster := func(name, typ string) string {
		// V4_ONLY: the backend listens on 127.0.0.1 only, and "localhost"
		// may also resolve to ::1 (Envoy's AUTO prefers IPv6).
		return fmt.Sprintf(`  - name: %s
    type: %s
    connect_timeout: 1s
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: localhost, port_value: %s } } }
`, name, typ, name, port)
	}
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/strict" }
                route: { cluster: strict }
              - match: { prefix: "/logical" }
                route: { cluster: logical }`
	l := extraHCMListener(hcmSpec{name: "l", vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, dnsCluster("strict", "STRICT_DNS"), dnsCluster("logical", "LOGICAL_DNS")))
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	tests := []struct {
		name    string
		path    string
		cluster string
	}{
		{name: "strict dns", path: "/strict", cluster: "strict"},
		{name: "logical dns", path: "/logical", cluster: "logical"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// DNS resolution is asynchronous: until the first answer the
			// cluster has no hosts (503 UH), so poll.
			testutil.Eventually(t, 5*time.Second, func() error {
				code, _, body := get(t, c, base+tc.path, "")
				if code != 200 || body != "dns-backend" {
					return fmt.Errorf("got %d %q, want 200 dns-backend", code, body)
				}
				return nil
			})
			if v := h.Stat("cluster." + tc.cluster + ".upstream_rq_2xx"); v < 1 {
				t.Errorf("cluster.%s.upstream_rq_2xx = %d, want >= 1", tc.cluster, v)
			}
		})
	}
	// Envoy's /clusters lists the resolved address for strict DNS hosts.
	_, clusters := h.Admin("GET", "/clusters")
	if want := "strict::127.0.0.1:" + port + "::"; !strings.Contains(clusters, want) {
		t.Errorf("/clusters lacks %q:\n%s", want, clusters)
	}
}

// tcpRoundTrip dials addr, writes msg, half-closes and returns all it reads.
func tcpRoundTrip(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestExtraTCPProxyWeightedClusters spreads connections over two clusters by
// weight.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto
func TestExtraTCPProxyWeightedClusters(t *testing.T) {
	t.Parallel()
	a := testutil.NamedTCPEcho(t, "a")
	b := testutil.NamedTCPEcho(t, "b")
	l := tcpProxyListener("tcp", "weighted", `          weighted_clusters:
            clusters:
            - { name: a, weight: 1 }
            - { name: b, weight: 1 }
`)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("a", a), staticCluster("b", b)))
	addr := h.ListenerAddr("tcp")
	const conns = 100
	counts := map[string]int{}
	for i := 0; i < conns; i++ {
		got, err := tcpRoundTrip(addr, "ping")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		counts[got]++
	}
	// Equal weights: each side gets about half; a band of 20..80 makes a
	// false failure vanishingly unlikely.
	if counts["a:ping"]+counts["b:ping"] != conns || counts["a:ping"] < 20 || counts["b:ping"] < 20 {
		t.Fatalf("answers = %v, want about %d each of a:ping and b:ping", counts, conns/2)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		ca, cb := h.Stat("cluster.a.upstream_cx_total"), h.Stat("cluster.b.upstream_cx_total")
		if ca != int64(counts["a:ping"]) || cb != int64(counts["b:ping"]) {
			return fmt.Errorf("upstream_cx_total a=%d b=%d, want %d %d", ca, cb, counts["a:ping"], counts["b:ping"])
		}
		if v := h.Stat("tcp.weighted.downstream_cx_total"); v != conns {
			return fmt.Errorf("tcp.weighted.downstream_cx_total = %d, want %d", v, conns)
		}
		return nil
	})
}

// TestExtraTCPProxyIdleTimeout: with idle_timeout set, a connection with no
// traffic in either direction is closed by the proxy and
// tcp.<stat_prefix>.idle_timeout counts it.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/tcp_proxy_filter#statistics
func TestExtraTCPProxyIdleTimeout(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	l := tcpProxyListener("tcp", "idle", "          cluster: echo\n          idle_timeout: 0.3s\n")
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("echo", echo)))
	c, err := net.Dial("tcp", h.ListenerAddr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	elapsed := waitClosed(t, c, c, 5*time.Second)
	if elapsed < 200*time.Millisecond {
		t.Errorf("closed after %v, before the 0.3s idle timeout", elapsed)
	}
	t.Logf("idle connection closed %v after the last byte", elapsed)
	waitStat(t, h, "tcp.idle.idle_timeout", 1)
}

// TestExtraTCPProxyConnectFailure: when the upstream connection fails, the
// downstream connection is closed.
func TestExtraTCPProxyConnectFailure(t *testing.T) {
	t.Parallel()
	l := tcpProxyListener("tcp", "down", "          cluster: down\n")
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("down", testutil.ClosedPort(t))))
	c, err := net.Dial("tcp", h.ListenerAddr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitClosed(t, c, c, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat("cluster.down.upstream_cx_connect_fail"); v != 1 {
			return fmt.Errorf("cluster.down.upstream_cx_connect_fail = %d, want 1", v)
		}
		if v := h.Stat("tcp.down.downstream_cx_total"); v != 1 {
			return fmt.Errorf("tcp.down.downstream_cx_total = %d, want 1", v)
		}
		return nil
	})
}
