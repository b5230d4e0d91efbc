package integration

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/herald-proxy/herald/internal/testutil"
)

// tcpHCBackend answers each line "ping" with "pong" while healthy, with
// "nope" otherwise.
func tcpHCBackend(t *testing.T) (string, *atomic.Bool) {
	t.Helper()
	var healthy atomic.Bool
	healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 4)
				r := bufio.NewReader(c)
				for {
					if _, err := r.Read(buf); err != nil {
						return
					}
					if healthy.Load() {
						c.Write([]byte("pong"))
					} else {
						c.Write([]byte("nope"))
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &healthy
}

// TestActiveHealthCheckTCPAndGRPC: tcp_health_check (send/receive
// payloads; a wrong answer fails at the timeout, as Envoy keeps reading
// for the expected blocks) and grpc_health_check (grpc.health.v1 with a service name)
// take a host out when it fails and back when it passes, through the
// binary (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking).
func TestActiveHealthCheckTCPAndGRPC(t *testing.T) {
	t.Parallel()
	tcpAddr, tcpHealthy := tcpHCBackend(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	grpcAddr := ln.Addr().String()

	hc := func(kind string) string {
		return `    health_checks:
    - timeout: 1s
      interval: 0.05s
      no_traffic_interval: 0.05s
      unhealthy_threshold: 1
      healthy_threshold: 1
      ` + kind + "\n"
	}
	cfg := adminBlock + "static_resources:\n  listeners:\n" + hcmListener("l", catchAllVhost("grpc_hc"), "") +
		"  clusters:\n" +
		staticCluster("tcp_hc", tcpAddr) + hc(`tcp_health_check: { send: { text: "70696e67" }, receive: [ { text: "706f6e67" } ] }`) +
		h2Cluster("grpc_hc", grpcAddr) + hc(`grpc_health_check: { service_name: svc }`)
	h := testutil.Start(t, cfg)
	flag := func(cluster, addr, want string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			_, text := h.Admin("GET", "/clusters")
			line := cluster + "::" + addr + "::health_flags::" + want
			for _, l := range strings.Split(text, "\n") {
				if l == line {
					return nil
				}
			}
			return fmt.Errorf("no %q in /clusters", line)
		})
	}
	flag("tcp_hc", tcpAddr, "healthy")
	flag("grpc_hc", grpcAddr, "healthy")

	tcpHealthy.Store(false)
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	flag("tcp_hc", tcpAddr, "/failed_active_hc")
	flag("grpc_hc", grpcAddr, "/failed_active_hc")
	for _, c := range []string{"tcp_hc", "grpc_hc"} {
		if got := h.Stat("cluster." + c + ".membership_healthy"); got != 0 {
			t.Errorf("cluster.%s.membership_healthy = %d with its host failing, want 0", c, got)
		}
	}

	tcpHealthy.Store(true)
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	flag("tcp_hc", tcpAddr, "healthy")
	flag("grpc_hc", grpcAddr, "healthy")
	for _, c := range []string{"tcp_hc", "grpc_hc"} {
		if got := h.Stat("cluster." + c + ".health_check.failure"); got < 1 {
			t.Errorf("cluster.%s.health_check.failure = %d, want >= 1", c, got)
		}
	}
}
