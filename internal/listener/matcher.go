package listener

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/network"
)

// FilterChainMatcher is a listener's filter_chain_matcher: Envoy's unified
// matcher API (xds.type.matcher.v3.Matcher) over network inputs, whose
// actions name a filter chain. "If there is no filter chain with the given
// name, the match fails, and the default filter chain is used if specified,
// or the connection is rejected"
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/matching/matching_listener).
// Immutable after BuildFilterChainMatcher; safe for concurrent use.
type FilterChainMatcher struct {
	root *matchTree
	def  *FilterChain
}

// Match returns the filter chain for c, or nil when the matcher selects
// none and there is no default chain.
func (m *FilterChainMatcher) Match(c *network.Conn) *FilterChain {
	if r, ok := m.root.eval(c); ok && r.chain != nil {
		return r.chain
	}
	return m.def
}

// NetworkInput is one of Envoy's network matching inputs
// (envoy.matching.inputs.*), read from a connection.
type NetworkInput int

const (
	// InputDestinationIP is envoy.matching.inputs.destination_ip: the local address.
	InputDestinationIP NetworkInput = iota
	// InputDestinationPort is envoy.matching.inputs.destination_port, as decimal.
	InputDestinationPort
	// InputSourceIP is envoy.matching.inputs.source_ip: the remote address.
	InputSourceIP
	// InputSourcePort is envoy.matching.inputs.source_port, as decimal.
	InputSourcePort
	// InputDirectSourceIP is envoy.matching.inputs.direct_source_ip: the socket peer.
	InputDirectSourceIP
	// InputSourceType is envoy.matching.inputs.source_type: "local" for a
	// loopback or same-IP peer, else no value.
	InputSourceType
	// InputServerName is envoy.matching.inputs.server_name: the SNI, no
	// value when empty.
	InputServerName
	// InputTransportProtocol is envoy.matching.inputs.transport_protocol.
	InputTransportProtocol
	// InputApplicationProtocol is envoy.matching.inputs.application_protocol:
	// the requested ALPN as "'h2','http/1.1'", no value when none.
	InputApplicationProtocol
)

// get returns the input's value for c; ok is false for Envoy's "no value"
// (absl::monostate), which selects on_no_match
// (source/extensions/matching/network/common/inputs.h).
func (in NetworkInput) get(c *network.Conn) (string, bool) {
	switch in {
	case InputDestinationIP:
		return addrString(c.Local.Addr())
	case InputDestinationPort:
		return strconv.Itoa(int(c.Local.Port())), c.Local.IsValid()
	case InputSourceIP:
		return addrString(c.Remote.Addr())
	case InputSourcePort:
		return strconv.Itoa(int(c.Remote.Port())), c.Remote.IsValid()
	case InputDirectSourceIP:
		return addrString(c.DirectRemote.Addr())
	case InputSourceType:
		if isLocal(c) {
			return "local", true
		}
		return "", false
	case InputServerName:
		return c.ServerName, c.ServerName != ""
	case InputTransportProtocol:
		return c.TransportProtocol, c.TransportProtocol != ""
	case InputApplicationProtocol:
		if len(c.RequestedALPN) == 0 {
			return "", false
		}
		return "'" + strings.Join(c.RequestedALPN, "','") + "'", true
	}
	return "", false
}

// ip returns the input's address for IP matchers.
func (in NetworkInput) ip(c *network.Conn) (netip.Addr, bool) {
	var a netip.Addr
	switch in {
	case InputDestinationIP:
		a = c.Local.Addr()
	case InputSourceIP:
		a = c.Remote.Addr()
	case InputDirectSourceIP:
		a = c.DirectRemote.Addr()
	default:
		s, ok := in.get(c)
		if !ok {
			return a, false
		}
		p, err := netip.ParseAddr(s)
		return p.Unmap(), err == nil
	}
	return a.Unmap(), a.IsValid()
}

func addrString(a netip.Addr) (string, bool) {
	if !a.IsValid() {
		return "", false
	}
	return a.Unmap().String(), true
}

// onMatch is an xds OnMatch: a nested matcher or an action (a chain; a
// nil chain is an action naming no configured chain, which fails the
// match as Envoy documents).
type onMatch struct {
	nested *matchTree
	chain  *FilterChain
	// named is the action's filter chain name (for tests and logs).
	named string
}

// result is a completed match.
type result struct {
	chain *FilterChain
}

// eval resolves an OnMatch: an action matches; a nested matcher matches
// when it resolves to an action (its own on_no_match included).
func (o *onMatch) eval(c *network.Conn) (result, bool) {
	if o.nested != nil {
		return o.nested.eval(c)
	}
	return result{chain: o.chain}, true
}

