package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

const adminYAML = `
- name: backend_service
  connect_timeout: 0.25s
  circuit_breakers:
    thresholds:
    - {priority: HIGH, max_connections: 100, max_pending_requests: 10, max_requests: 50}
  load_assignment:
    cluster_name: backend_service
    endpoints:
    - lb_endpoints:
      - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9090}}}
      - endpoint: {hostname: six, address: {socket_address: {address: "::1", port_value: 9091}}}
        load_balancing_weight: 3
- name: alpha
  alt_stat_name: alpha_stats
`

func TestWriteClustersGolden(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, adminYAML), prefix); err != nil {
		t.Fatal(err)
	}
	h := m.Cluster("backend_service").HostSet().Hosts[0]
	h.Stats.RqTotal.Add(7)
	h.Stats.RqSuccess.Add(6)
	h.Stats.RqError.Add(1)
	h.Stats.CxTotal.Add(2)
	h.Stats.CxActive.Add(1)

	var buf bytes.Buffer
	if err := m.WriteClusters(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "clusters.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("/clusters (-want +got):\n%s", diff)
	}
}

func TestWriteClustersJSON(t *testing.T) {
	m, _ := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, adminYAML), prefix); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.WriteClustersJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ClusterStatuses []struct {
			Name              string `json:"name"`
			ObservabilityName string `json:"observability_name"`
			CircuitBreakers   struct {
				Thresholds []struct {
					Priority       string `json:"priority"`
					MaxConnections int    `json:"max_connections"`
				} `json:"thresholds"`
			} `json:"circuit_breakers"`
			HostStatuses []struct {
				Address struct {
					SocketAddress struct {
						Address   string `json:"address"`
						PortValue int    `json:"port_value"`
					} `json:"socket_address"`
				} `json:"address"`
				Weight       int    `json:"weight"`
				Hostname     string `json:"hostname"`
				HealthStatus struct {
					EdsHealthStatus string `json:"eds_health_status"`
				} `json:"health_status"`
				Stats []struct {
					Name string `json:"name"`
					Type string `json:"type"`
				} `json:"stats"`
			} `json:"host_statuses"`
		} `json:"cluster_statuses"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if len(got.ClusterStatuses) != 2 || got.ClusterStatuses[0].Name != "alpha" || got.ClusterStatuses[0].ObservabilityName != "alpha_stats" {
		t.Fatalf("cluster statuses = %+v", got.ClusterStatuses)
	}
	b := got.ClusterStatuses[1]
	if len(b.CircuitBreakers.Thresholds) != 2 || b.CircuitBreakers.Thresholds[1].Priority != "HIGH" || b.CircuitBreakers.Thresholds[1].MaxConnections != 100 {
		t.Errorf("circuit breakers = %+v", b.CircuitBreakers)
	}
	if len(b.HostStatuses) != 2 {
		t.Fatalf("host statuses = %+v", b.HostStatuses)
	}
	h := b.HostStatuses[1]
	if h.Address.SocketAddress.Address != "::1" || h.Address.SocketAddress.PortValue != 9091 || h.Weight != 3 || h.Hostname != "six" || h.HealthStatus.EdsHealthStatus != "HEALTHY" {
		t.Errorf("host status = %+v", h)
	}
	// As in Envoy's output, defaults are omitted: a counter has no "type".
	if len(h.Stats) != 8 || h.Stats[0].Name != "cx_connect_fail" || h.Stats[0].Type != "" || h.Stats[7].Name != "rq_active" || h.Stats[7].Type != "GAUGE" {
		t.Errorf("host stats = %+v", h.Stats)
	}
}
