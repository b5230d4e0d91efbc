package upstream

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// testClock is a settable clock for ejection times; the detector's
// interval timer stays real.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Unix(1_000_000, 0).UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func odCluster(name, od string, addrs ...string) string {
	return fmt.Sprintf(`
- name: %s
  connect_timeout: 1s
  outlier_detection: %s
  load_assignment:
    cluster_name: %s
    endpoints:
    - lb_endpoints: [%s]
`, name, od, name, strings.Join(endpoints(addrs), ", "))
}

func endpoints(addrs []string) []string {
	var eps []string
	for _, a := range addrs {
		eps = append(eps, endpoint(a))
	}
	return eps
}

func hostByAddr(c *Cluster, addr string) *Host {
	for _, h := range c.HostSet().Hosts {
		if h.Address() == addr {
			return h
		}
	}
	return nil
}

// TestOutlierEjection: a host answering three 5xx in a row leaves the
// rotation with /failed_outlier_check, shows in /clusters and the stats,
// and returns after base_ejection_time on the interval timer.
func TestOutlierEjection(t *testing.T) {
	clock := newTestClock()
	m, st := newTestManager(t, WithClock(clock.now))
	// A failure percentage request volume of 1 makes every sweep publish
	// the success rate of a host with a request, which shows the test
	// that a sweep ran; failure percentage is not enforced by default.
	const od = `{consecutive_5xx: 3, interval: 0.01s, base_ejection_time: 30s, max_ejection_percent: 50,
    failure_percentage_minimum_hosts: 1, failure_percentage_request_volume: 1}`
	good, bad := "10.0.0.1:8080", "10.0.0.2:8080"
	if err := m.Apply(context.Background(), parseClusters(t, odCluster("od", od, good, bad)), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("od")
	if !c.OutlierDetected() {
		t.Fatal("outlier detection not running")
	}
	if p := picks(c, 10); p[good] != 5 || p[bad] != 5 {
		t.Fatalf("picks before = %v, want both", p)
	}
	h := hostByAddr(c, bad)
	h.RecordResult(503)
	h.RecordResult(500)
	if h.HealthFlags() != 0 {
		t.Fatalf("ejected after two 5xx: %v", h.HealthFlags())
	}
	h.RecordResult(502)
	if got := h.HealthFlags().String(); got != "/failed_outlier_check" {
		t.Fatalf("flags = %q, want /failed_outlier_check", got)
	}
	if p := picks(c, 10); p[good] != 10 {
		t.Errorf("picks while ejected = %v, want only %s", p, good)
	}
	if got := st.Gauge("cluster.od.membership_healthy").Value(); got != 1 {
		t.Errorf("membership_healthy = %d, want 1", got)
	}
	for name, want := range map[string]uint64{
		"ejections_enforced_total": 1, "ejections_enforced_consecutive_5xx": 1, "ejections_detected_consecutive_5xx": 1,
		"ejections_overflow": 0, "ejections_total": 1,
	} {
		if got := st.Counter("cluster.od.outlier_detection." + name).Value(); got != want {
			t.Errorf("outlier_detection.%s = %d, want %d", name, got, want)
		}
	}
	if got := st.Gauge("cluster.od.outlier_detection.ejections_active").Value(); got != 1 {
		t.Errorf("ejections_active = %d, want 1", got)
	}

	var text bytes.Buffer
	if err := m.WriteClusters(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"od::observability_name::od\nod::outlier::success_rate_average::-1\nod::outlier::success_rate_ejection_threshold::-1\n" +
			"od::outlier::local_origin_success_rate_average::-1\nod::outlier::local_origin_success_rate_ejection_threshold::-1\nod::default_priority::",
		"od::" + bad + "::health_flags::/failed_outlier_check\n",
		"od::" + good + "::health_flags::healthy\n",
		"od::" + good + "::success_rate::-1\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("/clusters lacks %q:\n%s", want, text.String())
		}
	}
	for _, hs := range m.ClustersProto().GetClusterStatuses()[0].GetHostStatuses() {
		addr := fmt.Sprintf("%s:%d", hs.GetAddress().GetSocketAddress().GetAddress(), hs.GetAddress().GetSocketAddress().GetPortValue())
		if got, want := hs.GetHealthStatus().GetFailedOutlierCheck(), addr == bad; got != want {
			t.Errorf("json %s failed_outlier_check = %v, want %v", addr, got, want)
		}
	}

	// Not yet after 29 s: a sweep that saw a request made after the
	// advance has run, and the host is still out.
	clock.advance(29 * time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		hostByAddr(c, good).RecordResult(200)
		if sr, _ := hostByAddr(c, good).successRates(); sr != 100 {
			return fmt.Errorf("success rate of %s = %v, want 100 after a sweep", good, sr)
		}
		return nil
	})
	if h.HealthFlags() != FailedOutlierCheck {
		t.Fatalf("returned before base_ejection_time: %v", h.HealthFlags())
	}
	// The published rate shows in /clusters, as fmt's {} prints a double
	// in text and as a Percent in JSON (absent while unknown). A later
	// sweep may reset it to -1, so both are read until they agree.
	testutil.Eventually(t, 5*time.Second, func() error {
		hostByAddr(c, good).RecordResult(200)
		var text bytes.Buffer
		if err := m.WriteClusters(&text); err != nil {
			return err
		}
		if !strings.Contains(text.String(), "od::"+good+"::success_rate::100\n") {
			return fmt.Errorf("/clusters text lacks success_rate 100 for %s", good)
		}
		for _, hs := range m.ClustersProto().GetClusterStatuses()[0].GetHostStatuses() {
			addr := fmt.Sprintf("%s:%d", hs.GetAddress().GetSocketAddress().GetAddress(), hs.GetAddress().GetSocketAddress().GetPortValue())
			switch {
			case addr == good && hs.GetSuccessRate().GetValue() != 100:
				return fmt.Errorf("json %s success_rate = %v, want 100", addr, hs.GetSuccessRate())
			case addr == bad && hs.GetSuccessRate() != nil:
				return fmt.Errorf("json %s success_rate = %v, want none", addr, hs.GetSuccessRate())
			}
		}
		return nil
	})
	clock.advance(time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		if h.HealthFlags() != 0 {
			return fmt.Errorf("flags = %v", h.HealthFlags())
		}
		if p := picks(c, 10); p[bad] == 0 {
			return fmt.Errorf("picks = %v, returned host not picked", p)
		}
		return nil
	})
	if got := st.Gauge("cluster.od.outlier_detection.ejections_active").Value(); got != 0 {
		t.Errorf("ejections_active after return = %d, want 0", got)
	}
	if got := st.Gauge("cluster.od.membership_healthy").Value(); got != 2 {
		t.Errorf("membership_healthy after return = %d, want 2", got)
	}
}

