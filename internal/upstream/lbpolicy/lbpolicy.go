// Package lbpolicy is what a load balancing policy implements and how it
// registers. A cluster's policy is built once per config snapshot; it makes
// a Picker each time the cluster's membership changes, and the request path
// only calls Picker.Pick.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers
// and the load_balancing_policy extension point
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#envoy-v3-api-field-config-cluster-v3-cluster-load-balancing-policy).
//
// The legacy cluster enum (lb_policy: ROUND_ROBIN) is normalised to the typed
// extension by internal/upstream before Build, so a policy has one code path.
//
// It must not import extensions/, internal/upstream nor net/http.
package lbpolicy

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/registry"
)

// Context is what a request tells the load balancer (Envoy's
// LoadBalancerContext). The zero value is a request without a hash.
type Context struct {
	// Hash is the request's hash (from the route's hash_policy) for hashing
	// policies; valid when HasHash is true.
	Hash    uint64
	HasHash bool
}

// Host is what a policy sees of one host. The cluster's host type
// implements it; a policy keeps the slice it was given, never a copy of
// the values, so weights and active requests are read live.
type Host interface {
	// Weight is the host's load_balancing_weight, at least 1.
	Weight() uint32
	// ActiveRequests is the host's rq_active gauge (for least_request).
	ActiveRequests() int64
}

// Picker chooses a host for one request. It must be safe for concurrent use,
// must not allocate and should not lock (an atomic counter is the model).
type Picker interface {
	// Pick returns an index into the hosts the Picker was made from, or -1
	// when it cannot choose (no hosts).
	Pick(ctx *Context) int
}

// Policy is a built load balancing policy: config interpreted once.
type Policy interface {
	// NewPicker makes a picker over hosts (never empty); called on the
	// cluster's update goroutine each time membership or health changes.
	NewPicker(hosts []Host) Picker
}

// BuildContext is what a policy may use when it is built.
type BuildContext struct {
	// Path is the YAML path of the policy's config, for errors.
	Path string
	// Seed randomises a policy's starting point so that several herald
	// processes do not pick hosts in lockstep (Envoy seeds each load
	// balancer from its random generator). Tests set it to make picks
	// deterministic.
	Seed uint64
	// Now is the clock slow start measures with; nil is time.Now. It must
	// be the clock the cluster stamps SlowStartHost.HealthySince with.
	Now func() time.Time
}

// Extension is one load balancing policy kind.
type Extension[C proto.Message] struct {
	// Name is the Envoy name, e.g. "envoy.load_balancing_policies.round_robin".
	Name string
	// Config is an empty config message; its type URL keys the registry.
	Config C
	// Build interprets cfg once per snapshot.
	Build func(cfg C, ctx BuildContext) (Policy, error)
}

// Entry is a registered policy with its config type erased.
type Entry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Policy, error)
}

// Registry holds every load balancing policy.
var Registry = registry.New[*Entry]("load balancing policy")

// Register adds a policy; call it from the extension's init.
func Register[C proto.Message](e Extension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("lbpolicy: %s registered without Build", e.Name))
	}
	Registry.Register(e.Name, e.Config, &Entry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Policy, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
	})
}
