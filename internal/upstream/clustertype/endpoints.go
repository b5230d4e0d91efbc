package clustertype

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Endpoint is one lb_endpoint of a cluster's load_assignment, checked.
type Endpoint struct {
	// Address is the socket_address.address: an IP for STATIC, a name or IP
	// for the DNS types.
	Address string
	// Port is socket_address.port_value.
	Port uint16
	// Weight is load_balancing_weight, default 1.
	Weight uint32
	// Hostname is endpoint.hostname ("" when unset).
	Hostname string
	// Path is the YAML path of the endpoint's socket_address, for errors.
	Path string
	// Unhealthy: EDS health_status UNHEALTHY, DRAINING or TIMEOUT.
	Unhealthy bool
	// HashKey is the endpoint metadata's envoy.lb hash_key ("" when unset):
	// ring_hash and maglev place the host by it instead of its address.
	HashKey string
	// Placement is the endpoint's priority, locality and assignment policy.
	Placement Placement
}

// lbMetadataHashKey reads filter_metadata["envoy.lb"].hash_key, Envoy's
// per-endpoint override of the key hashing load balancers place a host by
// (Config::MetadataEnvoyLbKeys::HASH_KEY). Envoy ignores a non-string value
// with a debug log; herald refuses it, so the mistake is seen.
func lbMetadataHashKey(md *corev3.Metadata, path string) (string, *configerr.FieldError) {
	lb := md.GetFilterMetadata()["envoy.lb"]
	if lb == nil {
		return "", nil
	}
	v, ok := lb.GetFields()["hash_key"]
	if !ok {
		return "", nil
	}
	sv, isString := v.GetKind().(*structpb.Value_StringValue)
	if !isString {
		return "", configerr.At(path+".metadata.filter_metadata[envoy.lb].hash_key", "hash_key must be a string")
	}
	return sv.StringValue, nil
}

// MaxPriority bounds LocalityLbEndpoints.priority. Envoy has no limit
// (it keeps a host set per priority up to the highest); herald keeps the
// same bound a config can reasonably need so a typo cannot make it build
// millions of empty levels.
const MaxPriority = 127

// zeroOverprovisioning stands for an explicit overprovisioning_factor of
// 0 in Placement, whose zero value means the default.
const zeroOverprovisioning = ^uint32(0)

// Overprovisioning returns the factor in percent: Envoy's default 140
// when unset, 0 when set to 0.
func (p Placement) Overprovisioning() uint32 {
	switch p.OverprovisioningFactor {
	case 0:
		return DefaultOverprovisioningFactor
	case zeroOverprovisioning:
		return 0
	}
	return p.OverprovisioningFactor
}

// DefaultOverprovisioningFactor is Envoy's ClusterLoadAssignment.Policy
// overprovisioning_factor default: 140, i.e. 1.4
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/overprovisioning).
const DefaultOverprovisioningFactor = 140

// Endpoints checks c.load_assignment and returns its endpoints in order.
// Each endpoint carries its LocalityLbEndpoints' priority, locality and
// locality weight (Placement). Non-TCP addresses, named ports, LEDS and
// endpoint health statuses other than UNKNOWN/HEALTHY are errors naming
// the field.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/endpoint/v3/endpoint.proto
func Endpoints(c *clusterv3.Cluster, path string) ([]Endpoint, error) {
	la := c.GetLoadAssignment()
	if la == nil {
		return nil, nil
	}
	return assignment(la, path+".load_assignment", false)
}

// AssignmentEndpoints checks a ClusterLoadAssignment delivered by EDS (path
// names it, e.g. `cluster_load_assignment "backend"`) with the rules of
// Endpoints, except that health_status may also be UNHEALTHY, DRAINING or
// TIMEOUT (Envoy treats the three as unhealthy: Endpoint.Unhealthy).
// DEGRADED is an error: herald has no degraded tier.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto#enum-config-core-v3-healthstatus
func AssignmentEndpoints(la *endpointv3.ClusterLoadAssignment, path string) ([]Endpoint, error) {
	return assignment(la, path, true)
}

