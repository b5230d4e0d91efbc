package router

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// testPath is the route_config path every test table is built under.
const testPath = "route_config"

// parseRouteConfig turns YAML into a RouteConfiguration that passed Envoy's
// schema validation (so every test config is one Envoy would load).
func parseRouteConfig(t testing.TB, y string) *routev3.RouteConfiguration {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	var rc routev3.RouteConfiguration
	if err := protojson.Unmarshal(j, &rc); err != nil {
		t.Fatalf("protojson: %v", err)
	}
	if err := rc.ValidateAll(); err != nil {
		t.Fatalf("config does not pass Envoy's validation: %v", err)
	}
	return &rc
}

func mustBuild(t testing.TB, y string) *Table {
	t.Helper()
	tbl, err := Build(parseRouteConfig(t, y), BuildContext{Path: testPath})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tbl
}

// req returns request headers; extra are name, value pairs.
func req(authority, path string, extra ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Scheme, "http")
	if authority != "" {
		h.Add(hhttp.Authority, authority)
	}
	if path != "" {
		h.Add(hhttp.Path, path)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

func matchName(tbl *Table, h *hhttp.Headers) (route, vhost string) {
	r, vh := tbl.Match(h)
	if vh != nil {
		vhost = vh.Name()
	}
	if r != nil {
		route = r.Name()
	}
	return route, vhost
}

const vhostConfig = `
name: rc
virtual_hosts:
- name: exact
  domains: ["example.com", "example.com:8080", "EXACT.Upper.com", "[::1]"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix-dot
  domains: ["*.foo.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix-bar
  domains: ["*-bar.foo.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: prefix
  domains: ["foo.*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: prefix-long
  domains: ["foo.bar.*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: default
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`

func TestVirtualHostSelection(t *testing.T) {
	plain := mustBuild(t, vhostConfig)
	ignorePort := mustBuild(t, vhostConfig+"ignore_port_in_host_matching: true\n")
	onlyDefault := mustBuild(t, `
virtual_hosts:
- name: default
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`)
	noDefault := mustBuild(t, `
virtual_hosts:
- name: exact
  domains: ["example.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`)
	tests := []struct {
		name      string
		table     *Table
		authority string
		want      string
	}{
		{name: "exact", table: plain, authority: "example.com", want: "exact"},
		{name: "exact is case-insensitive", table: plain, authority: "EXAMPLE.Com", want: "exact"},
		{name: "domain is lowercased", table: plain, authority: "exact.upper.com", want: "exact"},
		{name: "domain with port", table: plain, authority: "example.com:8080", want: "exact"},
		// Envoy matches the whole authority: "example.com" does not match "example.com:9090".
		{name: "port not in domains", table: plain, authority: "example.com:9090", want: "default"},
		{name: "ipv6 literal", table: plain, authority: "[::1]", want: "exact"},
		{name: "suffix wildcard", table: plain, authority: "a.foo.com", want: "suffix-dot"},
		{name: "longest suffix wins", table: plain, authority: "x-bar.foo.com", want: "suffix-bar"},
		{name: "suffix wildcard needs a non-empty part", table: plain, authority: ".foo.com", want: "default"},
		{name: "suffix before prefix", table: plain, authority: "foo.foo.com", want: "suffix-dot"},
		{name: "prefix wildcard", table: plain, authority: "foo.com", want: "prefix"},
		{name: "longest prefix wins", table: plain, authority: "foo.bar.baz", want: "prefix-long"},
		{name: "prefix wildcard needs a non-empty part", table: plain, authority: "foo.", want: "default"},
		{name: "wildcards see the port", table: plain, authority: "a.foo.com:80", want: "default"},
		{name: "catch-all", table: plain, authority: "other.org", want: "default"},
		{name: "ignore port: suffix", table: ignorePort, authority: "a.foo.com:80", want: "suffix-dot"},
		{name: "ignore port: exact", table: ignorePort, authority: "example.com:9090", want: "exact"},
		{name: "ignore port: ipv6", table: ignorePort, authority: "[::1]:443", want: "exact"},
		{name: "no authority", table: plain, authority: "", want: ""},
		{name: "only catch-all needs no authority", table: onlyDefault, authority: "", want: "default"},
		{name: "no catch-all", table: noDefault, authority: "other.org", want: ""},
		{name: "long host", table: plain, authority: strings.Repeat("a", 300) + ".foo.com", want: "suffix-dot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := matchName(tc.table, req(tc.authority, "/"))
			if got != tc.want {
				t.Errorf("virtual host for %q = %q, want %q", tc.authority, got, tc.want)
			}
		})
	}
}

