package snicluster

import (
	"context"
	"net"
	"testing"

	sniclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/sni_cluster/v3"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
)

func TestRegistered(t *testing.T) {
	e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&sniclusterv3.SniCluster{}))
	if !ok || e.Name != Name || e.Terminal {
		t.Fatalf("registered as %+v, %v; want non-terminal %s", e, ok, Name)
	}
}

func TestOnNewConnection(t *testing.T) {
	tests := []struct {
		name string
		sni  string
		want any // the envoy.tcp_proxy.cluster filter state
	}{
		{name: "sni becomes the cluster", sni: "db.example.com", want: "db.example.com"},
		{name: "no sni leaves it unset", sni: "", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Build(&sniclusterv3.SniCluster{}, netfilter.BuildContext{})
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			c := network.NewConn(context.Background(), a, nil)
			c.ServerName = tc.sni
			if !f.(netfilter.ConnectionFilter).OnNewConnection(c) {
				t.Fatal("OnNewConnection refused the connection")
			}
			if got := c.FilterState(network.FilterStateTCPProxyCluster); got != tc.want {
				t.Errorf("filter state %s = %v, want %v", network.FilterStateTCPProxyCluster, got, tc.want)
			}
		})
	}
}
