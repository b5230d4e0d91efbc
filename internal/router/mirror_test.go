package router

import (
	"errors"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	"github.com/herald-proxy/herald/internal/upstream"
)

// TestShadowHost: Envoy's shadow_writer_impl.cc newHost.
func TestShadowHost(t *testing.T) {
	tests := []struct {
		name string
		host string
		want string
	}{
		{name: "name", host: "example.com", want: "example.com-shadow"},
		{name: "name and port", host: "example.com:8080", want: "example.com-shadow:8080"},
		{name: "ipv4 and port", host: "127.0.0.1:80", want: "127.0.0.1-shadow:80"},
		{name: "ipv4", host: "10.0.0.1", want: "10.0.0.1-shadow"},
		{name: "trailing colon is one piece", host: "example.com:", want: "example.com:-shadow"},
		// Envoy splits on every ':' and only rewrites exactly two pieces.
		{name: "ipv6 with port appends", host: "[::1]:80", want: "[::1]:80-shadow"},
		{name: "three pieces append", host: "a:b:c", want: "a:b:c-shadow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := shadowHost(tc.host); got != tc.want {
				t.Errorf("shadowHost(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}

// TestMirrorHost: disable_shadow_host_suffix_append and
// host_rewrite_literal.
func TestMirrorHost(t *testing.T) {
	tests := []struct {
		name   string
		policy mirrorPolicy
		host   string
		want   string
	}{
		{name: "suffix", policy: mirrorPolicy{}, host: "a:1", want: "a-shadow:1"},
		{name: "suffix disabled", policy: mirrorPolicy{noSuffix: true}, host: "a:1", want: "a:1"},
		{name: "literal", policy: mirrorPolicy{hostLiteral: "m.local", noSuffix: true}, host: "a:1", want: "m.local"},
		{name: "empty host stays empty", policy: mirrorPolicy{}, host: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.mirrorHost(tc.host); got != tc.want {
				t.Errorf("mirrorHost(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}

// TestShouldMirror: Envoy's featureEnabled with the policy's default value:
// random % denominator < numerator.
func TestShouldMirror(t *testing.T) {
	tests := []struct {
		name   string
		p      fractional.Percent
		random uint64
		want   bool
	}{
		{name: "always", p: fractional.Always, random: 12345, want: true},
		{name: "never", p: fractional.Percent{Numerator: 0, Denominator: 100}, random: 0, want: false},
		{name: "under", p: fractional.Percent{Numerator: 10, Denominator: 100}, random: 209, want: true},
		{name: "at numerator is out", p: fractional.Percent{Numerator: 10, Denominator: 100}, random: 210, want: false},
		{name: "million", p: fractional.Percent{Numerator: 1, Denominator: 1000000}, random: 2000000, want: true},
		{name: "million miss", p: fractional.Percent{Numerator: 1, Denominator: 1000000}, random: 2000001, want: false},
		{name: "over 100%", p: fractional.Percent{Numerator: 200, Denominator: 100}, random: 99, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := shouldMirror(tc.p, tc.random); got != tc.want {
				t.Errorf("shouldMirror(%+v, %d) = %v, want %v", tc.p, tc.random, got, tc.want)
			}
		})
	}
}

// TestShouldMirrorFraction: over every residue of the denominator exactly
// numerator values mirror.
func TestShouldMirrorFraction(t *testing.T) {
	p := fractional.Percent{Numerator: 25, Denominator: 100}
	hits := 0
	for r := uint64(0); r < 1000; r++ {
		if shouldMirror(p, r) {
			hits++
		}
	}
	if hits != 250 {
		t.Errorf("hits = %d of 1000, want 250", hits)
	}
}

const mirrorLevels = `
name: rc
request_mirror_policies: [{ cluster: table_m }]
virtual_hosts:
- name: own
  domains: ["own"]
  request_mirror_policies: [{ cluster: vh_m }]
  routes:
  - name: route_level
    match: { prefix: "/r" }
    route:
      cluster: c
      request_mirror_policies:
      - cluster: r1
        runtime_fraction: { default_value: { numerator: 5, denominator: TEN_THOUSAND }, runtime_key: k }
      - cluster_header: X-Mirror
        disable_shadow_host_suffix_append: true
        trace_sampled: false
  - name: vh_level
    match: { prefix: "/" }
    route: { cluster: c }
- name: inherit
  domains: ["*"]
  routes:
  - name: table_level
    match: { prefix: "/" }
    route: { cluster: c, priority: HIGH }
`

// TestMirrorPoliciesLevels: the most specific non-empty list applies, not
// merged; runtime_fraction's default_value is used; priority HIGH is read.
func TestMirrorPoliciesLevels(t *testing.T) {
	tbl := mustBuild(t, mirrorLevels)
	tests := []struct {
		name     string
		host     string
		path     string
		want     []mirrorPolicy
		priority upstream.Priority
	}{
		{name: "route", host: "own", path: "/r", want: []mirrorPolicy{
			{cluster: "r1", fraction: fractional.Percent{Numerator: 5, Denominator: 10000}},
			{clusterHeader: "x-mirror", fraction: fractional.Always, noSuffix: true},
		}},
		{name: "virtual host", host: "own", path: "/x", want: []mirrorPolicy{{cluster: "vh_m", fraction: fractional.Always}}},
		{name: "route configuration", host: "other", path: "/", want: []mirrorPolicy{{cluster: "table_m", fraction: fractional.Always}},
			priority: upstream.PriorityHigh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tbl.Match(req(tc.host, tc.path))
			if r == nil {
				t.Fatal("no route")
			}
			got := r.mirrorPolicies()
			if len(got) != len(tc.want) {
				t.Fatalf("%d policies, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if *got[i] != tc.want[i] {
					t.Errorf("policy %d = %+v, want %+v", i, *got[i], tc.want[i])
				}
			}
			if r.Priority() != tc.priority {
				t.Errorf("priority = %v, want %v", r.Priority(), tc.priority)
			}
		})
	}
	for _, c := range []string{"r1", "table_m", "vh_m"} {
		found := false
		for _, tc := range tbl.Clusters() {
			found = found || tc == c
		}
		if !found {
			t.Errorf("Clusters() = %v, missing shadow cluster %q", tbl.Clusters(), c)
		}
	}
}

// TestMirrorHedgeErrors: what herald refuses, by field path.
func TestMirrorHedgeErrors(t *testing.T) {
	tests := []struct {
		name     string
		route    string // RouteAction fields, indented 6
		vhost    string // VirtualHost fields, indented 2
		wantPath string
		wantMsg  string
	}{
		{
			name:     "cluster and cluster_header",
			route:    "      request_mirror_policies: [{ cluster: a, cluster_header: x }]\n",
			wantPath: "route_config.virtual_hosts[0].routes[0].route.request_mirror_policies[0]",
			wantMsg:  "only one of cluster",
		},
		{
			name:     "neither",
			route:    "      request_mirror_policies: [{ trace_sampled: true }]\n",
			wantPath: "route_config.virtual_hosts[0].routes[0].route.request_mirror_policies[0]",
			wantMsg:  "exactly one of cluster or cluster_header",
		},
		{
			name:     "header mutations",
			route:    "      request_mirror_policies: [{ cluster: a, request_headers_mutations: [{ remove: x-a }] }]\n",
			wantPath: "route_config.virtual_hosts[0].routes[0].route.request_mirror_policies[0].request_headers_mutations",
			wantMsg:  configerr.NotSupported,
		},
		{
			name:     "initial requests",
			vhost:    "  hedge_policy: { initial_requests: 2 }\n",
			wantPath: "route_config.virtual_hosts[0].hedge_policy.initial_requests",
			wantMsg:  configerr.NotSupported,
		},
		{
			name:     "additional request chance",
			route:    "      hedge_policy: { additional_request_chance: { numerator: 5 } }\n",
			wantPath: "route_config.virtual_hosts[0].routes[0].route.hedge_policy.additional_request_chance",
			wantMsg:  configerr.NotSupported,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "name: rc\nvirtual_hosts:\n- name: v\n  domains: [\"*\"]\n" + tc.vhost +
				"  routes:\n  - match: { prefix: \"/\" }\n    route:\n      cluster: c\n" + tc.route
			_, err := Build(parseRouteConfig(t, y), BuildContext{Path: testPath})
			var list configerr.List
			if !errors.As(err, &list) {
				t.Fatalf("Build error = %v, want a configerr.List", err)
			}
			for _, fe := range list {
				if fe.Path == tc.wantPath && strings.Contains(fe.Msg, tc.wantMsg) {
					return
				}
			}
			t.Errorf("errors = %v, want %s: ...%s...", err, tc.wantPath, tc.wantMsg)
		})
	}
}

// TestHedgePolicy: the route's hedge_policy replaces the virtual host's
// (Envoy's buildHedgePolicy), and x-envoy-hedge-on-per-try-timeout
// "true"/"false" overrides both (finalHedgingParams).
func TestHedgePolicy(t *testing.T) {
	tbl := mustBuild(t, `
name: rc
virtual_hosts:
- name: v
  domains: ["*"]
  hedge_policy: { hedge_on_per_try_timeout: true }
  routes:
  - name: nohedge
    match: { prefix: "/off" }
    route:
      cluster: c
      priority: DEFAULT
      hedge_policy: { hedge_on_per_try_timeout: false }
      request_mirror_policies: [{ cluster: m, host_rewrite_literal: h }]
  - name: inherit
    match: { prefix: "/" }
    route: { cluster: c }
`)
	tests := []struct {
		name   string
		path   string
		header string // x-envoy-hedge-on-per-try-timeout, "" for none
		want   bool
	}{
		{name: "route turns it off", path: "/off", want: false},
		{name: "virtual host's", path: "/x", want: true},
		{name: "header true", path: "/off", header: "true", want: true},
		{name: "header false", path: "/x", header: "false", want: false},
		{name: "other header values are ignored", path: "/x", header: "yes", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := req("a", tc.path)
			if tc.header != "" {
				h.Add(hdrHedgeOnPerTryTimeout, tc.header)
			}
			r, _ := tbl.Match(h)
			if r == nil {
				t.Fatal("no route")
			}
			e := scanEnvoyHeaders(h)
			if got := hedgeOnPerTryTimeout(r, &e); got != tc.want {
				t.Errorf("hedge = %v, want %v", got, tc.want)
			}
			if h.Has(hdrHedgeOnPerTryTimeout) {
				t.Error("x-envoy-hedge-on-per-try-timeout was not removed")
			}
		})
	}
}

// TestUnknownShadowCluster: with cluster validation, a missing shadow
// cluster is an error as Envoy's "unknown shadow cluster".
func TestUnknownShadowCluster(t *testing.T) {
	cfg := parseRouteConfig(t, `
name: rc
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: { prefix: "/" }
    route: { cluster: c, request_mirror_policies: [{ cluster: gone }] }
`)
	_, err := Build(cfg, BuildContext{Path: testPath, ClusterExists: func(n string) bool { return n == "c" }})
	if err == nil || !strings.Contains(err.Error(), `unknown shadow cluster "gone"`) {
		t.Errorf("Build error = %v, want unknown shadow cluster", err)
	}
}
