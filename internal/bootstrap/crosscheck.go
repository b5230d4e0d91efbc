package bootstrap

import (
	"fmt"
	"net/netip"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// CrossCheck runs the checks that span several resources of a bootstrap and
// that the generated validation cannot do:
//   - cluster names are unique, and so are listener names (Envoy rejects
//     both when it adds the resources);
//   - no two listeners bind the same address and port (port 0 excepted: the
//     kernel picks a free port for each);
//   - every cluster an inline route_config of http_connection_manager names
//     (route.cluster, route.weighted_clusters.clusters[].name) is a static
//     cluster, unless the route_config sets validate_clusters: false; Envoy:
//     validate_clusters "defaults to true if the route table is statically
//     defined via the route_config option"
//     (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route.proto);
//   - every cluster tcp_proxy names (cluster, weighted_clusters) is a static
//     cluster. Envoy only fails such a connection at run time; herald
//     rejects it at load, as its design asks of cross-checks.
//
// Cluster references are not checked when dynamic_resources.cds_config is
// set: the cluster may come from CDS.
func CrossCheck(bs *bootstrapv3.Bootstrap, idx *Index) error {
	c := &crossCheck{idx: idx, clusters: map[string]string{}}
	sr := bs.GetStaticResources()
	var clusterNames []string
	for i, cl := range sr.GetClusters() {
		path := fmt.Sprintf("static_resources.clusters[%d].name", i)
		if first, dup := c.clusters[cl.GetName()]; dup {
			c.add(path, fmt.Sprintf("duplicate cluster name %q", cl.GetName()), "first defined at "+c.where(first))
			continue
		}
		c.clusters[cl.GetName()] = path
		clusterNames = append(clusterNames, cl.GetName())
	}
	c.clusterNames = clusterNames
	c.checkRefs = bs.GetDynamicResources().GetCdsConfig() == nil

	names := map[string]string{}
	addrs := map[string]string{}
	for i, l := range sr.GetListeners() {
		lpath := fmt.Sprintf("static_resources.listeners[%d]", i)
		if first, dup := names[l.GetName()]; dup {
			c.add(lpath+".name", fmt.Sprintf("duplicate listener name %q", l.GetName()), "first defined at "+c.where(first))
		} else {
			names[l.GetName()] = lpath + ".name"
		}
		c.address(addrs, l.GetAddress(), lpath+".address")
		for j, a := range l.GetAdditionalAddresses() {
			c.address(addrs, a.GetAddress(), fmt.Sprintf("%s.additional_addresses[%d].address", lpath, j))
		}
		for j, fc := range l.GetFilterChains() {
			c.filterChain(fc, fmt.Sprintf("%s.filter_chains[%d]", lpath, j))
		}
		if fc := l.GetDefaultFilterChain(); fc != nil {
			c.filterChain(fc, lpath+".default_filter_chain")
		}
	}
	return c.errs.Err()
}

type crossCheck struct {
	idx          *Index
	errs         configerr.List
	clusters     map[string]string // name → path of its name field
	clusterNames []string          // in declaration order, for suggestions
	checkRefs    bool
}

func (c *crossCheck) add(path, msg, hint string) {
	c.errs = append(c.errs, &configerr.FieldError{Path: path, Pos: c.idx.locate(path), Msg: msg, Hint: hint})
}

// where formats the position of path for "first defined at" hints.
func (c *crossCheck) where(path string) string {
	p := c.idx.locate(path)
	if p.Line == 0 {
		return path
	}
	return p.String()
}

// address records a listener's bind address and reports a second listener
// on the same one.
func (c *crossCheck) address(seen map[string]string, a *corev3.Address, path string) {
	sa := a.GetSocketAddress()
	var key string
	switch {
	case sa != nil:
		port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
		if !ok || port.PortValue == 0 {
			return
		}
		host := sa.GetAddress()
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.Unmap().String()
		}
		key = sa.GetProtocol().String() + " " + hostPort(host, port.PortValue)
		path += ".socket_address"
		if first, dup := seen[key]; dup {
			c.add(path, fmt.Sprintf("address %s is already used by %s", hostPort(host, port.PortValue), listenerOf(first)), "first bound at "+c.where(first))
			return
		}
	case a.GetPipe() != nil:
		key = "pipe " + a.GetPipe().GetPath()
		path += ".pipe"
		if first, dup := seen[key]; dup {
			c.add(path, fmt.Sprintf("pipe %s is already used by %s", a.GetPipe().GetPath(), listenerOf(first)), "first bound at "+c.where(first))
			return
		}
	default:
		return
	}
	seen[key] = path
}

func hostPort(host string, port uint32) string {
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		return "[" + host + "]:" + strconv.FormatUint(uint64(port), 10)
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// listenerOf returns "static_resources.listeners[N]" from a path under it.
func listenerOf(path string) string {
	segs := splitPath(path)
	if len(segs) >= 2 {
		return segs[0] + "." + segs[1]
	}
	return path
}

var unmarshalOpts = proto.UnmarshalOptions{}

func (c *crossCheck) filterChain(fc *listenerv3.FilterChain, path string) {
	if !c.checkRefs {
		return
	}
	for i, f := range fc.GetFilters() {
		tc := f.GetTypedConfig()
		if tc == nil {
			continue
		}
		fpath := fmt.Sprintf("%s.filters[%d].typed_config", path, i)
		switch tc.MessageName() {
		case "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
			hcm := &hcmv3.HttpConnectionManager{}
			if anypb.UnmarshalTo(tc, hcm, unmarshalOpts) == nil {
				c.routeConfig(hcm.GetRouteConfig(), fpath+".route_config")
			}
		case "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":
			tp := &tcpproxyv3.TcpProxy{}
			if anypb.UnmarshalTo(tc, tp, unmarshalOpts) == nil {
				c.tcpProxy(tp, fpath)
			}
		}
	}
}

func (c *crossCheck) routeConfig(rc *routev3.RouteConfiguration, path string) {
	if rc == nil || rc.GetValidateClusters() != nil && !rc.GetValidateClusters().GetValue() {
		return
	}
	for i, vh := range rc.GetVirtualHosts() {
		for j, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			rpath := fmt.Sprintf("%s.virtual_hosts[%d].routes[%d].route", path, i, j)
			switch cs := ra.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				c.clusterRef(cs.Cluster, rpath+".cluster")
			case *routev3.RouteAction_WeightedClusters:
				for k, wc := range cs.WeightedClusters.GetClusters() {
					if wc.GetName() != "" {
						c.clusterRef(wc.GetName(), fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", rpath, k))
					}
				}
			}
		}
	}
}

func (c *crossCheck) tcpProxy(tp *tcpproxyv3.TcpProxy, path string) {
	switch cs := tp.GetClusterSpecifier().(type) {
	case *tcpproxyv3.TcpProxy_Cluster:
		c.clusterRef(cs.Cluster, path+".cluster")
	case *tcpproxyv3.TcpProxy_WeightedClusters:
		for k, wc := range cs.WeightedClusters.GetClusters() {
			c.clusterRef(wc.GetName(), fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", path, k))
		}
	}
}

func (c *crossCheck) clusterRef(name, path string) {
	if _, ok := c.clusters[name]; ok {
		return
	}
	hint := "define it in static_resources.clusters"
	if s := configerr.Suggest(name, c.clusterNames); s != "" {
		hint = "did you mean " + s + "?"
	}
	c.add(path, fmt.Sprintf("unknown cluster %q", name), hint)
}
