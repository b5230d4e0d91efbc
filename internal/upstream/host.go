package upstream

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/healthcheck"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
	"github.com/herald-proxy/herald/internal/upstream/outlier"
)

// HealthFlags are the reasons a host is not healthy (Envoy's
// Host::HealthFlag). Zero is healthy. Only the flags herald can set are
// defined.
type HealthFlags uint32

const (
	// FailedActiveHC: failed active health checking (/failed_active_hc).
	// With health_checks configured, every new host starts with it until
	// its first check passes.
	FailedActiveHC HealthFlags = 1 << iota
	// FailedOutlierCheck: ejected by outlier detection (/failed_outlier_check).
	FailedOutlierCheck
	// FailedEDSHealth: the endpoint's health_status says unhealthy (/failed_eds_health).
	FailedEDSHealth
	// ExcludedViaImmediateHCFail: the host answered with
	// x-envoy-immediate-health-check-fail (/excluded_via_immediate_hc_fail).
	ExcludedViaImmediateHCFail
	// ActiveHCTimeout: the host is failed and its last check timed out
	// (/active_hc_timeout).
	ActiveHCTimeout
)

// activeHCFlags are the bits active health checking owns.
const activeHCFlags = FailedActiveHC | ExcludedViaImmediateHCFail | ActiveHCTimeout

// healthFlagNames are the flags in Envoy's HEALTH_FLAG_ENUM_VALUES order.
var healthFlagNames = []struct {
	f    HealthFlags
	name string
}{
	{FailedActiveHC, "/failed_active_hc"},
	{FailedOutlierCheck, "/failed_outlier_check"},
	{FailedEDSHealth, "/failed_eds_health"},
	{ExcludedViaImmediateHCFail, "/excluded_via_immediate_hc_fail"},
	{ActiveHCTimeout, "/active_hc_timeout"},
}

// String formats flags as Envoy's HostUtility::healthFlagsToString:
// "healthy", or the set flags' names concatenated in Envoy's order, e.g.
// "/failed_active_hc/active_hc_timeout".
func (f HealthFlags) String() string {
	if f == 0 {
		return "healthy"
	}
	s := ""
	for _, n := range healthFlagNames {
		if f&n.f != 0 {
			s += n.name
		}
	}
	return s
}

type hostAddr struct {
	ap netip.AddrPort
	s  string
}

// Host is one upstream endpoint of a cluster. A host outlives membership
// updates that keep its key, so its stats and pooled connections carry over.
type Host struct {
	// Immutable after creation:
	key      string
	hostname string
	hashKey  string // endpoint metadata envoy.lb hash_key
	cluster  *Cluster

	// Updated by the cluster's discovery (under Cluster.mu), read anywhere:
	addr   atomic.Pointer[hostAddr]
	weight atomic.Uint32
	health atomic.Uint32

	// Stats are the per-host stats shown by admin /clusters.
	Stats HostStats

	idle IdlePool
	// pools are the host's HTTP/2 and HTTP/3 clients (pools.go).
	pools muxPools

	// od is the host's outlier detection monitor; nil without
	// outlier_detection. Immutable after creation.
	od *outlier.Monitor

	// Priority, locality and slow start state (priority.go): placement is
	// updated by discovery under Cluster.mu and read anywhere;
	// healthySince is stamped by host set builds (under Cluster.mu) and
	// read by pickers; lbFlags (the flags the last build saw) is owned
	// by Cluster.mu.
	placement    atomic.Pointer[clustertype.Placement]
	healthySince atomic.Pointer[time.Time]
	lbFlags      HealthFlags
}

var _ lbpolicy.Host = (*Host)(nil)

// Address returns "ip:port" ("[ip6]:port" for IPv6), the string Envoy's
// %UPSTREAM_HOST% prints. It does not allocate.
func (h *Host) Address() string { return h.addr.Load().s }

// AddrPort returns the address connections go to. For a LOGICAL_DNS host it
// is the latest resolved address.
func (h *Host) AddrPort() netip.AddrPort { return h.addr.Load().ap }

// Hostname returns the DNS name the host came from, or the endpoint's
// hostname, or "".
func (h *Host) Hostname() string { return h.hostname }

// LBHashKey is the endpoint metadata's envoy.lb hash_key, or "": hashing
// load balancers place the host by it when set (lbpolicy.HashKey).
func (h *Host) LBHashKey() string { return h.hashKey }

// Weight implements lbpolicy.Host: the endpoint's load_balancing_weight.
func (h *Host) Weight() uint32 { return h.weight.Load() }

// ActiveRequests implements lbpolicy.Host.
func (h *Host) ActiveRequests() int64 { return h.Stats.RqActive.Load() }

// HealthFlags returns why the host is unhealthy; zero when healthy.
func (h *Host) HealthFlags() HealthFlags { return HealthFlags(h.health.Load()) }

// Healthy reports whether the host may receive traffic outside panic mode.
func (h *Host) Healthy() bool { return h.health.Load() == 0 }

