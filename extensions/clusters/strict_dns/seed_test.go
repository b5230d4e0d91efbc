package strictdns

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// first always picks host 0; it stands in for round_robin, which this
// extension must not import.
type first struct{}

func (first) NewPicker([]lbpolicy.Host) lbpolicy.Picker { return first{} }
func (first) Pick(*lbpolicy.Context) int                { return 0 }

func init() {
	lbpolicy.Register(lbpolicy.Extension[*roundrobinv3.RoundRobin]{
		Name:   "envoy.load_balancing_policies.round_robin",
		Config: &roundrobinv3.RoundRobin{},
		Build: func(*roundrobinv3.RoundRobin, lbpolicy.BuildContext) (lbpolicy.Policy, error) {
			return first{}, nil
		},
	})
}

// TestSeedCluster loads the cluster of the https-h2-hardened seed config
// (STRICT_DNS with an HTTP health check and circuit_breakers) through the cluster
// manager, with its endpoint moved to a live loopback listener, and dials
// the picked host.
func TestSeedCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Answer the seed's http_health_check (GET /healthz) with 200;
			// the test's own dial just gets closed.
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				if n, _ := c.Read(buf); strings.HasPrefix(string(buf[:n]), "GET /healthz ") {
					c.Write([]byte("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"))
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	y := `
name: backend_service
type: STRICT_DNS
connect_timeout: 0.25s
lb_policy: ROUND_ROBIN
health_checks:
- timeout: 1s
  interval: 5s
  unhealthy_threshold: 2
  healthy_threshold: 1
  http_health_check:
    path: "/healthz"
circuit_breakers:
  thresholds:
  - priority: HIGH
    max_connections: 100
    max_pending_requests: 10
    max_requests: 50
load_assignment:
  cluster_name: backend_service
  endpoints:
  - lb_endpoints:
    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: PORT } } }
`
	js, err := yaml.YAMLToJSON([]byte(strings.Replace(y, "PORT", strconv.Itoa(port), 1)))
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterv3.Cluster{}
	if err := protojson.Unmarshal(js, c); err != nil {
		t.Fatal(err)
	}
	st := stats.NewStore()
	m := upstream.NewManager(st)
	defer m.Close()
	if err := m.Apply(context.Background(), []*clusterv3.Cluster{c}, func(i int) string { return "static_resources.clusters[0]" }); err != nil {
		t.Fatal(err)
	}
	// health_checks is supported now: no warning.
	if w := m.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %v, want none", w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cl := m.Cluster("backend_service")
	// The cluster is ready once the first health check round is in: the
	// host answered /healthz with 200.
	if hs := cl.HostSet(); len(hs.Hosts) != 1 || hs.Healthy != 1 {
		t.Fatalf("after the first health check: %d hosts, %d healthy; want 1 healthy", len(hs.Hosts), hs.Healthy)
	}
	h := cl.Pick(nil)
	if h == nil || h.Address() != ln.Addr().String() || h.Hostname() != "127.0.0.1" {
		t.Fatalf("picked %v, want %s", h, ln.Addr())
	}
	conn, err := cl.Dial(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := st.Counter("cluster.backend_service.upstream_cx_total").Value(); got != 1 {
		t.Errorf("upstream_cx_total = %d, want 1", got)
	}
	if got := st.Counter("cluster.backend_service.update_success").Value(); got < 1 {
		t.Errorf("update_success = %d, want at least 1", got)
	}
	if got := cl.Thresholds(true).MaxConnections; got != 100 {
		t.Errorf("high max_connections = %d, want 100", got)
	}
}
