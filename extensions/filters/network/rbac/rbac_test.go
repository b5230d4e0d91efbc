package rbac

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

func build(t *testing.T, yaml string) (*Filter, *stats.Store, error) {
	t.Helper()
	cfg := &rbacnetv3.RBAC{}
	if _, err := bootstrap.Unmarshal("rbac.yaml", []byte(yaml), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	store := stats.NewStore()
	f, err := Build(cfg, netfilter.BuildContext{Path: path, Stats: store})
	if err != nil {
		return nil, store, err
	}
	return f.(*Filter), store, nil
}

func TestRegistered(t *testing.T) {
	e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&rbacnetv3.RBAC{}))
	if !ok || e.Name != Name || e.Terminal {
		t.Fatalf("registered as %+v, %v; want non-terminal %s", e, ok, Name)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // below path
	}{
		{
			name:    "header permission refused as Envoy does",
			yaml:    "stat_prefix: s\nrules: {action: ALLOW, policies: {p: {permissions: [{header: {name: x, present_match: true}}], principals: [{any: true}]}}}",
			wantErr: ".rules.policies[p].permissions[0].header: header rules are not supported by the RBAC network filter",
		},
		{
			name:    "header principal in shadow rules",
			yaml:    "stat_prefix: s\nshadow_rules: {action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{header: {name: x, present_match: true}}]}}}",
			wantErr: ".shadow_rules.policies[p].principals[0].header: header rules",
		},
		{
			name:    "matcher",
			yaml:    "stat_prefix: s\nmatcher: {on_no_match: {action: {name: a, typed_config: {'@type': type.googleapis.com/envoy.config.rbac.v3.Action, name: x}}}}",
			wantErr: ".matcher: matcher is not supported by herald yet",
		},
		{
			name:    "no stat_prefix",
			yaml:    "rules: {action: DENY}",
			wantErr: ".stat_prefix: stat_prefix is required",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := build(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), path+tc.wantErr) {
				t.Errorf("Build error = %v, want it to contain %q", err, path+tc.wantErr)
			}
		})
	}
}

func conn(t *testing.T, remote, local, sni string) *network.Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := network.NewConn(context.Background(), a, nil)
	c.Remote = netip.MustParseAddrPort(remote)
	c.DirectRemote = c.Remote
	c.Local = netip.MustParseAddrPort(local)
	c.ServerName = sni
	return c
}

func TestOnNewConnection(t *testing.T) {
	const rules = `stat_prefix: tcp_rbac
shadow_rules_stat_prefix: "shadow_"
enforcement_type: %[1]s
rules:
  action: %[2]s
  policies:
    "office or db sni":
      permissions:
      - or_rules: { rules: [ { destination_port: 5432 }, { requested_server_name: { exact: db.example.com } } ] }
      principals:
      - direct_remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 }
shadow_rules:
  action: DENY
  policies:
    everything: { permissions: [{ any: true }], principals: [{ any: true }] }
`
	tests := []struct {
		name        string
		action      string
		enforcement string
		remote      string
		local       string
		sni         string
		want        bool
	}{
		{name: "allow by port", action: "ALLOW", enforcement: "ONE_TIME_ON_FIRST_BYTE", remote: "10.1.1.1:1000", local: "127.0.0.1:5432", want: true},
		{name: "allow by sni", action: "ALLOW", enforcement: "ONE_TIME_ON_FIRST_BYTE", remote: "10.1.1.1:1000", local: "127.0.0.1:9", sni: "db.example.com", want: true},
		{name: "allow refuses other source", action: "ALLOW", enforcement: "ONE_TIME_ON_FIRST_BYTE", remote: "192.168.1.1:1000", local: "127.0.0.1:5432"},
		{name: "deny matching", action: "DENY", enforcement: "CONTINUOUS", remote: "10.1.1.1:1000", local: "127.0.0.1:5432"},
		{name: "deny not matching", action: "DENY", enforcement: "CONTINUOUS", remote: "10.1.1.1:1000", local: "127.0.0.1:9", want: true},
		{name: "log lets through", action: "LOG", enforcement: "ONE_TIME_ON_FIRST_BYTE", remote: "10.1.1.1:1000", local: "127.0.0.1:5432", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, store, err := build(t, fmt.Sprintf(rules, tc.enforcement, tc.action))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.OnNewConnection(conn(t, tc.remote, tc.local, tc.sni)); got != tc.want {
				t.Errorf("OnNewConnection = %v, want %v", got, tc.want)
			}
			wantAllowed, wantDenied := uint64(0), uint64(1)
			if tc.want {
				wantAllowed, wantDenied = 1, 0
			}
			// Envoy's names: <stat_prefix>.rbac.[<shadow_rules_stat_prefix>]...
			for name, want := range map[string]uint64{
				"tcp_rbac.rbac.allowed":               wantAllowed,
				"tcp_rbac.rbac.denied":                wantDenied,
				"tcp_rbac.rbac.shadow_shadow_denied":  1,
				"tcp_rbac.rbac.shadow_shadow_allowed": 0,
			} {
				if got := store.Counter(name).Value(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestDelayDeny: a denied connection is held for delay_deny, then refused;
// an allowed one is not delayed.
func TestDelayDeny(t *testing.T) {
	f, _, err := build(t, "stat_prefix: s\ndelay_deny: 0.1s\nrules: {action: DENY, policies: {p: {permissions: [{destination_port: 5432}], principals: [{any: true}]}}}")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !f.OnNewConnection(conn(t, "10.0.0.1:1", "127.0.0.1:80", "")) {
		t.Fatal("port 80 denied")
	}
	if d := time.Since(start); d >= 100*time.Millisecond {
		t.Errorf("allowed connection took %v, want no delay", d)
	}
	start = time.Now()
	if f.OnNewConnection(conn(t, "10.0.0.1:1", "127.0.0.1:5432", "")) {
		t.Fatal("port 5432 allowed")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("denied after %v, want at least the 100ms delay_deny", d)
	}
}

// TestNeedsCert: the peer certificate is fetched only when some rule, of
// the enforced or the shadow rules, reads it.
func TestNeedsCert(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{name: "addresses only", yaml: "stat_prefix: s\nrules: {action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]}}}", want: false},
		{name: "enforced authenticated", yaml: "stat_prefix: s\nrules: {action: ALLOW, policies: {p: {permissions: [{any: true}], principals: [{not_id: {authenticated: {}}}]}}}", want: true},
		{name: "shadow authenticated", yaml: "stat_prefix: s\nshadow_rules: {action: DENY, policies: {p: {permissions: [{any: true}], principals: [{authenticated: {principal_name: {exact: a}}}]}}}", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := build(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if f.needsCert != tc.want {
				t.Errorf("needsCert = %v, want %v", f.needsCert, tc.want)
			}
		})
	}
}
