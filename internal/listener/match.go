package listener

import (
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/herald-proxy/herald/internal/network"
)

// SourceType is filter_chain_match.source_type (values as in the proto).
type SourceType int

const (
	// SourceAny matches every connection.
	SourceAny SourceType = iota
	// SourceLocal is SAME_IP_OR_LOOPBACK: the peer is a loopback address
	// or the listener's own address.
	SourceLocal
	// SourceExternal is every other peer.
	SourceExternal
)

// ChainMatch is one filter chain's filter_chain_match, decoded: zero
// values mean "any". Server names are lowercase; "*.example.com" is a
// wildcard.
type ChainMatch struct {
	DestinationPort          uint32
	PrefixRanges             []netip.Prefix
	ServerNames              []string
	TransportProtocol        string
	ApplicationProtocols     []string
	DirectSourcePrefixRanges []netip.Prefix
	SourceType               SourceType
	SourcePrefixRanges       []netip.Prefix
	SourcePorts              []uint32
}

// ErrOverlappingMatch is Envoy's error for two filter chains whose
// filter_chain_match overlap in their repeated fields.
var ErrOverlappingMatch = errors.New("multiple filter chains with overlapping matching rules are defined")

// OverlapError says which chain overlapped an earlier one; it Is
// ErrOverlappingMatch.
type OverlapError struct {
	// Index is the position of the chain in NewChainMatcher's chains.
	Index int
}

func (e *OverlapError) Error() string        { return ErrOverlappingMatch.Error() }
func (e *OverlapError) Is(target error) bool { return target == ErrOverlappingMatch }

// ChainMatcher selects a connection's filter chain: Envoy's
// FilterChainManagerImpl::findFilterChain. Criteria are tried in Envoy's
// fixed order (destination port, destination IP, server name, transport
// protocol, application protocols, direct source IP, source type, source
// IP, source port); at each level the most specific value present in any
// chain that matches the connection is taken, and the search never
// backtracks: if that branch has no chain for the remaining criteria, the
// default chain is used
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener_components.proto#config-listener-v3-filterchainmatch).
// Immutable after NewChainMatcher; Match does not allocate.
type ChainMatcher struct {
	ports   map[uint32]*ipTable[*sniNode] // 0 is "any port"
	def     *FilterChain
	anyPort *ipTable[*sniNode]
}

type sniNode struct {
	// names holds exact names and wildcard suffixes (".example.com" for
	// "*.example.com"); "" is "no server_names".
	names map[string]*transportNode
}

type transportNode struct {
	protos map[string]*alpnNode // "" is any
}

type alpnNode struct {
	protos map[string]*ipTable[*sourceTypeNode] // "" is any; the table is direct source IPs
}

type sourceTypeNode struct {
	types [3]*ipTable[*portNode] // by SourceType; tables are source IPs
}

type portNode struct {
	ports map[uint32]*FilterChain // 0 is any
}

// NewChainMatcher compiles chains[i] with matches[i]; def is
// default_filter_chain (nil when none). It returns an *OverlapError when
// two chains claim the same combination of criteria.
func NewChainMatcher(chains []*FilterChain, matches []ChainMatch, def *FilterChain) (*ChainMatcher, error) {
	m := &ChainMatcher{ports: map[uint32]*ipTable[*sniNode]{}, def: def}
	for i, fc := range chains {
		if err := m.add(&matches[i], fc); err != nil {
			return nil, &OverlapError{Index: i}
		}
	}
	for _, t := range m.ports {
		t.compile()
		for _, sn := range t.values() {
			for _, tn := range sn.names {
				for _, an := range tn.protos {
					for _, dst := range an.protos {
						dst.compile()
						for _, st := range dst.values() {
							for _, src := range st.types {
								if src != nil {
									src.compile()
								}
							}
						}
					}
				}
			}
		}
	}
	m.anyPort = m.ports[0]
	return m, nil
}

