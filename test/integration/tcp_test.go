package integration

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

func TestTCPProxyEchoAndHalfClose(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	cfg := adminBlock + `static_resources:
  listeners:
  - name: tcp_listener
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
  clusters:
` + staticCluster("echo", echo)
	h := testutil.Start(t, cfg)
	addr := h.ListenerAddr("tcp_listener")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello through herald")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	// Half-close our side: the echo server sees EOF, echoes, closes; we
	// read everything then EOF.
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != string(msg) {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat("tcp.tcp.downstream_cx_total"); v != 1 {
			return fmt.Errorf("tcp.tcp.downstream_cx_total = %d", v)
		}
		if v := h.Stat("cluster.echo.upstream_cx_total"); v != 1 {
			return fmt.Errorf("cluster.echo.upstream_cx_total = %d", v)
		}
		return nil
	})
}
