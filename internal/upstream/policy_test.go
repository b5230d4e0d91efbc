package upstream

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// policyBuilds records the config each stand-in policy below was built
// with, by BuildContext.Path. The real policies are extensions, which
// internal/ must not import.
var policyBuilds sync.Map // path → proto.Message

// registerStandIn registers a stand-in for the policy of cfg's type that
// records its config and rotates like fakeRR; reject, when set, plays the
// real policy's config check.
func registerStandIn[C proto.Message](name string, cfg C, hashing bool, reject func(C, string) error) {
	lbpolicy.Register(lbpolicy.Extension[C]{
		Name:   name,
		Config: cfg,
		Build: func(c C, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
			if reject != nil {
				if err := reject(c, ctx.Path); err != nil {
					return nil, err
				}
			}
			policyBuilds.Store(ctx.Path, proto.Message(c))
			if hashing {
				return fakeHashing{}, nil
			}
			return fakeRR{}, nil
		},
	})
}

func init() {
	registerStandIn("envoy.load_balancing_policies.least_request", &leastrequestv3.LeastRequest{}, false, nil)
	registerStandIn("envoy.load_balancing_policies.random", &randomv3.Random{}, false, nil)
	// The real ring_hash refuses MURMUR_HASH_2 at ctx.Path+".hash_function";
	// the stand-in does the same so the test sees where legacy errors point.
	registerStandIn("envoy.load_balancing_policies.ring_hash", &ringhashv3.RingHash{}, true, func(c *ringhashv3.RingHash, path string) error {
		if c.GetHashFunction() == ringhashv3.RingHash_MURMUR_HASH_2 {
			return configerr.At(path+".hash_function", "MURMUR_HASH_2 is %s", configerr.NotSupported)
		}
		return nil
	})
	registerStandIn("envoy.load_balancing_policies.maglev", &maglevv3.Maglev{}, true, nil)
}

// fakeHashing stands in for ring_hash and maglev.
type fakeHashing struct{ fakeRR }

func (fakeHashing) UsesHash() bool { return true }

