package eds

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/xds"
)

// Name is the Envoy factory name of the type.
const Name = "envoy.cluster.eds"

func init() {
	clustertype.Register(clustertype.Extension{
		Name:  Name,
		Types: []clusterv3.Cluster_DiscoveryType{clusterv3.Cluster_EDS},
		Build: Build,
	})
}

// Build checks eds_cluster_config and creates the cluster's EDS
// subscription (it fetches nothing until Start). The config source is
// checked here, so a bad eds_config rejects the cluster.
func Build(c *clusterv3.Cluster, _ proto.Message, ctx clustertype.BuildContext) (clustertype.Discovery, error) {
	p := ctx.Path + ".eds_cluster_config"
	ec := c.GetEdsClusterConfig()
	var errs configerr.List
	if c.GetLoadAssignment() != nil {
		// cluster.proto documents load_assignment for STATIC, STRICT_DNS
		// and LOGICAL_DNS; an EDS cluster's hosts come from EDS. herald
		// says so instead of silently dropping hosts a user wrote down.
		errs = append(errs, configerr.At(ctx.Path+".load_assignment", "an EDS cluster takes its endpoints from eds_cluster_config.eds_config, not load_assignment"))
	}
	if ec == nil {
		errs = append(errs, configerr.At(p, "eds_cluster_config is required for type EDS"))
		return nil, errs
	}
	if ec.GetEdsConfig() == nil {
		errs = append(errs, configerr.At(p+".eds_config", "eds_config is required"))
	}
	if ctx.XDS == nil {
		errs = append(errs, configerr.At(p, "EDS needs the server's xDS client (internal error)"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	service := ec.GetServiceName()
	if service == "" {
		// Envoy: "Optional alternative to cluster name to present to EDS."
		service = c.GetName()
	}
	d := &Discovery{service: service}
	sub, err := ctx.XDS.Subscribe(ec.GetEdsConfig(), xds.EndpointType, []string{service}, xds.Callbacks{Apply: d.apply}, ctx.Stats)
	if err != nil {
		return nil, configerr.At(p+".eds_config", "%s", strings.TrimPrefix(err.Error(), "xds: "))
	}
	d.sub = sub
	return d, nil
}

// Discovery is one EDS cluster's subscription.
type Discovery struct {
	// Immutable after Build:
	service string
	sub     xds.Subscription
	// u is set by Start before the subscription starts; apply runs only
	// after that, on the subscription's goroutine.
	u clustertype.Updater
}

var _ clustertype.Discovery = (*Discovery)(nil)

// Start implements clustertype.Discovery: it starts the subscription; the
// cluster is ready (warmed) after the first update was accepted or
// rejected, or after eds_config's initial_fetch_timeout (Envoy's EDS
// cluster initialization). The subscription stops when ctx ends.
func (d *Discovery) Start(ctx context.Context, u clustertype.Updater) {
	d.u = u
	d.sub.Start(ctx)
	go func() {
		select {
		case <-d.sub.Ready():
			u.Ready()
		case <-ctx.Done():
		}
		<-ctx.Done()
		d.sub.Stop()
	}()
}

// Status returns the subscription's state: the cluster's current
// ClusterLoadAssignment with its version (admin /config_dump?include_eds).
func (d *Discovery) Status() xds.Status { return d.sub.Status() }

// apply is the subscription's callback: a bad assignment is returned (the
// client NACKs it and the hosts stay); a good one replaces the membership.
// An update without the cluster's assignment keeps the hosts, as Envoy's
// EdsClusterImpl::onConfigUpdate does for an empty update.
func (d *Discovery) apply(up xds.Update) error {
	var la *endpointv3.ClusterLoadAssignment
	for _, r := range up.Resources {
		if r.Name == d.service {
			la, _ = r.Message.(*endpointv3.ClusterLoadAssignment)
		}
	}
	if la == nil {
		return nil
	}
	hosts, err := Hosts(la)
	if err != nil {
		return err
	}
	if ms, ok := d.u.(clustertype.MembershipSetter); ok {
		// The subscription counts update_success itself.
		ms.SetHosts(hosts)
	} else {
		d.u.Success(hosts)
	}
	return nil
}

// Hosts checks an assignment and returns its hosts. Addresses must be IP
// literals: Envoy does not resolve names in EDS endpoints.
func Hosts(la *endpointv3.ClusterLoadAssignment) ([]clustertype.HostSpec, error) {
	path := fmt.Sprintf("cluster_load_assignment %q", la.GetClusterName())
	eps, err := clustertype.AssignmentEndpoints(la, path)
	if err != nil {
		return nil, err
	}
	var errs configerr.List
	hosts := make([]clustertype.HostSpec, 0, len(eps))
	for _, e := range eps {
		ip, perr := netip.ParseAddr(e.Address)
		if perr != nil || ip.Zone() != "" {
			errs = append(errs, configerr.At(e.Path+".address", "%q is not an IP address (EDS endpoints need IP addresses)", e.Address))
			continue
		}
		hosts = append(hosts, clustertype.HostSpec{
			Addr:      netip.AddrPortFrom(ip.Unmap(), e.Port),
			Hostname:  e.Hostname,
			Weight:    e.Weight,
			Unhealthy: e.Unhealthy,
			HashKey:   e.HashKey,
			// Priority, locality and the assignment policy, refreshed by
			// every assignment.
			Placement: e.Placement,
		})
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return hosts, nil
}
