package upstream

import (
	"context"
	"testing"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// TestSetHostsEDSHealth: SetHosts (what EDS uses) replaces membership like
// Success without counting update_success, and the endpoint's health
// status sets and clears /failed_eds_health on the same Host.
func TestSetHostsEDSHealth(t *testing.T) {
	m, st := newTestManager(t)
	if err := m.Apply(context.Background(), parseClusters(t, staticCluster("a", "10.0.0.1", "10.0.0.2")), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	ms, ok := updaterFor("a").(clustertype.MembershipSetter)
	if !ok {
		t.Fatal("the cluster's updater does not implement clustertype.MembershipSetter")
	}
	successBefore := st.Counter("cluster.a.update_success").Value()
	h1, h2 := hostAP("10.0.0.1:8080"), hostAP("10.0.0.2:8080")

	steps := []struct {
		name        string
		specs       []clustertype.HostSpec
		wantFlags   []HealthFlags
		wantHealthy int
	}{
		{name: "one unhealthy", specs: []clustertype.HostSpec{{Addr: h1, Weight: 1}, {Addr: h2, Weight: 1, Unhealthy: true}},
			wantFlags: []HealthFlags{0, FailedEDSHealth}, wantHealthy: 1},
		{name: "healthy again", specs: []clustertype.HostSpec{{Addr: h1, Weight: 1}, {Addr: h2, Weight: 1}},
			wantFlags: []HealthFlags{0, 0}, wantHealthy: 2},
	}
	var first *Host
	for _, s := range steps {
		ms.SetHosts(s.specs)
		hs := c.HostSet()
		if first == nil {
			first = hs.Hosts[1]
		} else if hs.Hosts[1] != first {
			t.Errorf("%s: the host was replaced; a health change must keep it (and its pools)", s.name)
		}
		for i, want := range s.wantFlags {
			if got := hs.Hosts[i].HealthFlags(); got != want {
				t.Errorf("%s: host %d flags = %v, want %v", s.name, i, got, want)
			}
		}
		if hs.Healthy != s.wantHealthy {
			t.Errorf("%s: healthy = %d, want %d", s.name, hs.Healthy, s.wantHealthy)
		}
	}
	if got := st.Counter("cluster.a.update_success").Value(); got != successBefore {
		t.Errorf("update_success went %d → %d; SetHosts must not count it", successBefore, got)
	}
}
