package upstream

import (
	"context"
	"net/netip"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// The real cluster types and policies are extensions, which internal/ must
// not import; these stand-ins register under the same keys for this
// package's tests.

// fakeStatic reports the load_assignment's IPs, like STATIC, and keeps the
// Updater so tests can push membership changes.
type fakeStatic struct {
	name  string
	hosts []clustertype.HostSpec
}

var (
	updatersMu sync.Mutex
	updaters   = map[string]clustertype.Updater{}
	started    = map[string]context.Context{}
)

func (d *fakeStatic) Start(ctx context.Context, u clustertype.Updater) {
	updatersMu.Lock()
	updaters[d.name] = u
	started[d.name] = ctx
	updatersMu.Unlock()
	u.Attempt()
	u.Success(d.hosts)
	u.Ready()
}

func updaterFor(name string) clustertype.Updater {
	updatersMu.Lock()
	defer updatersMu.Unlock()
	return updaters[name]
}

func startedCtx(name string) context.Context {
	updatersMu.Lock()
	defer updatersMu.Unlock()
	return started[name]
}

// rrBuilds counts how often the round robin stand-in was built.
var rrBuilds sync.Map // path → *roundrobinv3.RoundRobin

type fakeRR struct{}

func (fakeRR) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	return &fakeRotation{n: len(hosts)}
}

type fakeRotation struct {
	mu sync.Mutex
	n  int
	i  int
}

func (r *fakeRotation) Pick(*lbpolicy.Context) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.i % r.n
	r.i++
	return i
}

func init() {
	clustertype.Register(clustertype.Extension{
		Name:  "envoy.cluster.static",
		Types: []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_STATIC},
		Build: func(c *clusterv3.Cluster, _ proto.Message, ctx clustertype.BuildContext) (clustertype.Discovery, error) {
			eps, err := clustertype.Endpoints(c, ctx.Path)
			if err != nil {
				return nil, err
			}
			d := &fakeStatic{name: c.GetName()}
			for _, e := range eps {
				ip, err := netip.ParseAddr(e.Address)
				if err != nil {
					return nil, configerr.At(e.Path+".address", "not an IP")
				}
				d.hosts = append(d.hosts, clustertype.HostSpec{Addr: netip.AddrPortFrom(ip, e.Port), Hostname: e.Hostname, Weight: e.Weight, Placement: e.Placement})
			}
			return d, nil
		},
	})
	lbpolicy.Register(lbpolicy.Extension[*roundrobinv3.RoundRobin]{
		Name:   "envoy.load_balancing_policies.round_robin",
		Config: &roundrobinv3.RoundRobin{},
		Build: func(cfg *roundrobinv3.RoundRobin, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
			rrBuilds.Store(ctx.Path, cfg)
			return fakeRR{}, nil
		},
	})
}
