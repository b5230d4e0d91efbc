package static

import (
	"context"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// Name is the Envoy factory name of the type.
const Name = "envoy.cluster.static"

func init() {
	clustertype.Register(clustertype.Extension{
		Name:  Name,
		Types: []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_STATIC},
		Build: Build,
	})
}

// Build reads the endpoints; each address must be an IP literal (Envoy
// rejects names in STATIC clusters: use STRICT_DNS or LOGICAL_DNS).
func Build(c *clusterv3.Cluster, _ proto.Message, ctx clustertype.BuildContext) (clustertype.Discovery, error) {
	eps, err := clustertype.Endpoints(c, ctx.Path)
	if err != nil {
		return nil, err
	}
	var errs configerr.List
	d := &Discovery{}
	for _, e := range eps {
		ip, perr := netip.ParseAddr(e.Address)
		if perr != nil {
			errs = append(errs, configerr.At(e.Path+".address", "%q is not an IP address", e.Address).
				WithHint("a STATIC cluster needs IP addresses; use type: STRICT_DNS or LOGICAL_DNS for names"))
			continue
		}
		if ip.Zone() != "" {
			errs = append(errs, configerr.At(e.Path+".address", "zoned address %q is %s", e.Address, configerr.NotSupported))
			continue
		}
		d.hosts = append(d.hosts, clustertype.HostSpec{
			Addr:     netip.AddrPortFrom(ip.Unmap(), e.Port),
			Hostname: e.Hostname,
			Weight:   e.Weight,
			HashKey:  e.HashKey,
			// Priority, locality and the assignment policy.
			Placement: e.Placement,
		})
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return d, nil
}

// Discovery reports the fixed hosts once.
type Discovery struct {
	hosts []clustertype.HostSpec
}

var _ clustertype.Discovery = (*Discovery)(nil)

// Start implements clustertype.Discovery: it reports the hosts and is ready
// before returning; it starts no goroutine.
func (d *Discovery) Start(_ context.Context, u clustertype.Updater) {
	u.Attempt()
	u.Success(d.hosts)
	u.Ready()
}