func assignment(la *endpointv3.ClusterLoadAssignment, lap string, eds bool) ([]Endpoint, error) {
	errs := configerr.CheckFields(la, lap, "cluster_name", "endpoints", "policy")
	var base Placement
	if pol := la.GetPolicy(); pol != nil {
		errs = append(errs, configerr.CheckFields(pol, lap+".policy", "overprovisioning_factor", "weighted_priority_health")...)
		if f := pol.GetOverprovisioningFactor(); f != nil {
			// Envoy: "Default value is 140 (1.4)"; 0 is a legal value that
			// gives every priority zero health (all traffic in panic).
			base.OverprovisioningFactor = f.GetValue()
			if f.GetValue() == 0 {
				base.OverprovisioningFactor = zeroOverprovisioning
			}
		}
		base.WeightedPriorityHealth = pol.GetWeightedPriorityHealth()
	}
	var out []Endpoint
	for i, loc := range la.GetEndpoints() {
		lp := fmt.Sprintf("%s.endpoints[%d]", lap, i)
		pl := base
		pl.Priority = loc.GetPriority()
		pl.Locality = Locality{Region: loc.GetLocality().GetRegion(), Zone: loc.GetLocality().GetZone(), SubZone: loc.GetLocality().GetSubZone()}
		if w := loc.GetLoadBalancingWeight(); w != nil {
			pl.LocalityWeight = w.GetValue()
		}
		if loc.GetPriority() > MaxPriority {
			errs = append(errs, configerr.At(lp+".priority", "priority %d is above herald's limit %d", loc.GetPriority(), MaxPriority))
		}
		if loc.GetLoadBalancingWeight() != nil && loc.GetLoadBalancingWeight().GetValue() == 0 {
			errs = append(errs, configerr.At(lp+".load_balancing_weight", "weight must be at least 1"))
		}
		if loc.GetLedsClusterLocalityConfig() != nil {
			errs = append(errs, configerr.At(lp+".leds_cluster_locality_config", "LEDS is %s (#7)", configerr.NotSupported))
		}
		errs = append(errs, configerr.CheckFields(loc, lp, "locality", "lb_endpoints", "priority", "load_balancing_weight", "metadata", "leds_cluster_locality_config")...)
		errs = append(errs, configerr.CheckFields(loc.GetLocality(), lp+".locality", "region", "zone", "sub_zone")...)
		for j, lbe := range loc.GetLbEndpoints() {
			ep := fmt.Sprintf("%s.lb_endpoints[%d]", lp, j)
			errs = append(errs, configerr.CheckFields(lbe, ep, "endpoint", "load_balancing_weight", "health_status", "metadata")...)
			unhealthy := false
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				if eds {
					unhealthy = true
					break
				}
				errs = append(errs, configerr.At(ep+".health_status", "health_status %s is %s", lbe.GetHealthStatus(), configerr.NotSupported))
			default:
				errs = append(errs, configerr.At(ep+".health_status", "health_status %s is %s", lbe.GetHealthStatus(), configerr.NotSupported))
			}
			e := lbe.GetEndpoint()
			if e == nil {
				errs = append(errs, configerr.At(ep+".endpoint", "endpoint is required"))
				continue
			}
			errs = append(errs, configerr.CheckFields(e, ep+".endpoint", "address", "hostname")...)
			sp := ep + ".endpoint.address.socket_address"
			sa := e.GetAddress().GetSocketAddress()
			if sa == nil {
				errs = append(errs, configerr.At(ep+".endpoint.address", "only socket_address is supported (pipe and internal addresses are %s)", configerr.NotSupported))
				continue
			}
			errs = append(errs, configerr.CheckFields(sa, sp, "protocol", "address", "port_value", "ipv4_compat")...)
			if sa.GetProtocol() != corev3.SocketAddress_TCP {
				errs = append(errs, configerr.At(sp+".protocol", "protocol %s is %s for clusters", sa.GetProtocol(), configerr.NotSupported))
			}
			if sa.GetAddress() == "" {
				errs = append(errs, configerr.At(sp+".address", "address is required"))
			}
			if _, named := sa.GetPortSpecifier().(*corev3.SocketAddress_NamedPort); named {
				errs = append(errs, configerr.At(sp+".named_port", configerr.NotSupported))
			}
			if sa.GetPortValue() > 65535 {
				errs = append(errs, configerr.At(sp+".port_value", "port %d out of range", sa.GetPortValue()))
			}
			w := uint32(1)
			if lbe.GetLoadBalancingWeight() != nil {
				w = lbe.GetLoadBalancingWeight().GetValue()
				if w == 0 {
					errs = append(errs, configerr.At(ep+".load_balancing_weight", "weight must be at least 1"))
				}
			}
			hashKey, herr := lbMetadataHashKey(lbe.GetMetadata(), ep)
			if herr != nil {
				errs = append(errs, herr)
			}
			out = append(out, Endpoint{
				HashKey:   hashKey,
				Address:   sa.GetAddress(),
				Port:      uint16(sa.GetPortValue()),
				Weight:    w,
				Hostname:  e.GetHostname(),
				Path:      sp,
				Unhealthy: unhealthy,
				Placement: pl,
			})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
