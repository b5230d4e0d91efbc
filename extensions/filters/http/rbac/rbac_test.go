package rbac

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"testing"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/structpb"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&rbachttpv3.RBAC{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v; want %s", url, e, ok, Name)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&rbachttpv3.RBACPerRoute{})); !ok {
		t.Errorf("RBACPerRoute is not registered")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		raw     bool // skip Envoy's validation rules (checks herald's own)
		wantErr string
	}{
		{name: "empty", config: "{}"},
		{
			name: "every supported matcher",
			config: `rules:
  action: DENY
  policies:
    p:
      permissions:
      - and_rules: {rules: [{any: true}, {not_rule: {destination_port: 80}}]}
      - or_rules: {rules: [{header: {name: x-a, exact_match: b}}, {url_path: {path: {prefix: /a}}}]}
      - destination_ip: {address_prefix: 10.0.0.0, prefix_len: 8}
      - destination_port_range: {start: 80, end: 90}
      - requested_server_name: {exact: example.com}
      principals:
      - and_ids: {ids: [{any: true}, {not_id: {remote_ip: {address_prefix: "::1", prefix_len: 128}}}]}
      - or_ids: {ids: [{direct_remote_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}, {source_ip: {address_prefix: 1.2.3.4}}]}
      - header: {name: x-b, present_match: true}
      - url_path: {path: {exact: /b}}
shadow_rules: {action: LOG, policies: {}}
rules_stat_prefix: r.
shadow_rules_stat_prefix: s.`,
		},
		{name: "matcher refused", config: "matcher: {on_no_match: {action: {name: a, typed_config: {'@type': type.googleapis.com/google.protobuf.Empty}}}}", wantErr: ".matcher: matcher is not supported by herald yet (#8)"},
		{name: "track_per_rule_stats refused", config: "track_per_rule_stats: true", wantErr: ".track_per_rule_stats: track_per_rule_stats is not supported by herald yet (#8)"},
		{name: "authenticated and metadata", config: "rules: {policies: {p: {permissions: [{metadata: {filter: f, path: [{key: k}], value: {present_match: true}}}], principals: [{authenticated: {principal_name: {exact: a}}}]}}}"},
		{
			name:    "route metadata refused",
			config:  "rules: {policies: {p: {permissions: [{sourced_metadata: {metadata_source: ROUTE, metadata_matcher: {filter: f, path: [{key: k}], value: {present_match: true}}}}], principals: [{any: true}]}}}",
			wantErr: ".rules.policies[p].permissions[0].sourced_metadata.metadata_source: ROUTE is not supported by herald yet (#8)",
		},
		{
			name:    "filter_state principal refused",
			config:  "rules: {policies: {p: {permissions: [{any: true}], principals: [{filter_state: {key: k, string_match: {exact: v}}}]}}}",
			wantErr: ".rules.policies[p].principals[0].filter_state: filter_state is not supported by herald yet (#8)",
		},
		{
			name:    "condition refused",
			config:  "rules: {policies: {p: {permissions: [{any: true}], principals: [{any: true}], condition: {const_expr: {bool_value: true}}}}}",
			wantErr: ".rules.policies[p].condition: condition is not supported by herald yet (#8)",
		},
		{
			name:    "policy needs principals",
			config:  "rules: {policies: {p: {permissions: [{any: true}]}}}",
			raw:     true,
			wantErr: ".rules.policies[p].principals: a policy needs at least one principal",
		},
		{
			name:    "bad cidr",
			config:  "rules: {policies: {p: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: nope}}]}}}",
			wantErr: ".rules.policies[p].principals[0].remote_ip.address_prefix: malformed IP address",
		},
		{
			name:    "prefix too long",
			config:  "rules: {policies: {p: {permissions: [{destination_ip: {address_prefix: 1.2.3.4, prefix_len: 33}}], principals: [{any: true}]}}}",
			wantErr: ".rules.policies[p].permissions[0].destination_ip.prefix_len: prefix length 33",
		},
		{
			name:    "empty and_rules",
			config:  "rules: {policies: {p: {permissions: [{and_rules: {}}], principals: [{any: true}]}}}",
			raw:     true,
			wantErr: ".rules.policies[p].permissions[0].and_rules.rules: value must contain at least 1 item(s)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &rbachttpv3.RBAC{}
			if tc.raw {
				if _, err := httpfiltertest.Unmarshal(cfg, tc.config); err != nil {
					t.Fatal(err)
				}
			} else {
				httpfiltertest.Parse(t, tc.config, cfg)
			}
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

// callbacks are httpfiltertest.Callbacks with downstream addresses.
type callbacks struct {
	*httpfiltertest.Callbacks
	remote, direct netip.AddrPort
}

func (cb callbacks) DownstreamRemoteAddress() netip.AddrPort       { return cb.remote }
func (cb callbacks) DownstreamDirectRemoteAddress() netip.AddrPort { return cb.direct }

func TestDecodeHeaders(t *testing.T) {
	const filter = `rules:
  action: ALLOW
  policies:
    "api users":
      permissions: [{and_rules: {rules: [{url_path: {path: {prefix: /api}}}, {header: {name: ":method", exact_match: GET}}]}}]
      principals: [{header: {name: x-user, present_match: true}}]
    admin:
      permissions: [{any: true}]
      principals: [{and_ids: {ids: [{remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}, {not_id: {direct_remote_ip: {address_prefix: 10.9.0.0, prefix_len: 16}}}]}}]
    sni:
      permissions: [{and_rules: {rules: [{requested_server_name: {suffix: .internal}}, {destination_port_range: {start: 8000, end: 9000}}, {destination_ip: {address_prefix: 192.168.0.0, prefix_len: 16}}]}}]
      principals: [{any: true}]
shadow_rules:
  action: DENY
  policies:
    deny-api: {permissions: [{url_path: {path: {exact: /api/x}}}], principals: [{any: true}]}
shadow_rules_stat_prefix: sh.
`
	const denyRoute = `rbac:
  rules:
    action: DENY
    policies:
      "no local": {permissions: [{any: true}], principals: [{direct_remote_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]}
`
	tests := []struct {
		name        string
		path        string
		method      string
		headers     map[string]string
		remote      string
		direct      string
		local       string
		sni         string
		route       string // RBACPerRoute YAML; "" for none
		wantCode    int    // 0 when allowed
		wantDetails string
	}{
		{name: "allowed by path, method and header", path: "/api/x?q=1", method: "GET", headers: map[string]string{"x-user": "a"}, remote: "1.1.1.1:1", direct: "1.1.1.1:1"},
		{name: "query is not part of url_path", path: "/x?/api", method: "GET", headers: map[string]string{"x-user": "a"}, remote: "1.1.1.1:1", direct: "1.1.1.1:1", wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{name: "missing principal header", path: "/api", method: "GET", remote: "1.1.1.1:1", direct: "1.1.1.1:1", wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{name: "wrong method", path: "/api", method: "POST", headers: map[string]string{"x-user": "a"}, remote: "1.1.1.1:1", direct: "1.1.1.1:1", wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{name: "remote ip and not direct", path: "/other", method: "PUT", remote: "10.1.2.3:5", direct: "10.8.0.1:5"},
		{name: "not_id excludes direct peer", path: "/other", method: "PUT", remote: "10.1.2.3:5", direct: "10.9.0.1:5", wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{name: "sni, port range and destination ip", path: "/", method: "GET", remote: "1.1.1.1:1", direct: "1.1.1.1:1", local: "192.168.1.1:8080", sni: "a.internal"},
		{name: "port outside range", path: "/", method: "GET", remote: "1.1.1.1:1", direct: "1.1.1.1:1", local: "192.168.1.1:9000", sni: "a.internal", wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{name: "route disables the filter", path: "/", method: "GET", route: "{}"},
		{name: "route deny matches", path: "/api", method: "GET", headers: map[string]string{"x-user": "a"}, direct: "127.0.0.1:9", route: denyRoute, wantCode: 403, wantDetails: "rbac_access_denied_matched_policy[no_local]"},
		{name: "route deny does not match", path: "/", method: "GET", direct: "127.0.0.2:9", route: denyRoute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			ctx := httpfiltertest.BuildContext(Name, store)
			factory, err := Build(httpfiltertest.Parse(t, filter, &rbachttpv3.RBAC{}), ctx)
			if err != nil {
				t.Fatal(err)
			}
			base := &httpfiltertest.Callbacks{}
			if tc.route != "" {
				pr, err := BuildPerRoute(httpfiltertest.Parse(t, tc.route, &rbachttpv3.RBACPerRoute{}), httpfilter.BuildContext{Path: "route", Stats: store})
				if err != nil {
					t.Fatal(err)
				}
				base.MatchedRoute = httpfiltertest.Route{Name: pr}
			}
			base.Info.DownstreamLocalAddress = addr(t, tc.local)
			base.Info.RequestedServerName = tc.sni
			cb := callbacks{Callbacks: base, remote: addr(t, tc.remote), direct: addr(t, tc.direct)}
			f := factory(cb).(*Filter)
			h := &hhttp.Headers{}
			h.Add(hhttp.Method, tc.method)
			h.Add(hhttp.Path, tc.path)
			h.Add(hhttp.Authority, "example.com")
			for k, v := range tc.headers {
				h.Add(k, v)
			}
			st := f.DecodeHeaders(h, true)
			f.OnDestroy()
			if tc.wantCode == 0 {
				if st != httpfilter.Continue || len(base.Replies) != 0 {
					t.Fatalf("status %v replies %+v, want Continue and no reply", st, base.Replies)
				}
			} else {
				if st != httpfilter.Stop || len(base.Replies) != 1 {
					t.Fatalf("status %v replies %+v, want Stop and one reply", st, base.Replies)
				}
				r := base.Replies[0]
				if r.Code != tc.wantCode || r.Body != Body || r.Details != tc.wantDetails {
					t.Errorf("reply %d %q %q, want %d %q %q", r.Code, r.Body, r.Details, tc.wantCode, Body, tc.wantDetails)
				}
			}
			wantAllowed, wantDenied := uint64(0), uint64(0)
			switch {
			case tc.route == "{}":
			case tc.wantCode != 0:
				wantDenied = 1
			default:
				wantAllowed = 1
			}
			if got := store.Counter("http.ingress.rbac.allowed").Value(); got != wantAllowed {
				t.Errorf("rbac.allowed = %d, want %d", got, wantAllowed)
			}
			if got := store.Counter("http.ingress.rbac.denied").Value(); got != wantDenied {
				t.Errorf("rbac.denied = %d, want %d", got, wantDenied)
			}
			// The filter's shadow rules apply only without a route config.
			wantSA, wantSD := uint64(0), uint64(0)
			if tc.route == "" {
				if tc.path == "/api/x?q=1" {
					wantSD = 1
				} else {
					wantSA = 1
				}
			}
			if got := store.Counter("http.ingress.rbac.sh.shadow_allowed").Value(); got != wantSA {
				t.Errorf("rbac.sh.shadow_allowed = %d, want %d", got, wantSA)
			}
			if got := store.Counter("http.ingress.rbac.sh.shadow_denied").Value(); got != wantSD {
				t.Errorf("rbac.sh.shadow_denied = %d, want %d", got, wantSD)
			}
		})
	}
}

func addr(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	if s == "" {
		return netip.AddrPort{}
	}
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNoAllocs: deciding a request allocates nothing.
func TestNoAllocs(t *testing.T) {
	cfg := httpfiltertest.Parse(t, `rules: {action: ALLOW, policies: {p: {permissions: [{or_rules: {rules: [{url_path: {path: {prefix: /api}}}, {header: {name: x-a, exact_match: b}}]}}], principals: [{remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}]}}}`, &rbachttpv3.RBAC{})
	store := stats.NewStore()
	factory, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatal(err)
	}
	cb := callbacks{Callbacks: &httpfiltertest.Callbacks{}, remote: netip.MustParseAddrPort("10.1.1.1:1")}
	h := httpfiltertest.Request()
	h.Set(hhttp.Path, "/api/v1?x=y")
	var c httpfilter.Callbacks = cb
	n := testing.AllocsPerRun(100, func() {
		f := factory(c).(*Filter)
		if f.DecodeHeaders(h, true) != httpfilter.Continue {
			t.Fatal("denied")
		}
		f.OnDestroy()
	})
	if n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// TestTLSAndMetadata: authenticated principals read the downstream
// connection's client certificate (httpfilter.ConnectionInfo), metadata
// rules the stream's dynamic metadata.
func TestTLSAndMetadata(t *testing.T) {
	const filter = `rules:
  action: ALLOW
  policies:
    spiffe-client:
      permissions: [{url_path: {path: {prefix: /mtls}}}]
      principals: [{authenticated: {principal_name: {exact: "spiffe://example.org/client"}}}]
    any-tls:
      permissions: [{url_path: {path: {prefix: /tls}}}]
      principals: [{authenticated: {}}]
    tenant:
      permissions: [{metadata: {filter: envoy.filters.http.header_to_metadata, path: [{key: tenant}], value: {string_match: {exact: acme}}}}]
      principals: [{any: true}]
`
	spiffe, _ := url.Parse("spiffe://example.org/client")
	client := &x509.Certificate{URIs: []*url.URL{spiffe}, Subject: pkix.Name{CommonName: "client"}}
	other := &x509.Certificate{DNSNames: []string{"other.example.org"}}
	tests := []struct {
		name     string
		path     string
		tls      bool
		cert     *x509.Certificate
		tenant   string // dynamic metadata tenant, "" for none
		wantDeny bool
	}{
		{name: "mtls client allowed", path: "/mtls", tls: true, cert: client},
		{name: "mtls other client denied", path: "/mtls", tls: true, cert: other, wantDeny: true},
		{name: "mtls without cert denied", path: "/mtls", tls: true, wantDeny: true},
		{name: "mtls plaintext denied", path: "/mtls", wantDeny: true},
		// Envoy: authenticated without principal_name matches any TLS connection.
		{name: "any tls allowed", path: "/tls", tls: true},
		{name: "any tls plaintext denied", path: "/tls", wantDeny: true},
		{name: "metadata match", path: "/x", tenant: "acme"},
		{name: "metadata other value", path: "/x", tenant: "globex", wantDeny: true},
		{name: "no metadata", path: "/x", wantDeny: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			factory, err := Build(httpfiltertest.Parse(t, filter, &rbachttpv3.RBAC{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
			if err != nil {
				t.Fatal(err)
			}
			cb := &httpfiltertest.Callbacks{TLS: tc.tls, PeerCert: tc.cert}
			if tc.tenant != "" {
				s, _ := structpb.NewStruct(map[string]any{"tenant": tc.tenant})
				cb.Info.SetDynamicMetadata("envoy.filters.http.header_to_metadata", s)
			}
			f := factory(cb).(*Filter)
			h := httpfiltertest.Request()
			h.Set(hhttp.Path, tc.path)
			st := f.DecodeHeaders(h, true)
			f.OnDestroy()
			if denied := st == httpfilter.Stop; denied != tc.wantDeny {
				t.Errorf("denied = %v, want %v (replies %+v)", denied, tc.wantDeny, cb.Replies)
			}
		})
	}
}