func TestStripHostPort(t *testing.T) {
	tests := []struct {
		name      string
		authority string
		mode      PortStripping
		want      string
		wantPort  uint32
	}{
		{name: "none", authority: "a.com:443", mode: StripNoPort, want: "a.com:443"},
		{name: "matching", authority: "a.com:443", mode: StripMatchingPort, want: "a.com", wantPort: 443},
		{name: "not matching", authority: "a.com:80", mode: StripMatchingPort, want: "a.com:80"},
		{name: "any", authority: "a.com:9999", mode: StripAnyPort, want: "a.com", wantPort: 9999},
		{name: "ipv6", authority: "[fc00::1]:443", mode: StripMatchingPort, want: "[fc00::1]", wantPort: 443},
		{name: "ipv6 without port", authority: "[fc00::1]", mode: StripAnyPort, want: "[fc00::1]"},
		{name: "no port", authority: "a.com", mode: StripAnyPort, want: "a.com"},
		{name: "malformed port", authority: ":abc", mode: StripAnyPort, want: ":abc"},
		{name: "empty port", authority: "a.com:", mode: StripAnyPort, want: "a.com:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := req(tc.authority, "/")
			port, _ := StripHostPort(h, tc.mode, 443)
			if got := h.Authority(); got != tc.want || port != tc.wantPort {
				t.Errorf("StripHostPort(%q) = %q, port %d; want %q, port %d", tc.authority, got, port, tc.want, tc.wantPort)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	bigFile := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(bigFile, []byte(strings.Repeat("x", 5000)), 0o600); err != nil {
		t.Fatal(err)
	}
	const vh = "route_config.virtual_hosts[0]"
	const r0 = vh + ".routes[0]"
	tests := []struct {
		name     string
		yaml     string
		clusters []string // when set, ClusterExists checks against them
		wantPath string
		wantMsg  string
	}{
		{
			name: "duplicate domain across virtual hosts",
			yaml: `
virtual_hosts:
- {name: a, domains: ["a.com", "B.com"]}
- {name: b, domains: ["b.com"]}`,
			wantPath: "route_config.virtual_hosts[1].domains[0]",
			wantMsg:  `duplicate entry of domain "b.com"`,
		},
		{
			name: "two catch-alls",
			yaml: `
name: rc
virtual_hosts:
- {name: a, domains: ["*"]}
- {name: b, domains: ["x.com", "*"]}`,
			wantPath: "route_config.virtual_hosts[1].domains[1]",
			wantMsg:  `only a single wildcard domain is permitted in route "rc"`,
		},
		{
			name: "bad path regex",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {safe_regex: {regex: "/a("}}, route: {cluster: c}}]`,
			wantPath: r0 + ".match.safe_regex.regex",
			wantMsg:  "invalid regex",
		},
		{
			name: "bad header regex",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/", headers: [{name: x, safe_regex_match: {regex: "["}}]}, route: {cluster: c}}]`,
			wantPath: r0 + ".match.headers[0].safe_regex_match.regex",
			wantMsg:  "invalid regex",
		},
		{
			// retry_policy is compiled; its unimplemented fields are refused by name.
			name: "route retry_policy retry_priority",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c, retry_policy: {retry_on: "5xx", retry_priority: {name: envoy.retry_priorities.previous_priorities}}}}]`,
			wantPath: r0 + ".route.retry_policy.retry_priority",
			wantMsg:  configerr.NotSupported,
		},
		{
			name: "virtual host retry_policy host predicate",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  retry_policy: {retry_on: "5xx", retry_host_predicate: [{name: envoy.retry_host_predicates.omit_canary_hosts}]}`,
			wantPath: vh + ".retry_policy.retry_host_predicate[0].name",
			wantMsg:  configerr.NotSupported,
		},
		{
			name: "vhds",
			yaml: `
vhds: {config_source: {ads: {}}}`,
			wantPath: "route_config.vhds",
			wantMsg:  configerr.NotSupported,
		},
		{
			name: "runtime_fraction",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/", runtime_fraction: {default_value: {numerator: 50}}}, route: {cluster: c}}]`,
			wantPath: r0 + ".match.runtime_fraction",
			wantMsg:  configerr.NotSupported,
		},
		{
			name: "upgrade_configs duplicate type",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c, upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: WebSocket}]}}]`,
			wantPath: r0 + ".route.upgrade_configs[1].upgrade_type",
			wantMsg:  "duplicate upgrade",
		},
		{
			// Envoy: "Non-CONNECT upgrade type ... has ConnectConfig".
			name: "upgrade_configs connect_config on websocket",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c, upgrade_configs: [{upgrade_type: websocket, connect_config: {}}]}}]`,
			wantPath: r0 + ".route.upgrade_configs[0].connect_config",
			wantMsg:  "non-CONNECT upgrade type",
		},
		{
			name: "upgrade_configs connect_config allow_post",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {connect_matcher: {}}, route: {cluster: c, upgrade_configs: [{upgrade_type: CONNECT, connect_config: {allow_post: true}}]}}]`,
			wantPath: r0 + ".route.upgrade_configs[0].connect_config.allow_post",
			wantMsg:  configerr.NotSupported,
		},
		{
			name: "unknown cluster",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: missing}}]`,
			clusters: []string{"c"},
			wantPath: r0 + ".route.cluster",
			wantMsg:  `unknown cluster "missing"`,
		},
		{
			name: "unknown weighted cluster",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {weighted_clusters: {clusters: [{name: c, weight: 1}, {name: missing, weight: 1}]}}}]`,
			clusters: []string{"c"},
			wantPath: r0 + ".route.weighted_clusters.clusters[1].name",
			wantMsg:  `unknown weighted cluster "missing"`,
		},
		{
			name: "weights sum to zero",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {weighted_clusters: {clusters: [{name: c, weight: 0}]}}}]`,
			wantPath: r0 + ".route.weighted_clusters",
			wantMsg:  "sum of weights",
		},
		{
			name: "inline body too large",
			yaml: `
max_direct_response_body_size_bytes: 4
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "hello"}}}]`,
			wantPath: r0 + ".direct_response.body",
			wantMsg:  "response body size is 5 bytes; maximum is 4",
		},
		{
			name: "body file over the 4 KiB default",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {filename: "` + bigFile + `"}}}]`,
			wantPath: r0 + ".direct_response.body.filename",
			wantMsg:  "size is 5000 bytes; maximum is 4096",
		},
		{
			name: "missing body file",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {filename: "` + filepath.Join(dir, "nope") + `"}}}]`,
			wantPath: r0 + ".direct_response.body.filename",
			wantMsg:  "does not exist",
		},
		{
			name: "pseudo-header added",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}, request_headers_to_add: [{header: {key: ":path", value: "/x"}}]}]`,
			wantPath: r0 + ".request_headers_to_add[0].header.key",
			wantMsg:  ":-prefixed or host headers may not be modified",
		},
		{
			name: "host removed",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  request_headers_to_remove: ["x-a", "Host"]`,
			wantPath: vh + ".request_headers_to_remove[1]",
			wantMsg:  ":-prefixed or host headers may not be removed",
		},
		{
			name: "unknown command operator",
			yaml: `
response_headers_to_add: [{header: {key: x-a, value: "a %NOT_AN_OPERATOR% b"}}]`,
			wantPath: "route_config.response_headers_to_add[0].header.value",
			wantMsg:  "unsupported command operator %NOT_AN_OPERATOR%",
		},
		{
			name: "unterminated command operator",
			yaml: `
response_headers_to_add: [{header: {key: x-a, value: "100%"}}]`,
			wantPath: "route_config.response_headers_to_add[0].header.value",
			wantMsg:  "unterminated command",
		},
		{
			name: "append with append_action",
			yaml: `
request_headers_to_add: [{header: {key: x-a, value: v}, append: true, append_action: OVERWRITE_IF_EXISTS}]`,
			wantPath: "route_config.request_headers_to_add[0].append",
			wantMsg:  "both append and append_action are set",
		},
		{
			name: "prefix and regex rewrite",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c, prefix_rewrite: "/x", regex_rewrite: {pattern: {regex: "a"}, substitution: "b"}}}]`,
			wantPath: r0 + ".route.regex_rewrite",
			wantMsg:  "specify only one of prefix_rewrite, regex_rewrite",
		},
		{
			name: "substitution names a missing group",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c, regex_rewrite: {pattern: {regex: "^/(a)"}, substitution: "/\\2"}}}]`,
			wantPath: r0 + ".route.regex_rewrite",
			wantMsg:  `\2 but the pattern has 1 groups`,
		},
		{
			name: "per-filter config of an unknown type",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.mystery:
      "@type": type.googleapis.com/envoy.config.route.v3.Decorator
      operation: x`,
			wantPath: vh + ".typed_per_filter_config[envoy.filters.http.mystery]",
			wantMsg:  "didn't find a registered implementation for 'envoy.filters.http.mystery'",
		},
		{
			name: "weighted cluster with name and header",
			yaml: `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {weighted_clusters: {clusters: [{name: c, cluster_header: x-c, weight: 1}]}}}]`,
			wantPath: r0 + ".route.weighted_clusters.clusters[0]",
			wantMsg:  "only one of name or cluster_header",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := BuildContext{Path: testPath}
			if tc.clusters != nil {
				ctx.ClusterExists = func(name string) bool {
					for _, c := range tc.clusters {
						if c == name {
							return true
						}
					}
					return false
				}
			}
			_, err := Build(parseRouteConfig(t, tc.yaml), ctx)
			if err == nil {
				t.Fatalf("Build succeeded, want error at %s", tc.wantPath)
			}
			var l configerr.List
			if !errors.As(err, &l) {
				t.Fatalf("error %T is not a configerr.List: %v", err, err)
			}
			for _, fe := range l {
				if fe.Path == tc.wantPath && strings.Contains(fe.Msg, tc.wantMsg) {
					return
				}
			}
			t.Errorf("errors:\n%v\nwant one at %s containing %q", err, tc.wantPath, tc.wantMsg)
		})
	}
}

func TestBuildCollectsEveryError(t *testing.T) {
	_, err := Build(parseRouteConfig(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - {match: {prefix: "/", runtime_fraction: {default_value: {numerator: 1}}}, route: {cluster: c, retry_policy: {retry_priority: {name: x}}}}
  - {match: {safe_regex: {regex: "("}}, route: {cluster: c}}`), BuildContext{Path: testPath})
	var l configerr.List
	if !errors.As(err, &l) {
		t.Fatalf("error = %v, want a configerr.List", err)
	}
	var got []string
	for _, fe := range l {
		got = append(got, fe.Path)
	}
	want := []string{
		"route_config.virtual_hosts[0].routes[0].match.runtime_fraction",
		"route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_priority",
		"route_config.virtual_hosts[0].routes[1].match.safe_regex.regex",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error paths (-want +got):\n%s", diff)
	}
}

