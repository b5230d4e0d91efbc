package logicaldns

import (
	"context"
	"net"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// Name is the Envoy factory name of the type.
const Name = "envoy.cluster.logical_dns"

func init() {
	clustertype.Register(clustertype.Extension{
		Name:  Name,
		Types: []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_LOGICAL_DNS},
		Build: Build,
	})
}

// Build checks that the cluster has exactly one endpoint, as Envoy requires
// of LOGICAL_DNS ("LOGICAL_DNS clusters must have a single locality_lb_endpoint
// and a single lb_endpoint").
func Build(c *clusterv3.Cluster, _ proto.Message, ctx clustertype.BuildContext) (clustertype.Discovery, error) {
	eps, err := clustertype.Endpoints(c, ctx.Path)
	if err != nil {
		return nil, err
	}
	if len(eps) != 1 || len(c.GetLoadAssignment().GetEndpoints()) != 1 {
		return nil, configerr.At(ctx.Path+".load_assignment", "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint")
	}
	dns, err := clustertype.ParseDNSConfig(c, ctx.Path)
	if err != nil {
		return nil, err
	}
	return &Discovery{dns: dns, target: eps[0], resolver: ctx.Resolver, rand: ctx.Rand}, nil
}

// Discovery resolves the one name and moves the logical host to the first
// address returned.
type Discovery struct {
	// Immutable after Build:
	dns      clustertype.DNSConfig
	target   clustertype.Endpoint
	resolver clustertype.Resolver
	rand     func() uint64
}

var _ clustertype.Discovery = (*Discovery)(nil)

// Start implements clustertype.Discovery: a goroutine resolves at once and
// every dns_refresh_rate until ctx ends; a failed resolution keeps the
// current address. The cluster is ready after the first attempt.
func (d *Discovery) Start(ctx context.Context, u clustertype.Updater) {
	key := net.JoinHostPort(d.target.Address, strconv.Itoa(int(d.target.Port)))
	tried := false
	go d.dns.Refresh(ctx, d.rand, func(ctx context.Context) bool {
		defer func() {
			if !tried {
				tried = true
				u.Ready()
			}
		}()
		u.Attempt()
		addrs, err := d.dns.Lookup(ctx, d.resolver, d.target.Address)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			u.Failure(err)
			return false
		}
		u.Success([]clustertype.HostSpec{{
			Key:      key,
			Addr:     netip.AddrPortFrom(addrs[0], d.target.Port),
			Hostname: d.target.Address,
			Weight:   d.target.Weight,
			HashKey:  d.target.HashKey,
			// The one locality's priority and locality.
			Placement: d.target.Placement,
		}})
		return true
	})
}
