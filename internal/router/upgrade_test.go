package router

import (
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func TestRouteUpgradeEnabled(t *testing.T) {
	tbl := mustBuild(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - name: configured
    match: {prefix: "/up"}
    route:
      cluster: c
      upgrade_configs:
      - {upgrade_type: WebSocket, enabled: false}
      - {upgrade_type: x-custom}
  - name: plain
    match: {prefix: "/"}
    route: {cluster: c}`)
	tests := []struct {
		name        string
		path        string
		typ         string
		wantEnabled bool
		wantSet     bool
	}{
		{name: "disabled, matched case-insensitively", path: "/up", typ: "websocket", wantSet: true},
		// enabled defaults to true.
		{name: "enabled by default", path: "/up", typ: "X-Custom", wantEnabled: true, wantSet: true},
		{name: "type the route does not mention", path: "/up", typ: "h2c"},
		{name: "route without upgrade_configs", path: "/x", typ: "websocket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := tbl.Match(req("a", tt.path))
			if r == nil {
				t.Fatalf("no route for %s", tt.path)
			}
			enabled, set := r.UpgradeEnabled(tt.typ)
			if enabled != tt.wantEnabled || set != tt.wantSet {
				t.Errorf("UpgradeEnabled(%q) = %v, %v; want %v, %v", tt.typ, enabled, set, tt.wantEnabled, tt.wantSet)
			}
		})
	}
}

func TestIsUpgradeRequest(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   bool
	}{
		{name: "websocket", fields: []string{"connection", "Upgrade", "upgrade", "websocket"}, want: true},
		{name: "token among others", fields: []string{"connection", "keep-alive, upgrade", "upgrade", "x"}, want: true},
		// Not an upgrade: the connection manager drops it as hop-by-hop.
		{name: "upgrade header only", fields: []string{"upgrade", "websocket"}},
		{name: "connection token only", fields: []string{"connection", "upgrade"}},
		{name: "plain request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hhttp.Headers{}
			for i := 0; i+1 < len(tt.fields); i += 2 {
				h.Add(tt.fields[i], tt.fields[i+1])
			}
			if got := isUpgradeRequest(h); got != tt.want {
				t.Errorf("isUpgradeRequest = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConnectMatcher(t *testing.T) {
	tbl := mustBuild(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - name: plain
    match: {prefix: "/"}
    route: {cluster: c}
  - name: connect-header
    match:
      connect_matcher: {}
      headers: [{name: x-tunnel, string_match: {exact: forward}}]
    route: {cluster: c}
  - name: connect
    match: {connect_matcher: {}}
    route:
      cluster: c
      upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]`)
	connect := func(extra ...string) *hhttp.Headers {
		h := &hhttp.Headers{}
		h.Add(hhttp.Method, "CONNECT")
		h.Add(hhttp.Authority, "a:443")
		for i := 0; i+1 < len(extra); i += 2 {
			h.Add(extra[i], extra[i+1])
		}
		return h
	}
	tests := []struct {
		name          string
		h             *hhttp.Headers
		wantRoute     string
		wantTerminate bool
	}{
		// Prefix routes never match a CONNECT (it has no :path).
		{name: "CONNECT skips path routes, terminated", h: connect(), wantRoute: "connect", wantTerminate: true},
		{name: "header matchers apply", h: connect("x-tunnel", "forward"), wantRoute: "connect-header"},
		{name: "connect_matcher never matches other methods", h: req("a", "/x"), wantRoute: "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := tbl.Match(tt.h)
			got := ""
			if r != nil {
				got = r.Name()
			}
			if got != tt.wantRoute {
				t.Fatalf("route = %q, want %q", got, tt.wantRoute)
			}
			if r.ConnectTerminate() != tt.wantTerminate {
				t.Errorf("ConnectTerminate = %v, want %v", r.ConnectTerminate(), tt.wantTerminate)
			}
		})
	}
	// A table without connect_matcher routes has no route for CONNECT.
	plain := mustBuild(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]`)
	if r, _ := plain.Match(connect()); r != nil {
		t.Errorf("CONNECT matched %q without a connect_matcher route", r.Name())
	}
}