// TestOutlierHealthCheckUneject: an ejected host whose active health check
// passes returns at once, unless successful_active_health_check_uneject_host
// is false.
func TestOutlierHealthCheckUneject(t *testing.T) {
	tests := []struct {
		name     string
		extra    string
		wantBack bool
	}{
		{name: "default", wantBack: true},
		{name: "disabled", extra: ", successful_active_health_check_uneject_host: false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := statusBackend(t)
			b, _ := statusBackend(t)
			m, st := newTestManager(t)
			y := strings.Replace(hcCluster("odhc", fastHC, a, b), "  health_checks:",
				"  outlier_detection: {consecutive_5xx: 2, max_ejection_percent: 50"+tc.extra+"}\n  health_checks:", 1)
			if err := m.Apply(context.Background(), parseClusters(t, y), prefix); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			c := m.Cluster("odhc")
			h := hostByAddr(c, b)
			h.RecordResult(500)
			h.RecordResult(500)
			checks := st.Counter("cluster.odhc.health_check.success").Value()
			if got := st.Counter("cluster.odhc.outlier_detection.ejections_enforced_total").Value(); got != 1 {
				t.Fatalf("ejections_enforced_total = %d, want 1", got)
			}
			if !tc.wantBack && h.HealthFlags() != FailedOutlierCheck {
				t.Fatalf("flags = %v, want /failed_outlier_check", h.HealthFlags())
			}
			testutil.Eventually(t, 5*time.Second, func() error {
				// Two more passing checks of each host ran after the ejection.
				if got := st.Counter("cluster.odhc.health_check.success").Value(); got < checks+4 {
					return fmt.Errorf("health_check.success = %d, want > %d", got, checks+4)
				}
				if back := h.HealthFlags() == 0; back != tc.wantBack {
					return fmt.Errorf("flags = %v, want back = %v", h.HealthFlags(), tc.wantBack)
				}
				return nil
			})
			if got, want := st.Gauge("cluster.odhc.outlier_detection.ejections_active").Value(), map[bool]int64{true: 0, false: 1}[tc.wantBack]; got != want {
				t.Errorf("ejections_active = %d, want %d", got, want)
			}
		})
	}
}
