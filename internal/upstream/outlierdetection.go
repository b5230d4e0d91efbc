package upstream

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/healthcheck"
	"github.com/herald-proxy/herald/internal/upstream/outlier"
)

// The cluster's side of outlier detection
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier):
// the detector is built with the cluster, given a monitor per host as
// membership changes, started and stopped with the cluster, and rebuilds
// the host set when it ejects or returns a host.

// parseOutlierDetection interprets outlier_detection.
func (c *Cluster) parseOutlierDetection(cfg *clusterv3.Cluster, path string) configerr.List {
	od := cfg.GetOutlierDetection()
	if od == nil {
		return nil
	}
	oc, errs := outlier.Build(od, path+".outlier_detection")
	c.odConfig = oc
	return errs
}

// buildOutlierDetector creates the detector and its
// cluster.<name>.outlier_detection.* stats; it starts nothing.
func (c *Cluster) buildOutlierDetector(store *stats.Store) {
	if c.odConfig == nil {
		return
	}
	c.od = outlier.New(outlier.Options{
		Cluster:  c.name,
		Config:   c.odConfig,
		Stats:    outlier.NewStats(store.Scope("cluster." + c.observabilityName + ".outlier_detection.")),
		Now:      c.now,
		Rand:     c.rand,
		OnChange: c.rebuildHostSet,
	})
}

// outlierSetHosts hands the detector the new membership; c.mu is held.
func (c *Cluster) outlierSetHosts(hosts []*Host) {
	if c.od == nil {
		return
	}
	ms := make([]*outlier.Monitor, len(hosts))
	for i, h := range hosts {
		ms[i] = h.od
	}
	c.od.SetHosts(ms)
}

// attachOutlierMonitor gives a new host its monitor.
func (c *Cluster) attachOutlierMonitor(h *Host) {
	if c.od != nil {
		h.od = c.od.NewMonitor((*odTarget)(h))
	}
}

// outlierHealthChecked is the health checker's OnCheck: Envoy un-ejects an
// ejected host whose active health check passes and that is not failing
// active health checking (successful_active_health_check_uneject_host).
func (c *Cluster) outlierHealthChecked(t healthcheck.Target, passed bool) {
	if c.od == nil || !passed {
		return
	}
	h := (*Host)(t.(*hcTarget))
	if h.HealthFlags()&FailedActiveHC == 0 && h.od.Ejected() {
		c.od.HealthCheckPassed(h.od)
	}
}

// odTarget is how the outlier detector sees a host: its flag is the
// /failed_outlier_check bit of Host.health.
type odTarget Host

var _ outlier.Host = (*odTarget)(nil)

// Address implements outlier.Host.
func (t *odTarget) Address() string { return (*Host)(t).Address() }

// SetEjected implements outlier.Host; the other flags are kept.
func (t *odTarget) SetEjected(ejected bool) {
	for {
		old := t.health.Load()
		next := old &^ uint32(FailedOutlierCheck)
		if ejected {
			next |= uint32(FailedOutlierCheck)
		}
		if t.health.CompareAndSwap(old, next) {
			return
		}
	}
}

// OutlierDetected reports whether the cluster runs outlier detection.
func (c *Cluster) OutlierDetected() bool { return c.od != nil }
