package lbpolicy

// Addressed is what hashing policies (ring_hash, maglev) need of a host
// besides Host: the key that places it on the ring or table. The cluster's
// host type implements it; a Host without it hashes as "".
type Addressed interface {
	// Address is "ip:port" ("[ip6]:port" for IPv6), Envoy's
	// Address::Instance::asString().
	Address() string
	// Hostname is the endpoint's hostname, or "".
	Hostname() string
}

// MetadataKeyed is implemented by hosts whose endpoint metadata may carry
// Envoy's envoy.lb hash_key.
type MetadataKeyed interface {
	// LBHashKey is the envoy.lb hash_key, or "".
	LBHashKey() string
}

// HashKey is the string Envoy hashes to place a host: the endpoint
// metadata's envoy.lb hash_key when set, else its hostname when useHostname
// (consistent_hashing_lb_config.use_hostname_for_hashing), else its address.
// Envoy: ThreadAwareLoadBalancerBase::HashingLoadBalancer::hashKey
// (source/extensions/load_balancing_policies/common/thread_aware_lb_impl.h).
func HashKey(h Host, useHostname bool) string {
	if m, ok := h.(MetadataKeyed); ok {
		if k := m.LBHashKey(); k != "" {
			return k
		}
	}
	a, ok := h.(Addressed)
	if !ok {
		return ""
	}
	if useHostname {
		return a.Hostname()
	}
	return a.Address()
}

// HashingPolicy is implemented by policies that read Context.Hash
// (ring_hash, maglev). Envoy computes a request's hash only when such a
// load balancer asks for it (LoadBalancerContext::computeHashKey), so the
// router evaluates the route's hash_policy, and generates hash cookies,
// only for clusters whose policy is one.
type HashingPolicy interface {
	Policy
	// UsesHash reports true.
	UsesHash() bool
}
