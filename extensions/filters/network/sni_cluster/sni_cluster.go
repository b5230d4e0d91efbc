package snicluster

import (
	sniclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_cluster/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
)

func init() {
	netfilter.Register(netfilter.Extension[*sniclusterv3.SniCluster]{
		Name:   Name,
		Config: &sniclusterv3.SniCluster{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.sni_cluster"

// Filter is the built sni_cluster filter; it has no config. Immutable.
type Filter struct{}

var _ netfilter.ConnectionFilter = Filter{}

// Build checks the (empty) SniCluster config.
func Build(cfg *sniclusterv3.SniCluster, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	if err := configerr.RejectUnlisted(cfg, ctx.Path, nil).Err(); err != nil {
		return nil, err
	}
	return Filter{}, nil
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// SniClusterFilter::onNewConnection. A connection with an SNI (from the
// TLS handshake or tls_inspector) gets it as its tcp_proxy cluster; one
// without is left alone, so tcp_proxy uses its configured cluster.
func (Filter) OnNewConnection(c *network.Conn) bool {
	if c.ServerName != "" {
		c.SetFilterState(network.FilterStateTCPProxyCluster, c.ServerName)
	}
	return true
}
