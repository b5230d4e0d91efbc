// Package clustertype is what a cluster type (service discovery) implements
// and how it registers, plus the helpers the built-in types share
// (load_assignment endpoints, DNS refresh). A cluster type turns a cluster's
// config into a Discovery; the cluster manager starts it after a config
// swap, and it reports membership through an Updater until its context ends.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery
//
// Types register under their Envoy factory name ("envoy.cluster.static"),
// under the legacy Cluster.type enum values they serve, and under the type
// URL of their cluster_type typed_config when they have one. Unlike other
// extension kinds the config message is optional (STATIC, STRICT_DNS and
// LOGICAL_DNS have none), so this package keeps its own index instead of
// registry.Registry, with the same rules: duplicates panic.
//
// It imports internal/xds for the client EDS subscribes with. It must not
// import extensions/, internal/upstream nor net/http.
package clustertype

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/xds"
)

// HostSpec is one member reported by discovery.
type HostSpec struct {
	// Key identifies the host across updates: a host with the same key keeps
	// its stats and pooled connections. Empty means Addr.String().
	// LOGICAL_DNS uses "hostname:port" so its one host survives address
	// changes.
	Key string
	// Addr is where connections go.
	Addr netip.AddrPort
	// Hostname is the DNS name the host was resolved from ("" for STATIC
	// unless the endpoint sets hostname), shown by admin /clusters.
	Hostname string
	// Weight is the endpoint's load_balancing_weight (default 1).
	Weight uint32
	// HashKey is the endpoint metadata's envoy.lb hash_key, or "".
	HashKey string
	// Unhealthy says the control plane reports the endpoint unhealthy (EDS
	// health_status UNHEALTHY, DRAINING or TIMEOUT): the host carries
	// /failed_eds_health and takes no traffic outside panic mode.
	Unhealthy bool
	// Placement is where the endpoint's LocalityLbEndpoints put it:
	// priority, locality and the assignment's policy.
	Placement
}

// Locality is core.v3.Locality: where a host runs.
type Locality struct {
	Region, Zone, SubZone string
}

// Placement is what a host inherits from its LocalityLbEndpoints and the
// ClusterLoadAssignment's policy. The zero value is priority 0, the empty
// locality, no locality weight and the default overprovisioning factor.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/endpoint/v3/endpoint_components.proto#config-endpoint-v3-localitylbendpoints
type Placement struct {
	// Priority is LocalityLbEndpoints.priority (0 is the highest).
	Priority uint32
	// Locality is LocalityLbEndpoints.locality.
	Locality Locality
	// LocalityWeight is LocalityLbEndpoints.load_balancing_weight; 0 when
	// unset. It counts only with locality weighted load balancing, where
	// a locality of weight 0 takes no traffic.
	LocalityWeight uint32
	// OverprovisioningFactor is the assignment's
	// policy.overprovisioning_factor in percent; 0 means Envoy's default
	// 140. The same on every host of one assignment.
	OverprovisioningFactor uint32
	// WeightedPriorityHealth is the assignment's
	// policy.weighted_priority_health: a priority's health counts host
	// weights instead of hosts.
	WeightedPriorityHealth bool
}

// Updater receives what discovery finds. Its methods are safe to call from
// any goroutine.
type Updater interface {
	// Attempt counts one refresh attempt (update_attempt).
	Attempt()
	// Success counts a successful refresh (update_success) and replaces the
	// cluster's whole membership with hosts; it counts membership_change or
	// update_no_rebuild.
	Success(hosts []HostSpec)
	// Failure counts a failed refresh (update_failure); the hosts stay.
	Failure(err error)
	// Ready says initial discovery is done (every target tried once), which
	// ends the cluster's warming. Later calls do nothing.
	Ready()
}

// MembershipSetter is implemented by the Updater the cluster manager hands
// to Start. SetHosts replaces membership as Success does but counts no
// update_success: for discovery whose xDS subscription counts its own
// update_* stats under the cluster's scope (EDS, as Envoy's EdsClusterImpl).
type MembershipSetter interface {
	SetHosts(hosts []HostSpec)
}

// Discovery is a built cluster type.
type Discovery interface {
	// Start begins discovery. A type with fixed hosts reports them and calls
	// Ready before returning; one with workers starts them and returns at
	// once. Workers stop when ctx is done. Start is called once.
	Start(ctx context.Context, u Updater)
}

// Resolver looks names up; *net.Resolver implements it. network is "ip",
// "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// BuildContext is what a cluster type may use when it is built.
type BuildContext struct {
	// Path is the YAML path of the cluster ("static_resources.clusters[2]").
	Path string
	// Resolver is the DNS resolver for DNS types.
	Resolver Resolver
	// Rand returns random numbers (DNS jitter); tests make it deterministic.
	Rand func() uint64
	// XDS is the server's xDS client, for types that subscribe to their
	// hosts (EDS); nil when the cluster manager has none.
	XDS *xds.Client
	// Stats is the cluster's stats scope ("cluster.<alt_stat_name or
	// name>."), where an xDS subscription counts its update_* stats.
	Stats stats.Scope
}

// Extension is one cluster type.
type Extension struct {
	// Name is the Envoy factory name, e.g. "envoy.cluster.strict_dns".
	Name string
	// Types are the legacy Cluster.type values this extension serves.
	Types []clusterv3.Cluster_DiscoveryType
	// Config, when set, is the empty cluster_type typed_config message.
	Config proto.Message
	// Build interprets the cluster once per snapshot. cfg is the unpacked
	// cluster_type typed_config, or nil for the legacy type enum. Build must
	// not start goroutines or do I/O.
	Build func(c *clusterv3.Cluster, cfg proto.Message, ctx BuildContext) (Discovery, error)
}

var (
	mu     sync.RWMutex
	byName = map[string]*Extension{}
	byType = map[clusterv3.Cluster_DiscoveryType]*Extension{}
	byURL  = map[string]*Extension{}
)

// Register adds a cluster type; call it from the extension's init. It panics
// on a missing name or Build and on duplicates.
func Register(e Extension) {
	if e.Name == "" || e.Build == nil {
		panic(fmt.Sprintf("clustertype: %q registered without a name or Build", e.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	ext := &e
	if _, dup := byName[e.Name]; dup {
		panic(fmt.Sprintf("clustertype: %q registered twice", e.Name))
	}
	byName[e.Name] = ext
	for _, t := range e.Types {
		if _, dup := byType[t]; dup {
			panic(fmt.Sprintf("clustertype: type %s registered twice", t))
		}
		byType[t] = ext
	}
	if e.Config != nil {
		url := registry.TypeURL(e.Config)
		if _, dup := byURL[url]; dup {
			panic(fmt.Sprintf("clustertype: config %q registered twice", url))
		}
		byURL[url] = ext
	}
}

// ByName returns the type registered under an Envoy factory name.
func ByName(name string) (*Extension, bool) {
	mu.RLock()
	defer mu.RUnlock()
	e, ok := byName[name]
	return e, ok
}

// ByType returns the type serving a legacy Cluster.type value.
func ByType(t clusterv3.Cluster_DiscoveryType) (*Extension, bool) {
	mu.RLock()
	defer mu.RUnlock()
	e, ok := byType[t]
	return e, ok
}

// ByTypeURL returns the type whose cluster_type typed_config has this URL.
func ByTypeURL(url string) (*Extension, bool) {
	mu.RLock()
	defer mu.RUnlock()
	e, ok := byURL[url]
	return e, ok
}

// Names returns the registered factory names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(byName))
	for n := range byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
