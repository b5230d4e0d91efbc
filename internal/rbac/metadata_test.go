package rbac

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestMetadataMatcher(t *testing.T) {
	md := func(t *testing.T, ns string, m map[string]any) map[string]*structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]*structpb.Struct{ns: s}
	}
	fields := map[string]any{
		"user":  "alice",
		"level": 3.0,
		"admin": true,
		"nil":   nil,
		"roles": []any{"dev", "ops"},
		"jwt":   map[string]any{"sub": "u-1", "iss": "https://issuer"},
	}
	tests := []struct {
		name    string
		matcher string // a MetadataMatcher, filter "ns"
		none    bool   // the stream has no dynamic metadata
		want    bool
	}{
		{name: "string exact", matcher: "{path: [{key: user}], value: {string_match: {exact: alice}}}", want: true},
		{name: "string other", matcher: "{path: [{key: user}], value: {string_match: {exact: bob}}}"},
		{name: "string on a number", matcher: "{path: [{key: level}], value: {string_match: {exact: '3'}}}"},
		{name: "nested path", matcher: "{path: [{key: jwt}, {key: sub}], value: {string_match: {prefix: u-}}}", want: true},
		{name: "path through a non-struct", matcher: "{path: [{key: user}, {key: x}], value: {present_match: true}}"},
		{name: "double exact", matcher: "{path: [{key: level}], value: {double_match: {exact: 3}}}", want: true},
		// Envoy: range is [start, end).
		{name: "double range end excluded", matcher: "{path: [{key: level}], value: {double_match: {range: {start: 1, end: 3}}}}"},
		{name: "double range", matcher: "{path: [{key: level}], value: {double_match: {range: {start: 3, end: 4}}}}", want: true},
		{name: "bool", matcher: "{path: [{key: admin}], value: {bool_match: true}}", want: true},
		{name: "bool false", matcher: "{path: [{key: admin}], value: {bool_match: false}}"},
		{name: "null", matcher: "{path: [{key: nil}], value: {null_match: {}}}", want: true},
		{name: "present", matcher: "{path: [{key: user}], value: {present_match: true}}", want: true},
		{name: "absent key", matcher: "{path: [{key: nobody}], value: {present_match: true}}"},
		// Envoy's PresentMatcher: present_match false matches nothing; use invert.
		{name: "present false", matcher: "{path: [{key: nobody}], value: {present_match: false}}"},
		{name: "inverted absent", matcher: "{path: [{key: nobody}], value: {present_match: true}, invert: true}", want: true},
		{name: "list one_of", matcher: "{path: [{key: roles}], value: {list_match: {one_of: {string_match: {exact: ops}}}}}", want: true},
		{name: "list one_of none", matcher: "{path: [{key: roles}], value: {list_match: {one_of: {string_match: {exact: qa}}}}}"},
		{name: "or", matcher: "{path: [{key: user}], value: {or_match: {value_matchers: [{string_match: {exact: bob}}, {string_match: {exact: alice}}]}}}", want: true},
		{name: "other namespace", matcher: "{filter: other, path: [{key: user}], value: {present_match: true}}"},
		{name: "no metadata", matcher: "{path: [{key: user}], value: {present_match: true}}", none: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := "{filter: ns, " + tc.matcher[1:]
			if tc.matcher[1:7] == "filter" {
				m = tc.matcher
			}
			eng, err := compile(t, "{action: ALLOW, policies: {p: {permissions: [{metadata: "+m+"}], principals: [{any: true}]}}}", HTTPKinds)
			if err != nil {
				t.Fatal(err)
			}
			q := Request{}
			if !tc.none {
				q.Metadata = md(t, "ns", fields)
			}
			if got, _ := eng.Handle(&q); got != tc.want {
				t.Errorf("Handle allowed = %v, want %v", got, tc.want)
			}
			// The same matcher as a principal, and as sourced_metadata.
			eng, err = compile(t, "{action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{sourced_metadata: {metadata_matcher: "+m+"}}]}}}", HTTPKinds)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := eng.Handle(&q); got != tc.want {
				t.Errorf("principal sourced_metadata: Handle allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMetadataNoAllocs: a metadata rule allocates nothing.
func TestMetadataNoAllocs(t *testing.T) {
	eng, err := compile(t, "{action: ALLOW, policies: {p: {permissions: [{metadata: {filter: ns, path: [{key: a}, {key: b}], value: {string_match: {exact: v}}}}], principals: [{any: true}]}}}", HTTPKinds)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := structpb.NewStruct(map[string]any{"a": map[string]any{"b": "v"}})
	q := Request{Metadata: map[string]*structpb.Struct{"ns": s}}
	if n := testing.AllocsPerRun(100, func() { eng.Handle(&q) }); n != 0 {
		t.Errorf("%v allocations per Handle, want 0", n)
	}
}
