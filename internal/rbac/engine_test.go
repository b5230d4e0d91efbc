package rbac

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// networkKinds mirrors what envoy.filters.network.rbac accepts, to test
// the connection-level matchers.
var networkKinds = Kinds{
	Permissions: []string{"any", "destination_ip", "destination_port", "destination_port_range", "requested_server_name", "and_rules", "or_rules", "not_rule"},
	Principals:  []string{"any", "direct_remote_ip", "remote_ip", "source_ip", "authenticated", "and_ids", "or_ids", "not_id"},
	Refused:     map[string]string{"header": "no headers here"},
}

func compile(t *testing.T, yaml string, k Kinds) (*Engine, error) {
	t.Helper()
	r := &rbacv3.RBAC{}
	if _, err := bootstrap.Unmarshal("rbac.yaml", []byte(yaml), r); err != nil {
		t.Fatalf("parse: %v", err)
	}
	var errs configerr.List
	e := Compile(r, "rules", k, &errs)
	return e, errs.Err()
}

func TestActions(t *testing.T) {
	tests := []struct {
		action      string
		match       bool
		wantAllowed bool
		wantDetails string
	}{
		{action: "ALLOW", match: true, wantAllowed: true},
		{action: "ALLOW", match: false, wantDetails: "rbac_access_denied_matched_policy[none]"},
		{action: "DENY", match: true, wantDetails: "rbac_access_denied_matched_policy[a_b]"},
		{action: "DENY", match: false, wantAllowed: true},
		{action: "LOG", match: true, wantAllowed: true},
		{action: "LOG", match: false, wantAllowed: true},
	}
	for _, tc := range tests {
		name := tc.action + "/nomatch"
		if tc.match {
			name = tc.action + "/match"
		}
		t.Run(name, func(t *testing.T) {
			eng, err := compile(t, "{action: "+tc.action+", policies: {'a b': {permissions: [{header: {name: x-m, present_match: true}}], principals: [{any: true}]}}}", HTTPKinds)
			if err != nil {
				t.Fatal(err)
			}
			h := &hhttp.Headers{}
			if tc.match {
				h.Add("x-m", "1")
			}
			ok, details := eng.Handle(&Request{Headers: h})
			if ok != tc.wantAllowed || details != tc.wantDetails {
				t.Errorf("Handle = %v %q, want %v %q", ok, details, tc.wantAllowed, tc.wantDetails)
			}
		})
	}
}

