package upstream

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
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
	obs := c.GetName()
	if c.GetAltStatName() != "" {
		obs = c.GetAltStatName()
	}
	bctx := clustertype.BuildContext{Path: path, Resolver: env.resolver, Rand: env.rand, XDS: env.xds,
		Stats: env.store.Scope("cluster." + obs + ".")}
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
// is normalised to the typed extension first (STYLE.md §2), as Envoy's
// Legacy*LbConfig → Typed*LbConfig conversion does:
//   - ROUND_ROBIN (the default) → envoy.load_balancing_policies.round_robin;
//   - LEAST_REQUEST → least_request with least_request_lb_config's
//     choice_count and active_request_bias;
//   - RANDOM → random;
//   - RING_HASH → ring_hash with ring_hash_lb_config's sizes and
//     hash_function, and common_lb_config.consistent_hashing_lb_config's
//     use_hostname_for_hashing;
//   - MAGLEV → maglev with maglev_lb_config.table_size and the same
//     use_hostname_for_hashing.
//
// Errors of the typed Build point at the legacy field (the BuildContext
// path is the legacy config message). The legacy config of another policy
// than lb_policy's is ignored, as in Envoy. With load_balancing_policy, the
// first policy herald knows is used, as Envoy does
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#envoy-v3-api-msg-config-cluster-v3-loadbalancingpolicy).
func buildPolicy(c *clusterv3.Cluster, path string, seed uint64, now func() time.Time) (lbpolicy.Policy, error) {
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
			return e.Build(cfg, lbpolicy.BuildContext{Path: pp, Seed: seed, Now: now})
		}
		return nil, configerr.At(p+".policies", "none of the policies %q is supported by herald yet (%s)", names, lbPolicyIssue).
			WithHint("supported: %v", lbpolicy.Registry.Names())
	}
	cfg, cfgPath, errs := legacyPolicy(c, path)
	if len(errs) > 0 {
		return nil, errs
	}
	if cfg == nil {
		return nil, configerr.At(path+".lb_policy", "lb_policy %s is %s (%s)", c.GetLbPolicy(), configerr.NotSupported, lbPolicyIssue)
	}
	url := registry.TypeURL(cfg)
	e, ok := lbpolicy.Registry.ByTypeURL(url)
	if !ok {
		return nil, configerr.At(path+".lb_policy", "load balancing policy %q is not linked into this binary", url)
	}
	return e.Build(cfg, lbpolicy.BuildContext{Path: cfgPath, Seed: seed, Now: now})
}

// legacyPolicy converts lb_policy and its legacy config to the typed
// config; cfg is nil for an enum value herald has no policy for. cfgPath
// is the legacy config's path, where the typed Build reports errors.
func legacyPolicy(c *clusterv3.Cluster, path string) (cfg proto.Message, cfgPath string, errs configerr.List) {
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		// The legacy round_robin_lb_config only has slow_start_config;
		// common_lb_config.locality_weighted_lb_config is applied by the
		// cluster (parseLocalityLB) for every policy.
		cfgPath = path + ".round_robin_lb_config"
		errs = configerr.CheckFields(c.GetRoundRobinLbConfig(), cfgPath, "slow_start_config")
		return &roundrobinv3.RoundRobin{SlowStartConfig: legacySlowStart(c.GetRoundRobinLbConfig().GetSlowStartConfig())}, cfgPath, errs
	case clusterv3.Cluster_LEAST_REQUEST:
		lc := c.GetLeastRequestLbConfig()
		cfgPath = path + ".least_request_lb_config"
		errs = configerr.CheckFields(lc, cfgPath, "choice_count", "active_request_bias", "slow_start_config")
		return &leastrequestv3.LeastRequest{
			ChoiceCount:       lc.GetChoiceCount(),
			ActiveRequestBias: lc.GetActiveRequestBias(),
			SlowStartConfig:   legacySlowStart(lc.GetSlowStartConfig()),
		}, cfgPath, errs
	case clusterv3.Cluster_RANDOM:
		return &randomv3.Random{}, path + ".lb_policy", nil
	case clusterv3.Cluster_RING_HASH:
		rc := c.GetRingHashLbConfig()
		cfgPath = path + ".ring_hash_lb_config"
		rh := &ringhashv3.RingHash{
			MinimumRingSize: rc.GetMinimumRingSize(),
			MaximumRingSize: rc.GetMaximumRingSize(),
		}
		// The enums differ (legacy XX_HASH is 0, typed DEFAULT_HASH is 0);
		// as Envoy's TypedRingHashLbConfig, only MURMUR_HASH_2 carries over.
		if rc.GetHashFunction() == clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2 {
			rh.HashFunction = ringhashv3.RingHash_MURMUR_HASH_2
		}
		ch, cherrs := legacyConsistentHashing(c, path)
		rh.ConsistentHashingLbConfig = ch
		return rh, cfgPath, cherrs
	case clusterv3.Cluster_MAGLEV:
		cfgPath = path + ".maglev_lb_config"
		ch, cherrs := legacyConsistentHashing(c, path)
		return &maglevv3.Maglev{
			TableSize:                 c.GetMaglevLbConfig().GetTableSize(),
			ConsistentHashingLbConfig: ch,
		}, cfgPath, cherrs
	}
	return nil, "", nil
}

// legacySlowStart converts the cluster's legacy SlowStartConfig to the
// typed one (the same fields).
func legacySlowStart(s *clusterv3.Cluster_SlowStartConfig) *commonv3.SlowStartConfig {
	if s == nil {
		return nil
	}
	return &commonv3.SlowStartConfig{
		SlowStartWindow:  s.GetSlowStartWindow(),
		Aggression:       s.GetAggression(),
		MinWeightPercent: s.GetMinWeightPercent(),
	}
}

// legacyConsistentHashing converts common_lb_config.consistent_hashing_lb_config
// for RING_HASH and MAGLEV. hash_balance_factor (bounded loads) is not
// supported.
func legacyConsistentHashing(c *clusterv3.Cluster, path string) (*commonv3.ConsistentHashingLbConfig, configerr.List) {
	lc := c.GetCommonLbConfig().GetConsistentHashingLbConfig()
	if lc == nil {
		return nil, nil
	}
	errs := configerr.CheckFields(lc, path+".common_lb_config.consistent_hashing_lb_config", "use_hostname_for_hashing")
	return &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: lc.GetUseHostnameForHashing()}, errs
}

// UsesHash reports whether the cluster's load balancing policy reads
// LBContext.Hash (ring_hash, maglev). The router evaluates the route's
// hash_policy only then, as Envoy does, so round robin requests never get a
// generated hash cookie.
func (c *Cluster) UsesHash() bool {
	_, ok := c.policy.(lbpolicy.HashingPolicy)
	return ok
}
