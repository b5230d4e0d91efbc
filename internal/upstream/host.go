package upstream

import (
	"net/netip"
	"sync/atomic"

	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// HealthFlags are the reasons a host is not healthy (Envoy's
// Host::HealthFlag). Zero is healthy. Only the flags herald can set are
// defined; active health checking and outlier detection (issue #4) will add
// theirs.
type HealthFlags uint32

const (
	// FailedActiveHC: failed active health checking (/failed_active_hc).
	FailedActiveHC HealthFlags = 1 << iota
	// FailedOutlierCheck: ejected by outlier detection (/failed_outlier_check).
	FailedOutlierCheck
	// FailedEDSHealth: the endpoint's health_status says unhealthy (/failed_eds_health).
	FailedEDSHealth
)

// String formats flags as Envoy's HostUtility::healthFlagsToString:
// "healthy", or the failed flags joined by "|", each with a leading "/".
func (f HealthFlags) String() string {
	if f == 0 {
		return "healthy"
	}
	s := ""
	add := func(name string) {
		if s != "" {
			s += "|"
		}
		s += name
	}
	if f&FailedActiveHC != 0 {
		add("/failed_active_hc")
	}
	if f&FailedOutlierCheck != 0 {
		add("/failed_outlier_check")
	}
	if f&FailedEDSHealth != 0 {
		add("/failed_eds_health")
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
	cluster  *Cluster

	// Updated by the cluster's discovery (under Cluster.mu), read anywhere:
	addr   atomic.Pointer[hostAddr]
	weight atomic.Uint32
	health atomic.Uint32

	// Stats are the per-host stats shown by admin /clusters.
	Stats HostStats

	idle IdlePool
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

func (h *Host) setAddr(ap netip.AddrPort) {
	if cur := h.addr.Load(); cur != nil && cur.ap == ap {
		return
	}
	h.addr.Store(&hostAddr{ap: ap, s: ap.String()})
}
