package upstream

import (
	"bytes"
	"context"
	"fmt"
	"net"
	nethttp "net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

func TestHealthFlagsString(t *testing.T) {
	tests := []struct {
		name string
		in   HealthFlags
		want string
	}{
		{name: "healthy", in: 0, want: "healthy"},
		{name: "active hc", in: FailedActiveHC, want: "/failed_active_hc"},
		// Envoy concatenates in HEALTH_FLAG_ENUM_VALUES order, no separator.
		{name: "all", in: ActiveHCTimeout | FailedEDSHealth | ExcludedViaImmediateHCFail | FailedOutlierCheck | FailedActiveHC,
			want: "/failed_active_hc/failed_outlier_check/failed_eds_health/excluded_via_immediate_hc_fail/active_hc_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// statusBackend answers with the status it holds (200 at first).
func statusBackend(t *testing.T) (string, *atomic.Int32) {
	var st atomic.Int32
	st.Store(200)
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if st.Load() < 0 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(int(st.Load()))
	}))
	return addr, &st
}

func hcCluster(name, hc string, addrs ...string) string {
	var eps []string
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		eps = append(eps, fmt.Sprintf(`{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}`, host, port))
	}
	return fmt.Sprintf(`
- name: %s
  connect_timeout: 1s
  health_checks:
  - %s
  load_assignment:
    cluster_name: %s
    endpoints:
    - lb_endpoints: [%s]
`, name, hc, name, strings.Join(eps, ", "))
}

const fastHC = "{timeout: 1s, interval: 0.01s, no_traffic_interval: 0.01s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /healthz}}"

func picks(c *Cluster, n int) map[string]int {
	out := map[string]int{}
	for range n {
		if h := c.Pick(nil); h != nil {
			out[h.Address()]++
		}
	}
	return out
}

func TestActiveHealthChecking(t *testing.T) {
	good, _ := statusBackend(t)
	bad, badStatus := statusBackend(t)
	badStatus.Store(503)
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, hcCluster("hc", fastHC, good, bad)), prefix); err != nil {
		t.Fatal(err)
	}
	if w := m.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %v, want none: health_checks are supported", w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Cluster warming waits for every host's first check.
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("hc")
	flags := func() map[string]string {
		out := map[string]string{}
		for _, h := range c.HostSet().Hosts {
			out[h.Address()] = h.HealthFlags().String()
		}
		return out
	}
	if f := flags(); f[good] != "healthy" || f[bad] != "/failed_active_hc" {
		t.Fatalf("flags after warming = %v", f)
	}
	// The failed host leaves the rotation (1 of 2 healthy is not below the
	// 50% panic threshold).
	if p := picks(c, 10); p[good] != 10 {
		t.Errorf("picks = %v, want only %s", p, good)
	}
	var text bytes.Buffer
	if err := m.WriteClusters(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hc::" + good + "::health_flags::healthy\n", "hc::" + bad + "::health_flags::/failed_active_hc\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("/clusters lacks %q:\n%s", want, text.String())
		}
	}
	for _, hs := range m.ClustersProto().GetClusterStatuses()[0].GetHostStatuses() {
		addr := fmt.Sprintf("%s:%d", hs.GetAddress().GetSocketAddress().GetAddress(), hs.GetAddress().GetSocketAddress().GetPortValue())
		if got, want := hs.GetHealthStatus().GetFailedActiveHealthCheck(), addr == bad; got != want {
			t.Errorf("json %s failed_active_health_check = %v, want %v", addr, got, want)
		}
	}
	if got := st.Gauge("cluster.hc.membership_healthy").Value(); got != 1 {
		t.Errorf("membership_healthy = %d, want 1", got)
	}
	if got := st.Gauge("cluster.hc.health_check.healthy").Value(); got != 1 {
		t.Errorf("health_check.healthy = %d, want 1", got)
	}
	for _, name := range []string{"attempt", "success", "failure"} {
		if st.Counter("cluster.hc.health_check."+name).Value() == 0 {
			t.Errorf("cluster.hc.health_check.%s = 0", name)
		}
	}

	// The failed host comes back.
	badStatus.Store(200)
	testutil.Eventually(t, 5*time.Second, func() error {
		if f := flags(); f[bad] != "healthy" {
			return fmt.Errorf("flags = %v", f)
		}
		if p := picks(c, 10); p[bad] == 0 {
			return fmt.Errorf("picks = %v, recovered host not picked", p)
		}
		return nil
	})
	if got := st.Gauge("cluster.hc.membership_healthy").Value(); got != 2 {
		t.Errorf("membership_healthy = %d, want 2", got)
	}

	// Replacing the cluster stops its checkers and hands the gauge over.
	if err := m.Apply(context.Background(), parseClusters(t, hcCluster("hc", fastHC, good)), prefix); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := st.Gauge("cluster.hc.health_check.healthy").Value(); got != 1 {
			return fmt.Errorf("health_check.healthy = %d, want 1 after the swap", got)
		}
		return nil
	})
}

