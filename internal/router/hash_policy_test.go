package router

import (
	"math/bits"
	"net/netip"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// hashPolicies parses the YAML of a RouteAction.hash_policy list.
func hashPolicies(t testing.TB, y string) []*routev3.RouteAction_HashPolicy {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte("cluster: c\nhash_policy: " + y))
	if err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	var a routev3.RouteAction
	if err := protojson.Unmarshal(js, &a); err != nil {
		t.Fatalf("bad test hash_policy: %v", err)
	}
	if err := a.ValidateAll(); err != nil {
		t.Fatalf("invalid test hash_policy: %v", err)
	}
	return a.GetHashPolicy()
}

func headers(kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func xx(s string) uint64 { return xxhash.Sum64String(s) }

// combine is Envoy's rule for a second hash: rotl(old, 1) ^ new.
func combine(old, next uint64) uint64 { return bits.RotateLeft64(old, 1) ^ next }

var testConn = Downstream{
	Remote: netip.MustParseAddrPort("10.0.0.1:40000"),
	Local:  netip.MustParseAddrPort("[::1]:8080"),
}

func TestHashPolicyHash(t *testing.T) {
	tests := []struct {
		name      string
		policy    string
		headers   []string
		conn      Downstream
		want      uint64
		wantOK    bool
		wantSetCk []string
	}{
		{name: "header", policy: `[{header: {header_name: X-User}}]`, headers: []string{"x-user", "alice"}, want: xx("alice"), wantOK: true},
		{name: "header absent", policy: `[{header: {header_name: x-user}}]`, headers: []string{"x-other", "alice"}},
		// Envoy sorts the values and hashes their concatenation, so order
		// does not matter.
		{name: "header values sorted", policy: `[{header: {header_name: x-user}}]`, headers: []string{"x-user", "b", "x-user", "a"}, want: xx("ab"), wantOK: true},
		{name: "header regex_rewrite", policy: `[{header: {header_name: ":path", regex_rewrite: {pattern: {regex: "^/(\\w+)/.*$"}, substitution: "\\1"}}}]`,
			headers: []string{":path", "/user/42"}, want: xx("user"), wantOK: true},
		{name: "cookie", policy: `[{cookie: {name: sid}}]`, headers: []string{"cookie", "a=1; sid=xyz; b=2"}, want: xx("xyz"), wantOK: true},
		{name: "cookie quoted", policy: `[{cookie: {name: sid}}]`, headers: []string{"cookie", `sid="xyz"`}, want: xx("xyz"), wantOK: true},
		{name: "cookie in second header", policy: `[{cookie: {name: sid}}]`, headers: []string{"cookie", "a=1", "cookie", "sid=xyz"}, want: xx("xyz"), wantOK: true},
		{name: "cookie absent without ttl", policy: `[{cookie: {name: sid}}]`, headers: []string{"cookie", "sidx=1"}},
		// Absent cookie with a ttl: Envoy generates the value from the
		// connection's addresses and asks for a Set-Cookie.
		{name: "cookie generated", policy: `[{cookie: {name: sid, ttl: 3600s, path: /app, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}}]`,
			conn: testConn, want: xx(hex16(xx("10.0.0.1:40000[::1]:8080"))), wantOK: true,
			wantSetCk: []string{`sid="` + hex16(xx("10.0.0.1:40000[::1]:8080")) + `"; Max-Age=3600; Path=/app; SameSite=Strict; Secure; HttpOnly`}},
		// A zero ttl makes a session cookie: no Max-Age.
		{name: "cookie generated session", policy: `[{cookie: {name: sid, ttl: 0s}}]`, conn: testConn,
			want: xx(hex16(xx("10.0.0.1:40000[::1]:8080"))), wantOK: true,
			wantSetCk: []string{`sid="` + hex16(xx("10.0.0.1:40000[::1]:8080")) + `"; HttpOnly`}},
		{name: "source ip", policy: `[{connection_properties: {source_ip: true}}]`, conn: testConn, want: xx("10.0.0.1"), wantOK: true},
		{name: "source ip v6", policy: `[{connection_properties: {source_ip: true}}]`,
			conn: Downstream{Remote: netip.MustParseAddrPort("[2001:db8::1]:5")}, want: xx("2001:db8::1"), wantOK: true},
		{name: "source ip unknown", policy: `[{connection_properties: {source_ip: true}}]`},
		{name: "source ip false adds nothing", policy: `[{connection_properties: {source_ip: false}}, {header: {header_name: x}}]`, conn: testConn, headers: []string{"x", "v"}, want: xx("v"), wantOK: true},
		{name: "query parameter", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p?a=1&u=bob&u=eve"}, want: xx("bob"), wantOK: true},
		// Envoy does not percent-decode the value.
		{name: "query parameter raw", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p?u=b%20b"}, want: xx("b%20b"), wantOK: true},
		{name: "query parameter without value", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p?x&u"}, want: xx(""), wantOK: true},
		{name: "query parameter absent", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p?uu=1"}},
		{name: "no query", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p"}},
		// Two hashes: rotl(first, 1) ^ second.
		{name: "combined", policy: `[{header: {header_name: a}}, {header: {header_name: b}}]`, headers: []string{"a", "1", "b", "2"},
			want: combine(xx("1"), xx("2")), wantOK: true},
		// The same value twice does not cancel out, thanks to the rotation.
		{name: "combined duplicates", policy: `[{header: {header_name: a}}, {header: {header_name: a}}]`, headers: []string{"a", "1"},
			want: combine(xx("1"), xx("1")), wantOK: true},
		{name: "three combined", policy: `[{header: {header_name: a}}, {header: {header_name: b}}, {connection_properties: {source_ip: true}}]`,
			headers: []string{"a", "1", "b", "2"}, conn: testConn, want: combine(combine(xx("1"), xx("2")), xx("10.0.0.1")), wantOK: true},
		// A method without a hash is skipped; the next one is taken as is.
		{name: "first missing", policy: `[{header: {header_name: a}}, {header: {header_name: b}}]`, headers: []string{"b", "2"}, want: xx("2"), wantOK: true},
		// terminal stops once a hash exists.
		{name: "terminal with hash", policy: `[{header: {header_name: a}, terminal: true}, {header: {header_name: b}}]`, headers: []string{"a", "1", "b", "2"}, want: xx("1"), wantOK: true},
		// terminal without a hash so far does not stop.
		{name: "terminal without hash", policy: `[{header: {header_name: a}, terminal: true}, {header: {header_name: b}}]`, headers: []string{"b", "2"}, want: xx("2"), wantOK: true},
		// terminal on a later method stops after combining it.
		{name: "terminal second", policy: `[{header: {header_name: a}}, {header: {header_name: b}, terminal: true}, {header: {header_name: c}}]`,
			headers: []string{"a", "1", "b", "2", "c", "3"}, want: combine(xx("1"), xx("2")), wantOK: true},
		// terminal on a method without a hash, after one that had one.
		{name: "terminal after earlier hash", policy: `[{header: {header_name: a}}, {header: {header_name: b}, terminal: true}, {header: {header_name: c}}]`,
			headers: []string{"a", "1", "c", "3"}, want: xx("1"), wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileHashPolicy(hashPolicies(t, tc.policy), "hash_policy")
			if err != nil {
				t.Fatalf("CompileHashPolicy: %v", err)
			}
			got, ok, setCk := p.Hash(headers(tc.headers...), tc.conn)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("Hash = %#x, %v; want %#x, %v", got, ok, tc.want, tc.wantOK)
			}
			if diff := cmp.Diff(tc.wantSetCk, setCk); diff != "" {
				t.Errorf("set-cookie values (-want +got):\n%s", diff)
			}
		})
	}
}

// hex16 is Envoy's Hex::uint64ToHex, written independently of the code
// under test.
func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for shift := 60; shift >= 0; shift -= 4 {
		b.WriteByte(digits[(v>>uint(shift))&0xf])
	}
	return b.String()
}

func TestHashPolicyKnownValues(t *testing.T) {
	// xxHash64 with seed 0, as Envoy's HashUtil::xxHash64; reference
	// values of the xxHash specification's test vectors.
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{name: "empty", in: "", want: 0xef46db3751d8e999},
		{name: "a", in: "a", want: 0xd24ec4f1a98c6e5b},
		{name: "abc", in: "abc", want: 0x44bc2cf5ad770999},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileHashPolicy(hashPolicies(t, `[{header: {header_name: x}}]`), "p")
			if err != nil {
				t.Fatal(err)
			}
			got, ok, _ := p.Hash(headers("x", tc.in), Downstream{})
			if !ok || got != tc.want {
				t.Errorf("Hash(%q) = %#x, %v; want %#x", tc.in, got, ok, tc.want)
			}
		})
	}
}

