package upstream

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// buildDiscovery finds the cluster type: cluster_type (by typed_config type
// URL, else by name) or the legacy type enum (default STATIC).
func buildDiscovery(c *clusterv3.Cluster, path string, env buildEnv) (clustertype.Discovery, error) {
	bctx := clustertype.BuildContext{Path: path, Resolver: env.resolver, Rand: env.rand}
	if ct := c.GetClusterType(); ct != nil {
		p := path + ".cluster_type"
		var ext *clustertype.Extension
		var ok bool
		if tc := ct.GetTypedConfig(); tc != nil {
			ext, ok = clustertype.ByTypeURL(tc.GetTypeUrl())
		}
		if !ok {
			ext, ok = clustertype.ByName(ct.GetName())
		}
		if !ok {
			return nil, configerr.At(p, "cluster type %q is %s", ct.GetName(), configerr.NotSupported).
				WithHint("supported: %v", clustertype.Names())
		}
		var cfg proto.Message
		if ext.Config != nil {
			cfg = ext.Config.ProtoReflect().New().Interface()
			if tc := ct.GetTypedConfig(); tc != nil {
				if err := anypb.UnmarshalTo(tc, cfg, protoUnmarshal); err != nil {
					return nil, configerr.At(p+".typed_config", "%v", err)
				}
			}
		}
		return ext.Build(c, cfg, bctx)
	}
	ext, ok := clustertype.ByType(c.GetType())
	if !ok {
		return nil, configerr.At(path+".type", "type %s is %s", c.GetType(), configerr.NotSupported)
	}
	return ext.Build(c, nil, bctx)
}

// lbPolicyIssue is where the other policies are planned.
const lbPolicyIssue = "issue #4"

// buildPolicy resolves the load balancing policy. The legacy lb_policy enum
// is normalised to the typed extension first (STYLE.md §2): ROUND_ROBIN (the
// default) becomes envoy.load_balancing_policies.round_robin with
// round_robin_lb_config's fields. With load_balancing_policy, the first
// policy herald knows is used, as Envoy does
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#envoy-v3-api-msg-config-cluster-v3-loadbalancingpolicy).
func buildPolicy(c *clusterv3.Cluster, path string, seed uint64) (lbpolicy.Policy, error) {
	if lbp := c.GetLoadBalancingPolicy(); lbp != nil {
		p := path + ".load_balancing_policy"
		var names []string
		for i, pol := range lbp.GetPolicies() {
			tec := pol.GetTypedExtensionConfig()
			names = append(names, tec.GetName())
			e, ok := lbpolicy.Registry.ByTypeURL(tec.GetTypedConfig().GetTypeUrl())
			if !ok {
				continue
			}
			cfg := e.NewConfig()
			pp := fmt.Sprintf("%s.policies[%d].typed_extension_config.typed_config", p, i)
			if err := anypb.UnmarshalTo(tec.GetTypedConfig(), cfg, protoUnmarshal); err != nil {
				return nil, configerr.At(pp, "%v", err)
			}
			return e.Build(cfg, lbpolicy.BuildContext{Path: pp, Seed: seed})
		}
		return nil, configerr.At(p+".policies", "none of the policies %q is supported by herald yet (%s)", names, lbPolicyIssue).
			WithHint("supported: %v", lbpolicy.Registry.Names())
	}
	var cfg proto.Message
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		// The legacy round_robin_lb_config only has slow_start_config, which
		// round_robin does not support yet.
		if errs := configerr.CheckFields(c.GetRoundRobinLbConfig(), path+".round_robin_lb_config"); len(errs) > 0 {
			return nil, errs
		}
		cfg = &roundrobinv3.RoundRobin{}
	default:
		return nil, configerr.At(path+".lb_policy", "lb_policy %s is %s (%s)", c.GetLbPolicy(), configerr.NotSupported, lbPolicyIssue)
	}
	url := registry.TypeURL(cfg)
	e, ok := lbpolicy.Registry.ByTypeURL(url)
	if !ok {
		return nil, configerr.At(path+".lb_policy", "load balancing policy %q is not linked into this binary", url)
	}
	return e.Build(cfg, lbpolicy.BuildContext{Path: path + ".round_robin_lb_config", Seed: seed})
}