func TestUsesHash(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{name: "round robin", yaml: `- {name: a}`, want: false},
		{name: "least request", yaml: `- {name: a, lb_policy: LEAST_REQUEST}`, want: false},
		{name: "ring hash", yaml: `- {name: a, lb_policy: RING_HASH}`, want: true},
		{name: "maglev", yaml: `- {name: a, lb_policy: MAGLEV}`, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			if err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix); err != nil {
				t.Fatal(err)
			}
			if got := m.Cluster("a").UsesHash(); got != tc.want {
				t.Errorf("UsesHash = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLegacyLBPolicy(t *testing.T) {
	const c0 = "static_resources.clusters[0]"
	tests := []struct {
		name     string
		yaml     string
		wantPath string
		want     proto.Message
	}{
		{name: "least request", yaml: `- {name: a, lb_policy: LEAST_REQUEST}`,
			wantPath: c0 + ".least_request_lb_config", want: &leastrequestv3.LeastRequest{}},
		{name: "least request config", yaml: `- {name: a, lb_policy: LEAST_REQUEST, least_request_lb_config: {choice_count: 3, active_request_bias: {default_value: 1.5, runtime_key: k}}}`,
			wantPath: c0 + ".least_request_lb_config",
			want: &leastrequestv3.LeastRequest{ChoiceCount: wrapperspb.UInt32(3),
				ActiveRequestBias: &corev3.RuntimeDouble{DefaultValue: 1.5, RuntimeKey: "k"}}},
		// The legacy slow_start_config carries over to the typed one.
		{name: "least request slow start", yaml: `- {name: a, lb_policy: LEAST_REQUEST, least_request_lb_config: {slow_start_config: {slow_start_window: 2s, aggression: {default_value: 2, runtime_key: k}, min_weight_percent: {value: 20}}}}`,
			wantPath: c0 + ".least_request_lb_config",
			want: &leastrequestv3.LeastRequest{SlowStartConfig: &commonv3.SlowStartConfig{
				SlowStartWindow: durationpb.New(2 * time.Second), Aggression: &corev3.RuntimeDouble{DefaultValue: 2, RuntimeKey: "k"},
				MinWeightPercent: &typev3.Percent{Value: 20}}}},
		{name: "random", yaml: `- {name: a, lb_policy: RANDOM}`, wantPath: c0 + ".lb_policy", want: &randomv3.Random{}},
		{name: "ring hash", yaml: `- {name: a, lb_policy: RING_HASH}`, wantPath: c0 + ".ring_hash_lb_config", want: &ringhashv3.RingHash{}},
		{name: "ring hash config", yaml: `
- name: a
  lb_policy: RING_HASH
  ring_hash_lb_config: {minimum_ring_size: 64, maximum_ring_size: 4096}
  common_lb_config: {consistent_hashing_lb_config: {use_hostname_for_hashing: true}}
`, wantPath: c0 + ".ring_hash_lb_config", want: &ringhashv3.RingHash{
			MinimumRingSize: wrapperspb.UInt64(64), MaximumRingSize: wrapperspb.UInt64(4096),
			ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: true}}},
		{name: "maglev", yaml: `- {name: a, lb_policy: MAGLEV}`, wantPath: c0 + ".maglev_lb_config", want: &maglevv3.Maglev{}},
		{name: "maglev config", yaml: `
- name: a
  lb_policy: MAGLEV
  maglev_lb_config: {table_size: 251}
  common_lb_config: {consistent_hashing_lb_config: {use_hostname_for_hashing: true}}
`, wantPath: c0 + ".maglev_lb_config", want: &maglevv3.Maglev{TableSize: wrapperspb.UInt64(251),
			ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: true}}},
		// The typed list wins over the enum and its legacy config.
		{name: "typed over legacy", yaml: `
- name: a
  lb_policy: RING_HASH
  load_balancing_policy:
    policies:
    - typed_extension_config:
        name: envoy.load_balancing_policies.maglev
        typed_config: {"@type": type.googleapis.com/envoy.extensions.load_balancing_policies.maglev.v3.Maglev, table_size: 7}
`, wantPath: c0 + ".load_balancing_policy.policies[0].typed_extension_config.typed_config", want: &maglevv3.Maglev{TableSize: wrapperspb.UInt64(7)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policyBuilds.Clear()
			m, _ := newTestManager(t)
			if err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix); err != nil {
				t.Fatal(err)
			}
			got, ok := policyBuilds.Load(tc.wantPath)
			if !ok {
				var paths []any
				policyBuilds.Range(func(k, _ any) bool { paths = append(paths, k); return true })
				t.Fatalf("no policy built at %s (built at %v)", tc.wantPath, paths)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLegacyLBPolicyErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "zone aware", yaml: `- {name: a, common_lb_config: {zone_aware_lb_config: {min_cluster_size: 3}}}`,
			wantErr: "static_resources.clusters[0].common_lb_config.zone_aware_lb_config: zone aware routing is not supported by herald yet (it needs cluster_manager.local_cluster_name)"},
		{name: "locality weighted ring hash", yaml: `- {name: a, lb_policy: RING_HASH, common_lb_config: {locality_weighted_lb_config: {}}}`,
			wantErr: "static_resources.clusters[0].common_lb_config.locality_weighted_lb_config: locality weighted load balancing with RING_HASH is not supported by herald yet"},
		// The typed Build's errors point at the legacy config.
		{name: "ring hash murmur", yaml: `- {name: a, lb_policy: RING_HASH, ring_hash_lb_config: {hash_function: MURMUR_HASH_2}}`,
			wantErr: "static_resources.clusters[0].ring_hash_lb_config.hash_function: MURMUR_HASH_2 is not supported by herald yet"},
		{name: "bounded load", yaml: `- {name: a, lb_policy: MAGLEV, common_lb_config: {consistent_hashing_lb_config: {hash_balance_factor: 150}}}`,
			wantErr: "static_resources.clusters[0].common_lb_config.consistent_hashing_lb_config.hash_balance_factor: not supported by herald yet"},
		{name: "load balancing policy config enum", yaml: `- {name: a, lb_policy: LOAD_BALANCING_POLICY_CONFIG}`,
			wantErr: "static_resources.clusters[0].lb_policy: lb_policy LOAD_BALANCING_POLICY_CONFIG is not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestManager(t)
			err := m.Apply(context.Background(), parseClusters(t, tc.yaml), prefix)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Apply error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
