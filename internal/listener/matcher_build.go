package listener

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	xdscorev3 "github.com/cncf/xds/go/xds/core/v3"
	matcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	// The network inputs' protos, so that YAML typed_config resolves them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	envoymatcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/matcher"
)

// networkInputs maps the network input type URLs to inputs (the inputs
// Envoy registers for the listener's MatchingData,
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/matching/matching_api#network-input-functions).
var networkInputs = map[string]NetworkInput{
	"envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput":       InputDestinationIP,
	"envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput":     InputDestinationPort,
	"envoy.extensions.matching.common_inputs.network.v3.SourceIPInput":            InputSourceIP,
	"envoy.extensions.matching.common_inputs.network.v3.SourcePortInput":          InputSourcePort,
	"envoy.extensions.matching.common_inputs.network.v3.DirectSourceIPInput":      InputDirectSourceIP,
	"envoy.extensions.matching.common_inputs.network.v3.SourceTypeInput":          InputSourceType,
	"envoy.extensions.matching.common_inputs.network.v3.ServerNameInput":          InputServerName,
	"envoy.extensions.matching.common_inputs.network.v3.TransportProtocolInput":   InputTransportProtocol,
	"envoy.extensions.matching.common_inputs.network.v3.ApplicationProtocolInput": InputApplicationProtocol,
}

var protoUnmarshal = proto.UnmarshalOptions{}

const (
	typePrefix    = "type.googleapis.com/"
	stringValue   = "google.protobuf.StringValue"
	ipMatcherType = "xds.type.matcher.v3.IPMatcher"
)

// BuildFilterChainMatcher compiles a listener's filter_chain_matcher (at
// path) against its filter chains, found by name; def is
// default_filter_chain (nil when none). Actions must be
// google.protobuf.StringValue naming a filter chain; a name no chain has
// is accepted and fails the match at run time, as Envoy documents.
func BuildFilterChainMatcher(m *matcherv3.Matcher, chains []*FilterChain, def *FilterChain, path string) (*FilterChainMatcher, error) {
	b := matcherBuilder{byName: map[string]*FilterChain{}}
	for _, fc := range chains {
		b.byName[fc.Name] = fc
	}
	root := b.tree(m, path)
	if err := b.errs.Err(); err != nil {
		return nil, err
	}
	return &FilterChainMatcher{root: root, def: def}, nil
}

type matcherBuilder struct {
	byName map[string]*FilterChain
	errs   configerr.List
}

func (b *matcherBuilder) fail(path, format string, args ...any) {
	b.errs = append(b.errs, configerr.At(path, format, args...))
}

func (b *matcherBuilder) tree(m *matcherv3.Matcher, path string) *matchTree {
	t := &matchTree{}
	if m.GetOnNoMatch() != nil {
		t.onNoMatch = b.onMatch(m.GetOnNoMatch(), path+".on_no_match")
	}
	switch {
	case m.GetMatcherList() != nil:
		lpath := path + ".matcher_list.matchers"
		if len(m.GetMatcherList().GetMatchers()) == 0 {
			b.fail(lpath, "matcher_list needs at least one matcher")
		}
		for i, fm := range m.GetMatcherList().GetMatchers() {
			fpath := fmt.Sprintf("%s[%d]", lpath, i)
			t.list = append(t.list, fieldMatcher{
				pred: b.predicate(fm.GetPredicate(), fpath+".predicate"),
				on:   b.onMatch(fm.GetOnMatch(), fpath+".on_match"),
			})
		}
	case m.GetMatcherTree() != nil:
		b.matcherTree(t, m.GetMatcherTree(), path+".matcher_tree")
	default:
		// Envoy: a Matcher with neither list nor tree only has on_no_match.
		t.list = []fieldMatcher{}
	}
	return t
}