func TestConnectionMatchers(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/client")
	client := &x509.Certificate{
		URIs:     []*url.URL{spiffe},
		DNSNames: []string{"client.example.com"},
		Subject:  pkix.Name{CommonName: "client", Organization: []string{"herald"}},
	}
	plain := Request{
		Remote: netip.MustParseAddrPort("10.1.2.3:40000"),
		Direct: netip.MustParseAddrPort("10.1.2.3:40000"),
		Local:  netip.MustParseAddrPort("127.0.0.1:8443"),
	}
	tls := plain
	tls.TLS, tls.SNI, tls.PeerCert = true, "db.example.com", client
	tlsNoCert := tls
	tlsNoCert.PeerCert = nil
	tests := []struct {
		name       string
		permission string
		principal  string
		req        Request
		want       bool // the ALLOW policy matches
	}{
		{name: "source ip in range", permission: "{any: true}", principal: "{direct_remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}", req: plain, want: true},
		{name: "source ip out of range", permission: "{any: true}", principal: "{direct_remote_ip: {address_prefix: 192.168.0.0, prefix_len: 16}}", req: plain},
		{name: "destination port", permission: "{destination_port: 8443}", principal: "{any: true}", req: plain, want: true},
		{name: "destination port other", permission: "{destination_port: 9000}", principal: "{any: true}", req: plain},
		{name: "destination port range is half-open", permission: "{destination_port_range: {start: 8000, end: 8443}}", principal: "{any: true}", req: plain},
		{name: "destination ip", permission: "{destination_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}", principal: "{any: true}", req: plain, want: true},
		{name: "sni exact", permission: "{requested_server_name: {exact: db.example.com}}", principal: "{any: true}", req: tls, want: true},
		{name: "sni without tls", permission: "{requested_server_name: {exact: db.example.com}}", principal: "{any: true}", req: plain},
		// Envoy: authenticated without principal_name matches any TLS connection.
		{name: "authenticated any, tls", permission: "{any: true}", principal: "{authenticated: {}}", req: tlsNoCert, want: true},
		{name: "authenticated any, plaintext", permission: "{any: true}", principal: "{authenticated: {}}", req: plain},
		// URI SANs are tried first.
		{name: "authenticated uri san", permission: "{any: true}", principal: "{authenticated: {principal_name: {exact: 'spiffe://cluster.local/ns/default/sa/client'}}}", req: tls, want: true},
		{name: "authenticated dns san", permission: "{any: true}", principal: "{authenticated: {principal_name: {suffix: .example.com}}}", req: tls, want: true},
		{name: "authenticated subject", permission: "{any: true}", principal: "{authenticated: {principal_name: {exact: 'CN=client,O=herald'}}}", req: tls, want: true},
		{name: "authenticated wrong name", permission: "{any: true}", principal: "{authenticated: {principal_name: {exact: other}}}", req: tls},
		{name: "not_id", permission: "{any: true}", principal: "{not_id: {direct_remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}}", req: plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := compile(t, "{action: ALLOW, policies: {p: {permissions: ["+tc.permission+"], principals: ["+tc.principal+"]}}}", networkKinds)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := eng.Handle(&tc.req); got != tc.want {
				t.Errorf("Handle allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		kinds   Kinds
		wantErr string
	}{
		{
			name:    "refused kind has its own message",
			yaml:    "{action: ALLOW, policies: {p: {permissions: [{header: {name: x, present_match: true}}], principals: [{any: true}]}}}",
			kinds:   networkKinds,
			wantErr: "rules.policies[p].permissions[0].header: no headers here",
		},
		{
			name:    "filter_state refused for http",
			yaml:    "{action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{filter_state: {key: k, string_match: {exact: v}}}]}}}",
			kinds:   HTTPKinds,
			wantErr: "rules.policies[p].principals[0].filter_state: filter_state is not supported by herald yet",
		},
		{
			name:    "route metadata refused",
			yaml:    "{action: ALLOW, policies: {p: {permissions: [{sourced_metadata: {metadata_source: ROUTE, metadata_matcher: {filter: f, path: [{key: k}], value: {present_match: true}}}}], principals: [{any: true}]}}}",
			kinds:   HTTPKinds,
			wantErr: "rules.policies[p].permissions[0].sourced_metadata.metadata_source: ROUTE is not supported by herald yet",
		},
		{
			name:    "metadata without value",
			yaml:    "{action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{metadata: {filter: f, path: [{key: k}]}}]}}}",
			kinds:   HTTPKinds,
			wantErr: "rules.policies[p].principals[0].metadata.value: value is required",
		},
		{
			name:    "metadata",
			yaml:    "{action: ALLOW, policies: {p: {permissions: [{metadata: {filter: f, path: [{key: k}], value: {present_match: true}}}], principals: [{any: true}]}}}",
			kinds:   networkKinds,
			wantErr: "rules.policies[p].permissions[0].metadata: metadata is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(t, tc.yaml, tc.kinds)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Compile error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestHandleNoAllocs: deciding a connection allocates nothing (but for
// formatting URI SANs, once per connection, which this case does not have).
func TestHandleNoAllocs(t *testing.T) {
	eng, err := compile(t, "{action: ALLOW, policies: {p: {permissions: [{requested_server_name: {suffix: .example.com}}], principals: [{authenticated: {principal_name: {suffix: .example.com}}}]}}}", networkKinds)
	if err != nil {
		t.Fatal(err)
	}
	q := Request{TLS: true, SNI: "a.example.com", PeerCert: &x509.Certificate{DNSNames: []string{"c.example.com"}}}
	if n := testing.AllocsPerRun(100, func() { eng.Handle(&q) }); n != 0 {
		t.Errorf("%v allocations per Handle, want 0", n)
	}
}
