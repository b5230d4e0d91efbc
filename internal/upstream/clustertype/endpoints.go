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

// Endpoints checks c.load_assignment and returns its endpoints in order.
// herald supports priority 0 only and no locality weights for now; other
// priorities, locality weights, non-TCP addresses, named ports and endpoint
// health statuses other than UNKNOWN/HEALTHY are errors naming the field.
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
	if la.GetPolicy() != nil {
		errs = append(errs, configerr.CheckFields(la.GetPolicy(), lap+".policy", "overprovisioning_factor")...)
	}
	var out []Endpoint
	for i, loc := range la.GetEndpoints() {
		lp := fmt.Sprintf("%s.endpoints[%d]", lap, i)
		// Priorities and locality weights shape which hosts a request may
		// reach; accepting them without honouring them would send traffic
		// where the config says it must not go.
		if loc.GetPriority() != 0 {
			errs = append(errs, configerr.At(lp+".priority", "priority %d is %s (only priority 0)", loc.GetPriority(), configerr.NotSupported))
		}
		if loc.GetLedsClusterLocalityConfig() != nil {
			errs = append(errs, configerr.At(lp+".leds_cluster_locality_config", "LEDS is %s (#7)", configerr.NotSupported))
		}
		errs = append(errs, configerr.CheckFields(loc, lp, "locality", "lb_endpoints", "priority", "metadata", "leds_cluster_locality_config")...)
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
			})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