func (b *matcherBuilder) matcherTree(t *matchTree, mt *matcherv3.Matcher_MatcherTree, path string) {
	in, ok := b.input(mt.GetInput(), path+".input")
	t.input = in
	switch {
	case mt.GetExactMatchMap() != nil:
		t.exact = map[string]*onMatch{}
		for _, k := range sortedKeys(mt.GetExactMatchMap().GetMap()) {
			t.exact[k] = b.onMatch(mt.GetExactMatchMap().GetMap()[k], fmt.Sprintf("%s.exact_match_map.map[%q]", path, k))
		}
	case mt.GetPrefixMatchMap() != nil:
		t.prefix = []prefixEntry{}
		for _, k := range sortedKeys(mt.GetPrefixMatchMap().GetMap()) {
			t.prefix = append(t.prefix, prefixEntry{prefix: k, on: b.onMatch(mt.GetPrefixMatchMap().GetMap()[k], fmt.Sprintf("%s.prefix_match_map.map[%q]", path, k))})
		}
		t.sortPrefix()
	case mt.GetCustomMatch() != nil:
		cpath := path + ".custom_match"
		tc := mt.GetCustomMatch().GetTypedConfig()
		if strings.TrimPrefix(tc.GetTypeUrl(), typePrefix) != ipMatcherType {
			b.fail(cpath, "custom matcher %q is not supported by herald yet (supported: envoy.matching.custom_matchers.trie_matcher)", tc.GetTypeUrl())
			return
		}
		var ipm matcherv3.IPMatcher
		if err := anypb.UnmarshalTo(tc, &ipm, protoUnmarshal); err != nil {
			b.fail(cpath+".typed_config", "%v", err)
			return
		}
		if ok && in != InputDestinationIP && in != InputSourceIP && in != InputDirectSourceIP {
			// Envoy's trie matcher parses the input as an IP; only the IP
			// inputs can produce one.
			b.fail(path+".input", "envoy.matching.custom_matchers.trie_matcher needs an IP input (destination_ip, source_ip, direct_source_ip)")
		}
		t.ip = []ipRangeEntry{}
		for i, rm := range ipm.GetRangeMatchers() {
			rpath := fmt.Sprintf("%s.typed_config.range_matchers[%d]", cpath, i)
			on := b.onMatch(rm.GetOnMatch(), rpath+".on_match")
			for j, r := range rm.GetRanges() {
				p, err := xdsCIDR(r)
				if err != nil {
					b.fail(fmt.Sprintf("%s.ranges[%d]", rpath, j), "%v", err)
					continue
				}
				t.ip = append(t.ip, ipRangeEntry{p: p, on: on, exclusive: rm.GetExclusive()})
			}
		}
		t.sortIP()
	default:
		b.fail(path, "matcher_tree needs exact_match_map, prefix_match_map or custom_match")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (b *matcherBuilder) input(in interface {
	GetName() string
	GetTypedConfig() *anypb.Any
}, path string) (NetworkInput, bool) {
	url := strings.TrimPrefix(in.GetTypedConfig().GetTypeUrl(), typePrefix)
	v, ok := networkInputs[url]
	if !ok {
		if url == "" {
			b.fail(path+".typed_config", "an input needs a typed_config")
		} else {
			b.fail(path+".typed_config", "input %q is not supported in filter_chain_matcher by herald", url)
		}
	}
	return v, ok
}

func (b *matcherBuilder) onMatch(o *matcherv3.Matcher_OnMatch, path string) *onMatch {
	if o.GetKeepMatching() {
		b.fail(path+".keep_matching", "keep_matching is not supported by herald yet")
	}
	switch {
	case o.GetMatcher() != nil:
		return &onMatch{nested: b.tree(o.GetMatcher(), path+".matcher")}
	case o.GetAction() != nil:
		tc := o.GetAction().GetTypedConfig()
		if strings.TrimPrefix(tc.GetTypeUrl(), typePrefix) != stringValue {
			// Envoy's filter chain action is a StringValue naming the chain.
			b.fail(path+".action.typed_config", "the action of filter_chain_matcher must be google.protobuf.StringValue naming a filter chain, not %q", tc.GetTypeUrl())
			return &onMatch{}
		}
		var name wrapperspb.StringValue
		if err := anypb.UnmarshalTo(tc, &name, protoUnmarshal); err != nil {
			b.fail(path+".action.typed_config", "%v", err)
			return &onMatch{}
		}
		return &onMatch{chain: b.byName[name.GetValue()], named: name.GetValue()}
	}
	b.fail(path, "on_match needs a matcher or an action")
	return &onMatch{}
}

func (b *matcherBuilder) predicate(p *matcherv3.Matcher_MatcherList_Predicate, path string) predicate {
	switch {
	case p.GetSinglePredicate() != nil:
		sp := p.GetSinglePredicate()
		spath := path + ".single_predicate"
		in, _ := b.input(sp.GetInput(), spath+".input")
		out := predicate{kind: predSingle, input: in}
		switch {
		case sp.GetValueMatch() != nil:
			out.str = b.stringMatch(sp.GetValueMatch(), spath+".value_match")
		case sp.GetCustomMatch() != nil:
			tc := sp.GetCustomMatch().GetTypedConfig()
			if strings.TrimPrefix(tc.GetTypeUrl(), typePrefix) != ipMatcherType {
				b.fail(spath+".custom_match", "custom matcher %q is not supported by herald yet", tc.GetTypeUrl())
				break
			}
			var ipm matcherv3.IPMatcher
			if err := anypb.UnmarshalTo(tc, &ipm, protoUnmarshal); err != nil {
				b.fail(spath+".custom_match.typed_config", "%v", err)
				break
			}
			out.ip = []netip.Prefix{}
			for i, rm := range ipm.GetRangeMatchers() {
				for j, r := range rm.GetRanges() {
					pr, err := xdsCIDR(r)
					if err != nil {
						b.fail(fmt.Sprintf("%s.custom_match.typed_config.range_matchers[%d].ranges[%d]", spath, i, j), "%v", err)
						continue
					}
					out.ip = append(out.ip, pr)
				}
			}
		default:
			b.fail(spath, "single_predicate needs value_match or custom_match")
		}
		return out
	case p.GetOrMatcher() != nil, p.GetAndMatcher() != nil:
		kind, list, lpath := predOr, p.GetOrMatcher(), path+".or_matcher"
		if p.GetAndMatcher() != nil {
			kind, list, lpath = predAnd, p.GetAndMatcher(), path+".and_matcher"
		}
		out := predicate{kind: kind}
		for i, sub := range list.GetPredicate() {
			out.subs = append(out.subs, b.predicate(sub, fmt.Sprintf("%s.predicate[%d]", lpath, i)))
		}
		return out
	case p.GetNotMatcher() != nil:
		return predicate{kind: predNot, subs: []predicate{b.predicate(p.GetNotMatcher(), path+".not_matcher")}}
	}
	b.fail(path, "a predicate needs single_predicate, or_matcher, and_matcher or not_matcher")
	return predicate{kind: predOr}
}

// stringMatch compiles an xds.type.matcher.v3.StringMatcher with
// internal/matcher, the compiler the router and RBAC use: the xds proto
// has the same fields as envoy.type.matcher.v3.StringMatcher, and Envoy
// builds both with the one StringMatcherImpl.
func (b *matcherBuilder) stringMatch(s *matcherv3.StringMatcher, path string) *matcher.String {
	em := &envoymatcherv3.StringMatcher{IgnoreCase: s.GetIgnoreCase()}
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		em.MatchPattern = &envoymatcherv3.StringMatcher_Exact{Exact: p.Exact}
	case *matcherv3.StringMatcher_Prefix:
		em.MatchPattern = &envoymatcherv3.StringMatcher_Prefix{Prefix: p.Prefix}
	case *matcherv3.StringMatcher_Suffix:
		em.MatchPattern = &envoymatcherv3.StringMatcher_Suffix{Suffix: p.Suffix}
	case *matcherv3.StringMatcher_Contains:
		em.MatchPattern = &envoymatcherv3.StringMatcher_Contains{Contains: p.Contains}
	case *matcherv3.StringMatcher_SafeRegex:
		em.MatchPattern = &envoymatcherv3.StringMatcher_SafeRegex{SafeRegex: &envoymatcherv3.RegexMatcher{Regex: p.SafeRegex.GetRegex()}}
	default:
		b.fail(path, "string matcher %T is not supported by herald yet", s.GetMatchPattern())
		return &matcher.String{}
	}
	m, _ := matcher.NewString(em, path, &b.errs)
	return &m
}

func xdsCIDR(r *xdscorev3.CidrRange) (netip.Prefix, error) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("malformed IP address: %s", r.GetAddressPrefix())
	}
	bits := int(r.GetPrefixLen().GetValue())
	p, err := a.Unmap().Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid prefix length %d for %s", bits, a)
	}
	return p, nil
}