func TestValidateClustersFalseSkipsCheck(t *testing.T) {
	rc := parseRouteConfig(t, `
validate_clusters: false
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: missing}}]`)
	_, err := Build(rc, BuildContext{Path: testPath, ClusterExists: func(string) bool { return false }})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
}

func TestClusters(t *testing.T) {
	tbl := mustBuild(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - {match: {prefix: "/a"}, route: {cluster: zeta}}
  - {match: {prefix: "/b"}, route: {cluster_header: x-cluster}}
  - {match: {prefix: "/c"}, route: {weighted_clusters: {clusters: [{name: alpha, weight: 1}, {name: zeta, weight: 1}, {cluster_header: x-c, weight: 1}]}}}
  - {match: {prefix: "/d"}, direct_response: {status: 200}}`)
	if diff := cmp.Diff([]string{"alpha", "zeta"}, tbl.Clusters()); diff != "" {
		t.Errorf("Clusters() (-want +got):\n%s", diff)
	}
}

func TestTableAccessors(t *testing.T) {
	tbl := mustBuild(t, `
name: rc
internal_only_headers: ["X-Internal"]
most_specific_header_mutations_wins: true
metadata: {filter_metadata: {a: {k: v}}}
virtual_hosts:
- name: a
  domains: ["A.com"]
  metadata: {filter_metadata: {b: {k: v}}}
  routes: [{name: r, match: {prefix: "/"}, route: {cluster: c}, metadata: {filter_metadata: {c: {k: v}}}}]`)
	if got := tbl.Name(); got != "rc" {
		t.Errorf("Name() = %q", got)
	}
	if diff := cmp.Diff([]string{"x-internal"}, tbl.InternalOnlyHeaders()); diff != "" {
		t.Errorf("InternalOnlyHeaders (-want +got):\n%s", diff)
	}
	if !tbl.MostSpecificHeaderMutationsWins() {
		t.Error("MostSpecificHeaderMutationsWins() = false")
	}
	vh := tbl.VirtualHosts()[0]
	r := vh.Routes()[0]
	if tbl.Metadata().GetFilterMetadata()["a"] == nil || vh.Metadata().GetFilterMetadata()["b"] == nil || r.Metadata().GetFilterMetadata()["c"] == nil {
		t.Error("metadata not kept at every level")
	}
	if diff := cmp.Diff([]string{"a.com"}, vh.Domains()); diff != "" {
		t.Errorf("Domains (-want +got):\n%s", diff)
	}
	if r.VirtualHost() != vh || vh.Table() != tbl {
		t.Error("parent links broken")
	}
}

// TestUnsupportedFieldsExist keeps unsupportedFields honest: every message
// and field it names exists, so a typo cannot silently accept a field.
func TestUnsupportedFieldsExist(t *testing.T) {
	for msg, fields := range unsupportedFields {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(msg)
		if err != nil {
			t.Errorf("message %s: %v", msg, err)
			continue
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			t.Errorf("%s is not a message", msg)
			continue
		}
		for _, f := range fields {
			if md.Fields().ByName(f) == nil {
				t.Errorf("%s has no field %s", msg, f)
			}
		}
	}
}
