package strictdns

import (
	"context"
	"net/netip"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// Name is the Envoy factory name of the type.
const Name = "envoy.cluster.strict_dns"

func init() {
	clustertype.Register(clustertype.Extension{
		Name:  Name,
		Types: []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_STRICT_DNS},
		Build: Build,
	})
}

// Build reads the endpoints and DNS settings; it resolves nothing.
func Build(c *clusterv3.Cluster, _ proto.Message, ctx clustertype.BuildContext) (clustertype.Discovery, error) {
	eps, err := clustertype.Endpoints(c, ctx.Path)
	if err != nil {
		return nil, err
	}
	dns, err := clustertype.ParseDNSConfig(c, ctx.Path)
	if err != nil {
		return nil, err
	}
	return &Discovery{dns: dns, targets: eps, resolver: ctx.Resolver, rand: ctx.Rand}, nil
}

// Discovery resolves each endpoint on its own schedule, as Envoy's
// ResolveTarget does, and publishes the union of the latest results.
type Discovery struct {
	// Immutable after Build:
	dns      clustertype.DNSConfig
	targets  []clustertype.Endpoint
	resolver clustertype.Resolver
	rand     func() uint64

	// Guarded by mu, written by the target goroutines:
	mu      sync.Mutex
	results [][]clustertype.HostSpec // per target; nil until resolved
	tried   []bool                   // per target: tried at least once
	pending int                      // targets not yet tried once
}

var _ clustertype.Discovery = (*Discovery)(nil)

// Start implements clustertype.Discovery: one goroutine per endpoint, each
// resolving at once and then every dns_refresh_rate until ctx ends. A
// failed resolution keeps that endpoint's previous hosts. The cluster is
// ready once every endpoint was tried once.
func (d *Discovery) Start(ctx context.Context, u clustertype.Updater) {
	d.results = make([][]clustertype.HostSpec, len(d.targets))
	d.tried = make([]bool, len(d.targets))
	d.pending = len(d.targets)
	if len(d.targets) == 0 {
		u.Success(nil)
		u.Ready()
		return
	}
	for i := range d.targets {
		go d.dns.Refresh(ctx, d.rand, func(ctx context.Context) bool { return d.resolve(ctx, u, i) })
	}
}

func (d *Discovery) resolve(ctx context.Context, u clustertype.Updater, i int) bool {
	t := d.targets[i]
	u.Attempt()
	addrs, err := d.dns.Lookup(ctx, d.resolver, t.Address)
	if ctx.Err() != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	first := !d.tried[i]
	d.tried[i] = true
	if err != nil {
		u.Failure(err)
	} else {
		hosts := make([]clustertype.HostSpec, 0, len(addrs))
		for _, a := range addrs {
			// Envoy sets each host's hostname to the DNS name it came from.
			hosts = append(hosts, clustertype.HostSpec{
				Addr:     netip.AddrPortFrom(a, t.Port),
				Hostname: t.Address,
				Weight:   t.Weight,
				HashKey:  t.HashKey,
				// The target's priority and locality (Envoy's ResolveTarget
				// keeps its LocalityLbEndpoints).
				Placement: t.Placement,
			})
		}
		d.results[i] = hosts
		var all []clustertype.HostSpec
		for _, r := range d.results {
			all = append(all, r...)
		}
		u.Success(all)
	}
	if first {
		d.pending--
		if d.pending == 0 {
			u.Ready()
		}
	}
	return err == nil
}