// matchTree is one Matcher: a list, an exact or prefix map, or an IP
// trie, plus on_no_match. Exactly one of list, exact, prefix, ip is set.
type matchTree struct {
	onNoMatch *onMatch

	list []fieldMatcher

	input  NetworkInput
	exact  map[string]*onMatch
	prefix []prefixEntry // longest first
	ip     []ipRangeEntry
}

type prefixEntry struct {
	prefix string
	on     *onMatch
}

// ipRangeEntry is one range of envoy.matching.custom_matchers.trie_matcher
// (xds.type.matcher.v3.IPMatcher), sorted longest prefix first.
type ipRangeEntry struct {
	p         netip.Prefix
	on        *onMatch
	exclusive bool
}

// fieldMatcher is a matcher_list entry.
type fieldMatcher struct {
	pred predicate
	on   *onMatch
}

// eval is Envoy's MatchTree::match with every input available: a nested
// matcher that does not match falls through (exact map: to on_no_match;
// prefix map and IP trie: to the next shorter prefix, then on_no_match;
// list: to the next entry, then on_no_match), as
// source/common/matcher/{exact,prefix}_map_matcher.h, list_matcher.h and
// extensions/common/matcher/trie_matcher.h do.
func (t *matchTree) eval(c *network.Conn) (result, bool) {
	switch {
	case t.list != nil:
		for i := range t.list {
			if t.list[i].pred.match(c) {
				if r, ok := t.list[i].on.eval(c); ok {
					return r, true
				}
			}
		}
	case t.exact != nil:
		v, ok := t.input.get(c)
		if !ok {
			break
		}
		if on := t.exact[v]; on != nil {
			if r, ok := on.eval(c); ok {
				return r, true
			}
		}
	case t.prefix != nil:
		v, ok := t.input.get(c)
		if !ok {
			break
		}
		for i := range t.prefix {
			if strings.HasPrefix(v, t.prefix[i].prefix) {
				if r, ok := t.prefix[i].on.eval(c); ok {
					return r, true
				}
			}
		}
	case t.ip != nil:
		a, ok := t.input.ip(c)
		if !ok {
			break
		}
		// IPMatcher.IPRangeMatcher.exclusive: "Exclusive matchers are not
		// selected whenever a more specific matcher exists (e.g. matcher
		// with a longer prefix) even when the more specific matcher fails
		// its nested match condition."
		longest := -1
		for i := range t.ip {
			e := &t.ip[i]
			if !e.p.Contains(a) {
				continue
			}
			if e.exclusive && longest > e.p.Bits() {
				continue
			}
			if longest < 0 {
				longest = e.p.Bits()
			}
			if r, ok := e.on.eval(c); ok {
				return r, true
			}
		}
	}
	if t.onNoMatch != nil {
		return t.onNoMatch.eval(c)
	}
	return result{}, false
}

// sortIP orders an IP trie longest prefix first.
func (t *matchTree) sortIP() {
	slices.SortStableFunc(t.ip, func(a, b ipRangeEntry) int { return b.p.Bits() - a.p.Bits() })
}

// sortPrefix orders a prefix map longest prefix first.
func (t *matchTree) sortPrefix() {
	slices.SortStableFunc(t.prefix, func(a, b prefixEntry) int {
		if d := len(b.prefix) - len(a.prefix); d != 0 {
			return d
		}
		return strings.Compare(a.prefix, b.prefix)
	})
}

// predicate is a matcher_list Predicate.
type predicate struct {
	kind predicateKind
	// single
	input NetworkInput
	str   *matcher.String
	ip    []netip.Prefix // single predicate with an IP custom_match
	// or, and, not
	subs []predicate
}

type predicateKind int

const (
	predSingle predicateKind = iota
	predOr
	predAnd
	predNot
)

func (p *predicate) match(c *network.Conn) bool {
	switch p.kind {
	case predOr:
		for i := range p.subs {
			if p.subs[i].match(c) {
				return true
			}
		}
		return false
	case predAnd:
		for i := range p.subs {
			if !p.subs[i].match(c) {
				return false
			}
		}
		return true
	case predNot:
		return !p.subs[0].match(c)
	}
	if p.ip != nil {
		a, ok := p.input.ip(c)
		if !ok {
			return false
		}
		for _, r := range p.ip {
			if r.Contains(a) {
				return true
			}
		}
		return false
	}
	v, ok := p.input.get(c)
	if !ok {
		// Envoy's StringInputMatcher does not match a missing value.
		return false
	}
	return p.str.Match(v)
}