// New hosts start /failed_active_hc and a data-path immediate failure
// takes a host out until a check passes again.
func TestImmediateHealthCheckFail(t *testing.T) {
	a, aStatus := statusBackend(t)
	b, _ := statusBackend(t)
	m, st := newTestManager(t)
	// A long interval: nothing heals the host during the test.
	slow := "{timeout: 1s, interval: 60s, no_traffic_interval: 60s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /}}"
	if err := m.Apply(context.Background(), parseClusters(t, hcCluster("hc", slow, a, b)+staticCluster("plain", "10.0.0.1")), prefix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("hc")
	var ha *Host
	for _, h := range c.HostSet().Hosts {
		if h.Address() == a {
			ha = h
		}
	}
	aStatus.Store(503)
	ha.ImmediateHealthCheckFail()
	if got := ha.HealthFlags().String(); got != "/failed_active_hc/excluded_via_immediate_hc_fail" {
		t.Errorf("flags = %q", got)
	}
	if p := picks(c, 4); p[a] != 0 {
		t.Errorf("picks = %v, excluded host picked", p)
	}
	if got := st.Counter("cluster.hc.health_check.passive_failure").Value(); got != 1 {
		t.Errorf("passive_failure = %d, want 1", got)
	}
	// Without health checks the header does nothing (Envoy: "only occurs
	// if the host's cluster has active health checking configured").
	hp := m.Cluster("plain").Pick(nil)
	hp.ImmediateHealthCheckFail()
	if !hp.Healthy() {
		t.Errorf("host of a cluster without health checks marked %s", hp.HealthFlags())
	}
}

// Warming is bounded by the caller: a host whose first check hangs keeps
// the cluster unready.
func TestWarmingWaitsForFirstCheck(t *testing.T) {
	hang, st := statusBackend(t)
	st.Store(-1)
	m, _ := newTestManager(t)
	hc := "{timeout: 10s, interval: 1s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /}}"
	if err := m.Apply(context.Background(), parseClusters(t, hcCluster("hc", hc, hang)), prefix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.WaitReady(ctx); err == nil {
		t.Error("WaitReady returned before the first health check finished")
	}
	// New hosts count as failed until checked: the picker is in panic.
	c := m.Cluster("hc")
	if h := c.Pick(nil); h == nil || h.HealthFlags() != FailedActiveHC {
		t.Errorf("picked %v, want the unchecked host in panic mode", h)
	}
}

func TestHealthCheckConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		hcs     string
		wantErr string
	}{
		{name: "two checks", hcs: fastHC + "\n  - " + fastHC, wantErr: "static_resources.clusters[0].health_checks[1]: more than one health check per cluster is not supported by herald yet"},
		{name: "unsupported field", hcs: "{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, event_log_path: /tmp/x, tcp_health_check: {}}",
			wantErr: "static_resources.clusters[0].health_checks[0].event_log_path: not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			err := m.Apply(context.Background(), parseClusters(t, hcCluster("hc", tc.hcs, "127.0.0.1:1")), prefix)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Apply error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