func orAny[T comparable](vs []T) []T {
	if len(vs) == 0 {
		var zero T
		return []T{zero}
	}
	return vs
}

func (m *ChainMatcher) add(cm *ChainMatch, fc *FilterChain) error {
	dst := m.ports[cm.DestinationPort]
	if dst == nil {
		dst = newIPTable[*sniNode]()
		m.ports[cm.DestinationPort] = dst
	}
	for _, p := range orAny(cm.PrefixRanges) {
		sn := dst.get(p, func() *sniNode { return &sniNode{names: map[string]*transportNode{}} })
		for _, name := range orAny(cm.ServerNames) {
			key := name
			if strings.HasPrefix(name, "*.") {
				key = name[1:]
			}
			tn := sn.names[key]
			if tn == nil {
				tn = &transportNode{protos: map[string]*alpnNode{}}
				sn.names[key] = tn
			}
			an := tn.protos[cm.TransportProtocol]
			if an == nil {
				an = &alpnNode{protos: map[string]*ipTable[*sourceTypeNode]{}}
				tn.protos[cm.TransportProtocol] = an
			}
			for _, proto := range orAny(cm.ApplicationProtocols) {
				ds := an.protos[proto]
				if ds == nil {
					ds = newIPTable[*sourceTypeNode]()
					an.protos[proto] = ds
				}
				for _, dp := range orAny(cm.DirectSourcePrefixRanges) {
					st := ds.get(dp, func() *sourceTypeNode { return &sourceTypeNode{} })
					src := st.types[cm.SourceType]
					if src == nil {
						src = newIPTable[*portNode]()
						st.types[cm.SourceType] = src
					}
					for _, sp := range orAny(cm.SourcePrefixRanges) {
						pn := src.get(sp, func() *portNode { return &portNode{ports: map[uint32]*FilterChain{}} })
						for _, port := range orAny(cm.SourcePorts) {
							if _, dup := pn.ports[port]; dup {
								return ErrOverlappingMatch
							}
							pn.ports[port] = fc
						}
					}
				}
			}
		}
	}
	return nil
}

// Match returns the filter chain for c, or nil when none matches and there
// is no default chain.
func (m *ChainMatcher) Match(c *network.Conn) *FilterChain {
	// Envoy: "There is entry for specific port but none of the filter
	// chain matches. Instead of matching catch-all port 0, the fallback
	// filter chain is returned."
	if t := m.ports[uint32(c.Local.Port())]; t != nil && c.Local.Port() != 0 {
		if fc := m.matchDestination(t, c); fc != nil {
			return fc
		}
		return m.def
	}
	if m.anyPort != nil {
		if fc := m.matchDestination(m.anyPort, c); fc != nil {
			return fc
		}
	}
	return m.def
}

func (m *ChainMatcher) matchDestination(t *ipTable[*sniNode], c *network.Conn) *FilterChain {
	sn, ok := t.lookup(c.Local.Addr())
	if !ok {
		return nil
	}
	name := c.ServerName
	if tn := sn.names[name]; tn != nil && name != "" {
		return matchTransport(tn, c)
	}
	// Wildcards from the most specific: ".example.com", then ".com"
	// (Envoy: server_name.find('.', 1) onwards, never the bare TLD dot
	// at the end).
	for pos := indexFrom(name, '.', 1); pos >= 0 && pos < len(name)-1; pos = indexFrom(name, '.', pos+1) {
		if tn := sn.names[name[pos:]]; tn != nil {
			return matchTransport(tn, c)
		}
	}
	if tn := sn.names[""]; tn != nil {
		return matchTransport(tn, c)
	}
	return nil
}

// indexFrom is the index of the first c in s at or after from, or -1.
func indexFrom(s string, c byte, from int) int {
	if from >= len(s) {
		return -1
	}
	if i := strings.IndexByte(s[from:], c); i >= 0 {
		return from + i
	}
	return -1
}