func TestCompileHashPolicyErrors(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		wantErr string
		wantNil bool
	}{
		{name: "filter state", policy: `[{filter_state: {key: k}}]`, wantErr: "hash_policy[0].filter_state: not supported by herald yet"},
		{name: "bad rewrite", policy: `[{header: {header_name: x}}, {header: {header_name: x, regex_rewrite: {pattern: {regex: "("}, substitution: "y"}}}]`,
			wantErr: "hash_policy[1].header.regex_rewrite: invalid regex"},
		{name: "empty", policy: `[]`, wantNil: true},
		// Only connection_properties without source_ip: no method at all.
		{name: "nothing to hash", policy: `[{connection_properties: {}}]`, wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileHashPolicy(hashPolicies(t, tc.policy), "hash_policy")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CompileHashPolicy: %v", err)
				}
				if tc.wantNil != (p == nil) {
					t.Fatalf("policy = %v, want nil %v", p, tc.wantNil)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestHashPolicyNil(t *testing.T) {
	var p *HashPolicy
	if h, ok, set := p.Hash(headers("x", "1"), testConn); ok || h != 0 || set != nil {
		t.Errorf("nil policy Hash = %v, %v, %v; want no hash", h, ok, set)
	}
}

func TestHashPolicyDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		headers []string
	}{
		{name: "header", policy: `[{header: {header_name: x-user}}]`, headers: []string{"x-user", "alice"}},
		{name: "header several values", policy: `[{header: {header_name: x-user}}]`, headers: []string{"x-user", "b", "x-user", "a", "x-user", "c"}},
		{name: "cookie present", policy: `[{cookie: {name: sid, ttl: 60s}}]`, headers: []string{"cookie", "a=1; sid=xyz"}},
		{name: "source ip", policy: `[{connection_properties: {source_ip: true}}]`},
		{name: "query", policy: `[{query_parameter: {name: u}}]`, headers: []string{":path", "/p?u=1"}},
		{name: "combined", policy: `[{header: {header_name: a}}, {connection_properties: {source_ip: true}}, {query_parameter: {name: u}, terminal: true}]`,
			headers: []string{"a", "1", ":path", "/p?u=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileHashPolicy(hashPolicies(t, tc.policy), "p")
			if err != nil {
				t.Fatal(err)
			}
			h := headers(tc.headers...)
			if n := testing.AllocsPerRun(100, func() { p.Hash(h, testConn) }); n != 0 {
				t.Errorf("Hash allocates %v times per call", n)
			}
		})
	}
}

func BenchmarkHashPolicy(b *testing.B) {
	p, err := CompileHashPolicy(hashPolicies(b, `[{header: {header_name: x-user}}, {cookie: {name: sid, ttl: 60s}}, {connection_properties: {source_ip: true}}]`), "p")
	if err != nil {
		b.Fatal(err)
	}
	h := headers(":method", "GET", ":path", "/a?b=c", "x-user", "alice", "cookie", "a=1; sid=xyz; b=2")
	b.ReportAllocs()
	for b.Loop() {
		p.Hash(h, testConn)
	}
}
