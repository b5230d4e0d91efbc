package tcpproxy

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/herald-proxy/herald/internal/network"
)

func TestPickCluster(t *testing.T) {
	tests := []struct {
		name        string
		config      string
		filterState any // envoy.tcp_proxy.cluster, nil when unset
		want        string
	}{
		{name: "cluster", config: "stat_prefix: db\ncluster: backend\n", want: "backend"},
		{
			// Envoy: TcpProxy::PerConnectionCluster overrides the route.
			name: "filter state overrides cluster", config: "stat_prefix: db\ncluster: backend\n",
			filterState: "db.example.com", want: "db.example.com",
		},
		{
			name:        "filter state overrides weighted_clusters",
			config:      "stat_prefix: db\nweighted_clusters: { clusters: [{ name: a, weight: 1 }] }\n",
			filterState: "sni-cluster", want: "sni-cluster",
		},
		{name: "empty filter state is ignored", config: "stat_prefix: db\ncluster: backend\n", filterState: "", want: "backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, _ := tcpBuildContext(t)
			nf, err := Build(parseTCPProxy(t, tc.config, false), ctx)
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			c := network.NewConn(context.Background(), a, nil)
			if tc.filterState != nil {
				c.SetFilterState(network.FilterStateTCPProxyCluster, tc.filterState)
			}
			if got := nf.(*Filter).pickCluster(c); got != tc.want {
				t.Errorf("pickCluster = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLBContext(t *testing.T) {
	ctx, _ := tcpBuildContext(t)
	hashed, err := Build(parseTCPProxy(t, "stat_prefix: db\ncluster: b\nhash_policy: [{ source_ip: {} }]\n", false), ctx)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Build(parseTCPProxy(t, "stat_prefix: db\ncluster: b\n", false), ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := hashed.(*Filter)
	a := f.lbContext(netip.MustParseAddrPort("10.0.0.1:1000"))
	b := f.lbContext(netip.MustParseAddrPort("10.0.0.1:2000"))
	c := f.lbContext(netip.MustParseAddrPort("10.0.0.2:1000"))
	if !a.HasHash || a.Hash != b.Hash {
		t.Errorf("same IP, other port: %+v vs %+v, want the same hash", a, b)
	}
	// Envoy's SourceIpHashMethod: xxHash64 of addressAsString().
	if want := xxhash.Sum64String("10.0.0.1"); a.Hash != want {
		t.Errorf("hash = %x, want xxHash64(\"10.0.0.1\") = %x", a.Hash, want)
	}
	if a.Hash == c.Hash {
		t.Errorf("other IP: hash %x equals %x", c.Hash, a.Hash)
	}
	if got := plain.(*Filter).lbContext(netip.MustParseAddrPort("10.0.0.1:1000")); got.HasHash {
		t.Errorf("without hash_policy: %+v, want no hash", got)
	}
}