func matchTransport(tn *transportNode, c *network.Conn) *FilterChain {
	if an := tn.protos[c.TransportProtocol]; an != nil && c.TransportProtocol != "" {
		return matchALPN(an, c)
	}
	if an := tn.protos[""]; an != nil {
		return matchALPN(an, c)
	}
	return nil
}

func matchALPN(an *alpnNode, c *network.Conn) *FilterChain {
	for _, p := range c.RequestedALPN {
		if ds := an.protos[p]; ds != nil && p != "" {
			return matchDirectSource(ds, c)
		}
	}
	if ds := an.protos[""]; ds != nil {
		return matchDirectSource(ds, c)
	}
	return nil
}

func matchDirectSource(ds *ipTable[*sourceTypeNode], c *network.Conn) *FilterChain {
	st, ok := ds.lookup(c.DirectRemote.Addr())
	if !ok {
		return nil
	}
	local, external := st.types[SourceLocal], st.types[SourceExternal]
	if local != nil || external != nil {
		if isLocal(c) {
			if local != nil {
				return matchSource(local, c)
			}
		} else if external != nil {
			return matchSource(external, c)
		}
	}
	if any := st.types[SourceAny]; any != nil {
		return matchSource(any, c)
	}
	return nil
}

// isLocal is Envoy's Utility::isSameIpOrLoopback.
func isLocal(c *network.Conn) bool {
	r := c.Remote.Addr()
	return r.IsLoopback() || r == c.Local.Addr()
}

func matchSource(t *ipTable[*portNode], c *network.Conn) *FilterChain {
	pn, ok := t.lookup(c.Remote.Addr())
	if !ok {
		return nil
	}
	if fc := pn.ports[uint32(c.Remote.Port())]; fc != nil {
		return fc
	}
	return pn.ports[0]
}

// ipTable maps CIDR ranges to values and finds the longest range holding
// an address (Envoy's LcTrie, for the few ranges a listener has). The zero
// Prefix stands for "no ranges configured": 0.0.0.0/0 and ::/0.
type ipTable[T any] struct {
	byPrefix map[netip.Prefix]T
	sorted   []ipEntry[T] // longest prefix first, after compile
}

type ipEntry[T any] struct {
	p       netip.Prefix
	v       T
	implied bool // a catch-all standing for "no ranges configured"
}

func newIPTable[T any]() *ipTable[T] { return &ipTable[T]{byPrefix: map[netip.Prefix]T{}} }

func (t *ipTable[T]) get(p netip.Prefix, mk func() T) T {
	if p.IsValid() {
		p = p.Masked()
	}
	v, ok := t.byPrefix[p]
	if !ok {
		v = mk()
		t.byPrefix[p] = v
	}
	return v
}

func (t *ipTable[T]) values() []T {
	out := make([]T, 0, len(t.byPrefix))
	for _, v := range t.byPrefix {
		out = append(out, v)
	}
	return out
}

var catchAll = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

func (t *ipTable[T]) compile() {
	t.sorted = t.sorted[:0]
	for p, v := range t.byPrefix {
		if !p.IsValid() {
			for _, ca := range catchAll {
				t.sorted = append(t.sorted, ipEntry[T]{p: ca, v: v, implied: true})
			}
			continue
		}
		t.sorted = append(t.sorted, ipEntry[T]{p: p, v: v})
	}
	// Longest first; an explicit 0.0.0.0/0 before the implied one.
	slices.SortFunc(t.sorted, func(a, b ipEntry[T]) int {
		if d := b.p.Bits() - a.p.Bits(); d != 0 {
			return d
		}
		switch {
		case a.implied == b.implied:
			return a.p.Addr().Compare(b.p.Addr())
		case a.implied:
			return 1
		}
		return -1
	})
}

func (t *ipTable[T]) lookup(a netip.Addr) (T, bool) {
	for i := range t.sorted {
		if t.sorted[i].p.Contains(a) {
			return t.sorted[i].v, true
		}
	}
	var zero T
	return zero, false
}