// Idle returns the host's pool of idle exclusive connections (HTTP/1.1).
func (h *Host) Idle() *IdlePool { return &h.idle }

// Cluster returns the cluster the host belongs to.
func (h *Host) Cluster() *Cluster { return h.cluster }

// ImmediateHealthCheckFail is what the router calls when an upstream
// response carries x-envoy-immediate-health-check-fail: if the host's
// cluster runs active health checks, the host is marked
// /failed_active_hc and /excluded_via_immediate_hc_fail at once and leaves
// the rotation until a check passes; otherwise it does nothing (Envoy:
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/health_checking#active-health-checking-fast-failure).
func (h *Host) ImmediateHealthCheckFail() {
	if hc := h.cluster.hc; hc != nil {
		hc.ImmediateFail((*hcTarget)(h))
	}
}

// LocalOriginResult is a connection-level outcome of a request to a host,
// reported to outlier detection (Envoy's Upstream::Outlier::Result).
type LocalOriginResult = outlier.Result

// The local-origin results the router reports
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier).
const (
	// LocalOriginConnectSuccess: a connection (new or pooled) is ready for
	// the request (Envoy: UpstreamRequest::onPoolReady).
	LocalOriginConnectSuccess = outlier.LocalOriginConnectSuccess
	// LocalOriginConnectFailed: connecting failed, or the upstream stream
	// was reset (Envoy: Filter::onUpstreamReset, except circuit breaker
	// overflow).
	LocalOriginConnectFailed = outlier.LocalOriginConnectFailed
	// LocalOriginTimeout: the route or per-try timeout fired while waiting
	// for the response headers.
	LocalOriginTimeout = outlier.LocalOriginTimeout
)

// RecordResult reports the status code of an upstream response (final
// headers, not 1xx) to outlier detection, as Envoy's router does after
// each attempt's headers (putHttpResponseCode). Without
// outlier_detection it returns at once; otherwise a success costs two
// atomic adds and two loads, no lock.
func (h *Host) RecordResult(code int) {
	if h.od != nil {
		h.od.PutHTTPResponseCode(code)
	}
}

// RecordLocalOrigin reports a connection-level outcome to outlier
// detection. Without split_external_local_origin_errors a failure counts
// as a 503 (LocalOriginConnectFailed) or 504 (LocalOriginTimeout) response
// and LocalOriginConnectSuccess counts nothing; with it they feed the
// consecutive local origin failure run and local-origin success rate.
func (h *Host) RecordLocalOrigin(r LocalOriginResult) {
	if h.od != nil {
		h.od.PutResult(r)
	}
}

// hcTarget is how the health checker sees a host: its flags are the active
// health checking bits of Host.health.
type hcTarget Host

var _ healthcheck.Target = (*hcTarget)(nil)

// Address implements healthcheck.Target.
func (t *hcTarget) Address() string { return (*Host)(t).Address() }

// ActiveHealth implements healthcheck.Target.
func (t *hcTarget) ActiveHealth() healthcheck.Flags {
	f := HealthFlags(t.health.Load())
	var out healthcheck.Flags
	if f&FailedActiveHC != 0 {
		out |= healthcheck.FailedActiveHC
	}
	if f&ActiveHCTimeout != 0 {
		out |= healthcheck.ActiveHCTimeout
	}
	if f&ExcludedViaImmediateHCFail != 0 {
		out |= healthcheck.ExcludedViaImmediateHCFail
	}
	return out
}

// SetActiveHealth implements healthcheck.Target; the other flags are kept.
func (t *hcTarget) SetActiveHealth(hf healthcheck.Flags) {
	var set HealthFlags
	if hf&healthcheck.FailedActiveHC != 0 {
		set |= FailedActiveHC
	}
	if hf&healthcheck.ActiveHCTimeout != 0 {
		set |= ActiveHCTimeout
	}
	if hf&healthcheck.ExcludedViaImmediateHCFail != 0 {
		set |= ExcludedViaImmediateHCFail
	}
	for {
		old := t.health.Load()
		next := old&^uint32(activeHCFlags) | uint32(set)
		if t.health.CompareAndSwap(old, next) {
			return
		}
	}
}

// setEDSHealth sets or clears /failed_eds_health, keeping the other flags;
// it reports whether the flag changed.
func (h *Host) setEDSHealth(unhealthy bool) bool {
	for {
		old := h.health.Load()
		next := old &^ uint32(FailedEDSHealth)
		if unhealthy {
			next |= uint32(FailedEDSHealth)
		}
		if old == next {
			return false
		}
		if h.health.CompareAndSwap(old, next) {
			return true
		}
	}
}

func (h *Host) setAddr(ap netip.AddrPort) {
	if cur := h.addr.Load(); cur != nil && cur.ap == ap {
		return
	}
	h.addr.Store(&hostAddr{ap: ap, s: ap.String()})
}

// HealthChecked reports whether the cluster runs active health checks.
func (c *Cluster) HealthChecked() bool { return c.hc != nil }
