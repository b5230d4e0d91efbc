package listener

import (
	"strings"
	"testing"

	matcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Helpers writing matcher JSON: an action naming a chain, an input by its
// proto name.
func act(chain string) string {
	return `{"action":{"name":"n","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"` + chain + `"}}}`
}

func input(msg string) string {
	return `{"name":"i","typed_config":{"@type":"type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.` + msg + `"}}`
}

func exactTree(msg string, entries map[string]string, onNoMatch string) string {
	var b strings.Builder
	b.WriteString(`{"matcher_tree":{"input":` + input(msg) + `,"exact_match_map":{"map":{`)
	first := true
	for k, v := range entries {
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(`"` + k + `":` + v)
	}
	b.WriteString(`}}}`)
	if onNoMatch != "" {
		b.WriteString(`,"on_no_match":` + onNoMatch)
	}
	b.WriteString(`}`)
	return b.String()
}

func TestFilterChainMatcher(t *testing.T) {
	base := conn{local: "10.0.0.1:443", remote: "192.168.1.7:5000", transport: "tls", sni: "api.example.com", alpn: []string{"h2", "http/1.1"}}
	with := func(f func(*conn)) conn { c := base; f(&c); return c }
	tests := []struct {
		name    string
		matcher string
		withDef bool
		conn    conn
		want    string // "" means no chain
	}{
		{name: "destination_ip exact", matcher: exactTree("DestinationIPInput", map[string]string{"10.0.0.1": act("a")}, ""),
			conn: base, want: "a"},
		{name: "destination_port exact", matcher: exactTree("DestinationPortInput", map[string]string{"443": act("a"), "80": act("b")}, ""),
			conn: base, want: "a"},
		{name: "source_ip exact", matcher: exactTree("SourceIPInput", map[string]string{"192.168.1.7": act("a")}, ""),
			conn: base, want: "a"},
		{name: "source_port exact", matcher: exactTree("SourcePortInput", map[string]string{"5000": act("a")}, ""),
			conn: base, want: "a"},
		{name: "direct_source_ip exact", matcher: exactTree("DirectSourceIPInput", map[string]string{"192.168.1.7": act("a")}, ""),
			conn: base, want: "a"},
		{name: "source_type local", matcher: exactTree("SourceTypeInput", map[string]string{"local": act("a")}, act("b")),
			conn: with(func(c *conn) { c.remote = "127.0.0.1:9" }), want: "a"},
		// Envoy: a non-local peer has no source_type value: on_no_match.
		{name: "source_type external has no value", matcher: exactTree("SourceTypeInput", map[string]string{"local": act("a")}, act("b")),
			conn: base, want: "b"},
		{name: "server_name exact", matcher: exactTree("ServerNameInput", map[string]string{"api.example.com": act("a")}, ""),
			conn: base, want: "a"},
		{name: "no SNI selects on_no_match", matcher: exactTree("ServerNameInput", map[string]string{"api.example.com": act("a")}, act("b")),
			conn: with(func(c *conn) { c.sni = "" }), want: "b"},
		{name: "transport_protocol", matcher: exactTree("TransportProtocolInput", map[string]string{"tls": act("tls"), "raw_buffer": act("plain")}, ""),
			conn: with(func(c *conn) { c.transport = "raw_buffer" }), want: "plain"},
		// Envoy joins the requested protocols as 'p1','p2'.
		{name: "application_protocol joined", matcher: exactTree("ApplicationProtocolInput", map[string]string{`'h2','http/1.1'`: act("a")}, ""),
			conn: base, want: "a"},
		{name: "no match and no on_no_match", matcher: exactTree("DestinationPortInput", map[string]string{"80": act("a")}, ""),
			conn: base, want: ""},
		{name: "no match falls to the default chain", withDef: true, matcher: exactTree("DestinationPortInput", map[string]string{"80": act("a")}, ""),
			conn: base, want: "default"},
		// Envoy: an action naming no chain fails the match; the default
		// chain is used.
		{name: "unknown chain name uses the default", withDef: true, matcher: exactTree("DestinationPortInput", map[string]string{"443": act("nope")}, ""),
			conn: base, want: "default"},
		{name: "prefix map longest first",
			matcher: `{"matcher_tree":{"input":` + input("ServerNameInput") + `,"prefix_match_map":{"map":{"api":` + act("a") + `,"api.ex":` + act("b") + `}}}}`,
			conn:    base, want: "b"},
		// Envoy (prefix_map_matcher_resume_after_subtree_miss): a nested
		// miss under the longest prefix retries the shorter ones.
		{name: "prefix map retries shorter prefix after nested miss",
			matcher: `{"matcher_tree":{"input":` + input("ServerNameInput") + `,"prefix_match_map":{"map":{"api":` + act("a") +
				`,"api.ex":{"matcher":` + exactTree("DestinationPortInput", map[string]string{"80": act("b")}, "") + `}}}}}`,
			conn: base, want: "a"},
		{name: "nested tree: port then SNI",
			matcher: exactTree("DestinationPortInput", map[string]string{
				"443": `{"matcher":` + exactTree("ServerNameInput", map[string]string{"api.example.com": act("api")}, act("other443")) + `}`,
			}, act("fallback")),
			conn: base, want: "api"},
		{name: "nested on_no_match",
			matcher: exactTree("DestinationPortInput", map[string]string{
				"443": `{"matcher":` + exactTree("ServerNameInput", map[string]string{"www.example.com": act("www")}, act("other443")) + `}`,
			}, act("fallback")),
			conn: base, want: "other443"},
		// A nested matcher without on_no_match that misses falls to the
		// parent's on_no_match (Envoy's handleRecursionAndSkips, then doNoMatch).
		{name: "nested miss uses the parent's on_no_match",
			matcher: exactTree("DestinationPortInput", map[string]string{
				"443": `{"matcher":` + exactTree("ServerNameInput", map[string]string{"www.example.com": act("www")}, "") + `}`,
			}, act("fallback")),
			conn: base, want: "fallback"},
		{name: "IP trie longest range",
			matcher: `{"matcher_tree":{"input":` + input("SourceIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"192.168.0.0","prefix_len":16}],"on_match":` + act("wide") + `},` +
				`{"ranges":[{"address_prefix":"192.168.1.0","prefix_len":24}],"on_match":` + act("narrow") + `}]}}}}`,
			conn: base, want: "narrow"},
		{name: "IP trie falls back to shorter range on nested miss",
			matcher: `{"matcher_tree":{"input":` + input("SourceIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"192.168.0.0","prefix_len":16}],"on_match":` + act("wide") + `},` +
				`{"ranges":[{"address_prefix":"192.168.1.0","prefix_len":24}],"on_match":{"matcher":` + exactTree("DestinationPortInput", map[string]string{"80": act("narrow")}, "") + `}}]}}}}`,
			conn: base, want: "wide"},
		// exclusive: not selected when a longer range holds the address,
		// even if that range's nested matcher misses.
		{name: "IP trie exclusive range skipped", withDef: true,
			matcher: `{"matcher_tree":{"input":` + input("SourceIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"192.168.0.0","prefix_len":16}],"on_match":` + act("wide") + `,"exclusive":true},` +
				`{"ranges":[{"address_prefix":"192.168.1.0","prefix_len":24}],"on_match":{"matcher":` + exactTree("DestinationPortInput", map[string]string{"80": act("narrow")}, "") + `}}]}}}}`,
			conn: base, want: "default"},
		{name: "IP trie outside every range", withDef: true,
			matcher: `{"matcher_tree":{"input":` + input("DestinationIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"172.16.0.0","prefix_len":12}],"on_match":` + act("a") + `}]}}}}`,
			conn: base, want: "default"},
		{name: "matcher_list first match wins",
			matcher: `{"matcher_list":{"matchers":[` +
				`{"predicate":{"single_predicate":{"input":` + input("DestinationPortInput") + `,"value_match":{"exact":"80"}}},"on_match":` + act("a") + `},` +
				`{"predicate":{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"suffix":".EXAMPLE.com","ignore_case":true}}},"on_match":` + act("b") + `},` +
				`{"predicate":{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"prefix":"api"}}},"on_match":` + act("c") + `}]}}`,
			conn: base, want: "b"},
		{name: "matcher_list and/not/or",
			matcher: `{"matcher_list":{"matchers":[{"predicate":{"and_matcher":{"predicate":[` +
				`{"single_predicate":{"input":` + input("TransportProtocolInput") + `,"value_match":{"exact":"tls"}}},` +
				`{"not_matcher":{"single_predicate":{"input":` + input("DestinationPortInput") + `,"value_match":{"exact":"80"}}}},` +
				`{"or_matcher":{"predicate":[{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"safe_regex":{"regex":"api\\..*"}}}},` +
				`{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"contains":"nothing"}}}]}}` +
				`]}},"on_match":` + act("a") + `}]},"on_no_match":` + act("b") + `}`,
			conn: base, want: "a"},
		{name: "matcher_list source IP predicate with trie custom_match",
			matcher: `{"matcher_list":{"matchers":[{"predicate":{"single_predicate":{"input":` + input("SourceIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"192.168.0.0","prefix_len":16}]}]}}}},"on_match":` + act("a") + `}]},"on_no_match":` + act("b") + `}`,
			conn: base, want: "a"},
		{name: "matcher_list contains ignore_case",
			matcher: `{"matcher_list":{"matchers":[{"predicate":{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"contains":"EXAMPLE","ignore_case":true}}},"on_match":` + act("a") + `}]},"on_no_match":` + act("b") + `}`,
			conn:    base, want: "a"},
		{name: "only on_no_match", matcher: `{"on_no_match":` + act("a") + `}`, conn: base, want: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m matcherv3.Matcher
			if err := protojson.Unmarshal([]byte(tc.matcher), &m); err != nil {
				t.Fatalf("matcher JSON: %v\n%s", err, tc.matcher)
			}
			var chains []*FilterChain
			for _, n := range []string{"a", "b", "c", "api", "www", "other443", "fallback", "tls", "plain", "wide", "narrow"} {
				chains = append(chains, &FilterChain{Name: n})
			}
			var def *FilterChain
			if tc.withDef {
				def = &FilterChain{Name: "default"}
			}
			fm, err := BuildFilterChainMatcher(&m, chains, def, "filter_chain_matcher")
			if err != nil {
				t.Fatalf("BuildFilterChainMatcher: %v", err)
			}
			got := ""
			if fc := fm.Match(tc.conn.network()); fc != nil {
				got = fc.Name
			}
			if got != tc.want {
				t.Errorf("Match = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBuildFilterChainMatcherErrors(t *testing.T) {
	tests := []struct {
		name    string
		matcher string
		wantErr string
	}{
		{name: "action not a StringValue",
			matcher: `{"on_no_match":{"action":{"name":"n","typed_config":{"@type":"type.googleapis.com/google.protobuf.UInt32Value","value":1}}}}`,
			wantErr: "filter_chain_matcher.on_no_match.action.typed_config: the action of filter_chain_matcher must be google.protobuf.StringValue"},
		{name: "keep_matching refused",
			matcher: `{"on_no_match":{"keep_matching":true,"action":{"name":"n","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"a"}}}}`,
			wantErr: "filter_chain_matcher.on_no_match.keep_matching: keep_matching is not supported by herald yet"},
		{name: "trie on a non-IP input",
			matcher: `{"matcher_tree":{"input":` + input("ServerNameInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[]}}}}`,
			wantErr: "filter_chain_matcher.matcher_tree.input: envoy.matching.custom_matchers.trie_matcher needs an IP input"},
		{name: "bad regex",
			matcher: `{"matcher_list":{"matchers":[{"predicate":{"single_predicate":{"input":` + input("ServerNameInput") + `,"value_match":{"safe_regex":{"regex":"("}}}},"on_match":` + act("a") + `}]}}`,
			wantErr: "filter_chain_matcher.matcher_list.matchers[0].predicate.single_predicate.value_match.safe_regex.regex: invalid regex"},
		{name: "bad CIDR",
			matcher: `{"matcher_tree":{"input":` + input("SourceIPInput") + `,"custom_match":{"name":"ip","typed_config":{"@type":"type.googleapis.com/xds.type.matcher.v3.IPMatcher","range_matchers":[` +
				`{"ranges":[{"address_prefix":"10.0.0.0","prefix_len":40}],"on_match":` + act("a") + `}]}}}}`,
			wantErr: "filter_chain_matcher.matcher_tree.custom_match.typed_config.range_matchers[0].ranges[0]: invalid prefix length 40"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m matcherv3.Matcher
			if err := protojson.Unmarshal([]byte(tc.matcher), &m); err != nil {
				t.Fatalf("matcher JSON: %v", err)
			}
			_, err := BuildFilterChainMatcher(&m, []*FilterChain{{Name: "a"}}, nil, "filter_chain_matcher")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
