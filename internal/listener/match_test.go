package listener

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/herald-proxy/herald/internal/network"
)

type conn struct {
	local, remote  string // "ip:port"
	sni, transport string
	alpn           []string
}

func (c conn) network() *network.Conn {
	nc := &network.Conn{
		Local:             netip.MustParseAddrPort(c.local),
		Remote:            netip.MustParseAddrPort(c.remote),
		ServerName:        c.sni,
		TransportProtocol: c.transport,
		RequestedALPN:     c.alpn,
	}
	nc.DirectRemote = nc.Remote
	return nc
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestChainMatcher(t *testing.T) {
	type chain struct {
		name  string
		match ChainMatch
	}
	tests := []struct {
		name    string
		chains  []chain
		withDef bool
		conn    conn
		want    string // "" means no chain
	}{
		{name: "empty match takes everything", chains: []chain{{name: "a"}},
			conn: conn{local: "127.0.0.1:443", remote: "127.0.0.1:5000"}, want: "a"},
		{name: "destination port beats any port", chains: []chain{{name: "any"}, {name: "443", match: ChainMatch{DestinationPort: 443}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:5000"}, want: "443"},
		// Envoy: a port with chains that do not match falls to the default
		// chain, not to the any-port chains.
		{name: "port subtree without a match uses the default", withDef: true,
			chains: []chain{{name: "any"}, {name: "443 tls", match: ChainMatch{DestinationPort: 443, TransportProtocol: "tls"}}},
			conn:   conn{local: "127.0.0.1:443", remote: "10.0.0.1:5000", transport: "raw_buffer"}, want: "default"},
		{name: "longest destination prefix", chains: []chain{
			{name: "/8", match: ChainMatch{PrefixRanges: prefixes("10.0.0.0/8")}},
			{name: "/24", match: ChainMatch{PrefixRanges: prefixes("10.1.2.0/24")}}},
			conn: conn{local: "10.1.2.3:80", remote: "10.9.9.9:5000"}, want: "/24"},
		{name: "exact server name first", chains: []chain{
			{name: "wild", match: ChainMatch{ServerNames: []string{"*.example.com"}}},
			{name: "exact", match: ChainMatch{ServerNames: []string{"www.example.com"}}},
			{name: "none"}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", sni: "www.example.com"}, want: "exact"},
		{name: "most specific wildcard", chains: []chain{
			{name: "com", match: ChainMatch{ServerNames: []string{"*.com"}}},
			{name: "example", match: ChainMatch{ServerNames: []string{"*.example.com"}}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", sni: "a.b.example.com"}, want: "example"},
		{name: "no server name falls to the chain without server_names", chains: []chain{
			{name: "sni", match: ChainMatch{ServerNames: []string{"example.com"}}}, {name: "none"}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1"}, want: "none"},
		{name: "unknown server name without catch-all", chains: []chain{{name: "sni", match: ChainMatch{ServerNames: []string{"example.com"}}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", sni: "other.org"}, want: ""},
		// No backtracking: the exact SNI branch wins even though only the
		// catch-all chain would match the transport protocol.
		{name: "no backtracking after the server name level", withDef: true, chains: []chain{
			{name: "sni raw", match: ChainMatch{ServerNames: []string{"example.com"}, TransportProtocol: "raw_buffer"}}, {name: "any"}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", sni: "example.com", transport: "tls"}, want: "default"},
		{name: "transport protocol", chains: []chain{{name: "tls", match: ChainMatch{TransportProtocol: "tls"}}, {name: "plain", match: ChainMatch{TransportProtocol: "raw_buffer"}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", transport: "raw_buffer"}, want: "plain"},
		{name: "application protocols in the client's order", chains: []chain{
			{name: "h11", match: ChainMatch{ApplicationProtocols: []string{"http/1.1"}}},
			{name: "h2", match: ChainMatch{ApplicationProtocols: []string{"h2"}}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", alpn: []string{"h2", "http/1.1"}}, want: "h2"},
		{name: "source type local", chains: []chain{{name: "local", match: ChainMatch{SourceType: SourceLocal}}, {name: "any"}},
			conn: conn{local: "127.0.0.1:443", remote: "127.0.0.1:1"}, want: "local"},
		{name: "source type external", chains: []chain{{name: "local", match: ChainMatch{SourceType: SourceLocal}}, {name: "external", match: ChainMatch{SourceType: SourceExternal}}},
			conn: conn{local: "10.0.0.2:443", remote: "10.0.0.1:1"}, want: "external"},
		{name: "source prefix and port", chains: []chain{
			{name: "net", match: ChainMatch{SourcePrefixRanges: prefixes("192.168.0.0/16")}},
			{name: "net port", match: ChainMatch{SourcePrefixRanges: prefixes("192.168.0.0/16"), SourcePorts: []uint32{4000}}},
			{name: "any"}},
			conn: conn{local: "10.0.0.2:443", remote: "192.168.1.1:4000"}, want: "net port"},
		{name: "IPv6 destination", chains: []chain{{name: "v4", match: ChainMatch{PrefixRanges: prefixes("0.0.0.0/0")}}, {name: "v6", match: ChainMatch{PrefixRanges: prefixes("::/0")}}},
			conn: conn{local: "[::1]:443", remote: "[::1]:1"}, want: "v6"},
		{name: "nothing matches, no default", chains: []chain{{name: "tls", match: ChainMatch{TransportProtocol: "tls"}}},
			conn: conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", transport: "raw_buffer"}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fcs []*FilterChain
			var ms []ChainMatch
			for _, c := range tc.chains {
				fcs = append(fcs, &FilterChain{Name: c.name})
				ms = append(ms, c.match)
			}
			var def *FilterChain
			if tc.withDef {
				def = &FilterChain{Name: "default"}
			}
			m, err := NewChainMatcher(fcs, ms, def)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if fc := m.Match(tc.conn.network()); fc != nil {
				got = fc.Name
			}
			if got != tc.want {
				t.Errorf("Match = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestChainMatcherOverlap(t *testing.T) {
	fcs := []*FilterChain{{Name: "a"}, {Name: "b"}}
	ms := []ChainMatch{{ServerNames: []string{"a.com", "b.com"}}, {ServerNames: []string{"b.com"}}}
	_, err := NewChainMatcher(fcs, ms, nil)
	var oe *OverlapError
	if !errors.As(err, &oe) || oe.Index != 1 || !errors.Is(err, ErrOverlappingMatch) {
		t.Fatalf("err = %v, want an OverlapError at index 1", err)
	}
}

func TestChainMatcherAllocs(t *testing.T) {
	fcs := []*FilterChain{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	ms := []ChainMatch{
		{ServerNames: []string{"*.example.com"}, TransportProtocol: "tls", ApplicationProtocols: []string{"h2"}},
		{ServerNames: []string{"www.example.com"}, SourcePrefixRanges: prefixes("10.0.0.0/8")},
		{},
	}
	m, err := NewChainMatcher(fcs, ms, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc := conn{local: "127.0.0.1:443", remote: "10.0.0.1:1", sni: "api.example.com", transport: "tls", alpn: []string{"http/1.1", "h2"}}.network()
	if got := m.Match(nc); got == nil || got.Name != "a" {
		t.Fatalf("Match = %v, want a", got)
	}
	if n := testing.AllocsPerRun(100, func() { m.Match(nc) }); n != 0 {
		t.Errorf("Match allocates %v times, want 0", n)
	}
}
