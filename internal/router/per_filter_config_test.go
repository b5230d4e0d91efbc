package router

import (
	"errors"
	"strings"
	"testing"

	cdnloopv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cdn_loop/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// builtPerRoute is what the fake lua filter's BuildPerRoute returns.
type builtPerRoute struct {
	name string // LuaPerRoute.name
	path string // BuildContext.Path it was built with
}

// The test binary registers two fake filters under real Envoy protos that
// no code of this package uses: lua (with LuaPerRoute as per-route config)
// and cdn_loop (no per-route config).
func init() {
	httpfilter.Register(httpfilter.Extension[*luav3.Lua]{
		Name:     "envoy.filters.http.lua",
		Config:   &luav3.Lua{},
		PerRoute: &luav3.LuaPerRoute{},
		Build: func(*luav3.Lua, httpfilter.BuildContext) (httpfilter.Factory, error) {
			return nil, nil
		},
		BuildPerRoute: func(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
			pr := m.(*luav3.LuaPerRoute)
			if pr.GetName() == "fail" {
				return nil, errors.New("lua: no script called fail")
			}
			return &builtPerRoute{name: pr.GetName(), path: ctx.Path}, nil
		},
	})
	httpfilter.Register(httpfilter.Extension[*cdnloopv3.CdnLoopConfig]{
		Name:   "envoy.filters.http.cdn_loop",
		Config: &cdnloopv3.CdnLoopConfig{},
		Build: func(*cdnloopv3.CdnLoopConfig, httpfilter.BuildContext) (httpfilter.Factory, error) {
			return nil, nil
		},
	})
}

// luaPerRoute is a typed_per_filter_config entry for the filter named lua.
func luaPerRoute(name string) string {
	return `{lua: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute, name: ` + name + `}}`
}

func TestPerFilterConfigPrecedence(t *testing.T) {
	tbl := mustBuild(t, `
typed_per_filter_config: `+luaPerRoute("table")+`
virtual_hosts:
- name: with-vhost
  domains: ["v.com"]
  typed_per_filter_config: `+luaPerRoute("vhost")+`
  routes:
  - {name: route-level, match: {prefix: "/route"}, route: {cluster: c}, typed_per_filter_config: `+luaPerRoute("route")+`}
  - {name: vhost-level, match: {prefix: "/vhost"}, route: {cluster: c}}
  - name: disabled
    match: {prefix: "/disabled"}
    route: {cluster: c}
    typed_per_filter_config:
      lua: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
  - name: weighted
    match: {prefix: "/weighted"}
    route:
      weighted_clusters:
        clusters:
        - {name: a, weight: 1, typed_per_filter_config: `+luaPerRoute("cluster")+`}
        - {name: b, weight: 1}
- name: table-only
  domains: ["*"]
  routes: [{name: table-level, match: {prefix: "/"}, route: {cluster: c}}]`)
	tests := []struct {
		name      string
		authority string
		path      string
		random    uint64
		want      string
		wantPath  string
	}{
		{name: "route wins", authority: "v.com", path: "/route", want: "route",
			wantPath: "route_config.virtual_hosts[0].routes[0].typed_per_filter_config[lua]"},
		{name: "virtual host next", authority: "v.com", path: "/vhost", want: "vhost",
			wantPath: "route_config.virtual_hosts[0].typed_per_filter_config[lua]"},
		{name: "table last", authority: "other.com", path: "/", want: "table",
			wantPath: "route_config.typed_per_filter_config[lua]"},
		// Envoy: a disabled entry has no config, so the next level's applies.
		{name: "disabled falls through", authority: "v.com", path: "/disabled", want: "vhost",
			wantPath: "route_config.virtual_hosts[0].typed_per_filter_config[lua]"},
		{name: "weighted cluster wins", authority: "v.com", path: "/weighted", random: 0, want: "cluster",
			wantPath: "route_config.virtual_hosts[0].routes[3].route.weighted_clusters.clusters[0].typed_per_filter_config[lua]"},
		{name: "weighted cluster without config", authority: "v.com", path: "/weighted", random: 1, want: "vhost",
			wantPath: "route_config.virtual_hosts[0].typed_per_filter_config[lua]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tbl.Match(req(tc.authority, tc.path))
			if r == nil {
				t.Fatal("no route")
			}
			var got any
			if _, wc := r.PickCluster(req(tc.authority, tc.path), tc.random); wc != nil {
				got = wc.PerFilterConfig("lua")
			} else {
				var fr httpfilter.Route = r
				got = fr.PerFilterConfig("lua")
			}
			b, ok := got.(*builtPerRoute)
			if !ok {
				t.Fatalf("PerFilterConfig(lua) = %#v, want a built config", got)
			}
			if b.name != tc.want || b.path != tc.wantPath {
				t.Errorf("PerFilterConfig(lua) = %q built at %s; want %q at %s", b.name, b.path, tc.want, tc.wantPath)
			}
			if r.PerFilterConfig("other") != nil {
				t.Error("PerFilterConfig of an unconfigured filter is not nil")
			}
		})
	}
}

func TestFilterDisabled(t *testing.T) {
	tbl := mustBuild(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  typed_per_filter_config:
    lua: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}
  routes:
  - name: enabled
    match: {prefix: "/enabled"}
    route: {cluster: c}
    typed_per_filter_config:
      lua: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, config: {}}
  - name: wrapped
    match: {prefix: "/wrapped"}
    route: {cluster: c}
    typed_per_filter_config:
      lua: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute, name: wrapped}}
  - name: optional-unknown
    match: {prefix: "/optional"}
    route: {cluster: c}
    typed_per_filter_config:
      mystery: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true, config: {"@type": type.googleapis.com/envoy.config.route.v3.Decorator, operation: x}}
  - {name: inherits, match: {prefix: "/"}, route: {cluster: c}}`)
	tests := []struct {
		name         string
		path         string
		filter       string
		wantDisabled bool
		wantSet      bool
		wantConfig   string
	}{
		{name: "empty config enables", path: "/enabled", filter: "lua", wantDisabled: false, wantSet: true},
		{name: "wrapped config", path: "/wrapped", filter: "lua", wantDisabled: false, wantSet: true, wantConfig: "wrapped"},
		{name: "optional unknown filter is skipped", path: "/optional", filter: "mystery", wantDisabled: false, wantSet: true},
		{name: "inherits the virtual host's", path: "/", filter: "lua", wantDisabled: true, wantSet: true},
		{name: "unmentioned filter", path: "/", filter: "other", wantDisabled: false, wantSet: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tbl.Match(req("h", tc.path))
			d, set := r.FilterDisabled(tc.filter)
			if d != tc.wantDisabled || set != tc.wantSet {
				t.Errorf("FilterDisabled(%s) = %v, %v; want %v, %v", tc.filter, d, set, tc.wantDisabled, tc.wantSet)
			}
			got := ""
			if b, ok := r.PerFilterConfig(tc.filter).(*builtPerRoute); ok {
				got = b.name
			}
			if got != tc.wantConfig {
				t.Errorf("PerFilterConfig(%s) = %q, want %q", tc.filter, got, tc.wantConfig)
			}
		})
	}
}

func TestPerFilterConfigErrors(t *testing.T) {
	const p = "route_config.virtual_hosts[0].typed_per_filter_config[lua]"
	tests := []struct {
		name     string
		entry    string
		wantPath string
		wantMsg  string
	}{
		{
			name:     "BuildPerRoute fails",
			entry:    `{"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute, name: fail}`,
			wantPath: p,
			wantMsg:  "lua: no script called fail",
		},
		{
			name:     "per-route config fails validation",
			entry:    `{"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute, disabled: false}`,
			wantPath: p,
			wantMsg:  "Disabled",
		},
		{
			name:     "filter config type instead of per-route type",
			entry:    `{"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}`,
			wantPath: p,
			wantMsg:  "per-route config must be type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
		},
		{
			name:     "filter without per-route config",
			entry:    `{"@type": type.googleapis.com/envoy.extensions.filters.http.cdn_loop.v3.CdnLoopConfig, cdn_id: x}`,
			wantPath: p,
			wantMsg:  "doesn't support virtual host or route specific configurations",
		},
		{
			name:     "wrapper without config",
			entry:    `{"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, is_optional: true}`,
			wantPath: p + ".config",
			wantMsg:  "empty route/virtual host per filter configuration for lua filter",
		},
		{
			name:     "wrapped unknown type, not optional",
			entry:    `{"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, config: {"@type": type.googleapis.com/envoy.config.route.v3.Decorator, operation: x}}`,
			wantPath: p + ".config",
			wantMsg:  "didn't find a registered implementation for 'lua'",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(parseRouteConfig(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  typed_per_filter_config: {lua: `+tc.entry+`}`), BuildContext{Path: testPath})
			var l configerr.List
			if !errors.As(err, &l) {
				t.Fatalf("Build error = %v, want a configerr.List", err)
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

// TestAppendPerFilterConfigs: every level's config, least specific first
// (Envoy's traversePerFilterConfig), levels without one skipped.
func TestAppendPerFilterConfigs(t *testing.T) {
	tbl := mustBuild(t, `
typed_per_filter_config: `+luaPerRoute("table")+`
virtual_hosts:
- name: with-vhost
  domains: ["v.com"]
  typed_per_filter_config: `+luaPerRoute("vhost")+`
  routes:
  - {name: route-level, match: {prefix: "/route"}, route: {cluster: c}, typed_per_filter_config: `+luaPerRoute("route")+`}
  - {name: vhost-level, match: {prefix: "/vhost"}, route: {cluster: c}}
- name: bare
  domains: ["*"]
  routes: [{name: table-level, match: {prefix: "/"}, route: {cluster: c}}]`)
	tests := []struct {
		name, authority, path string
		want                  []string
	}{
		{name: "all three levels", authority: "v.com", path: "/route", want: []string{"table", "vhost", "route"}},
		{name: "no route level", authority: "v.com", path: "/vhost", want: []string{"table", "vhost"}},
		{name: "table only", authority: "x.com", path: "/", want: []string{"table"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := tbl.Match(req(tc.authority, tc.path))
			if r == nil {
				t.Fatal("no route")
			}
			var got []string
			for _, c := range httpfilter.AllPerFilterConfigs(r, nil, "lua") {
				got = append(got, c.(*builtPerRoute).name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("AllPerFilterConfigs(lua) = %v, want %v", got, tc.want)
			}
			if n := len(r.AppendPerFilterConfigs(nil, "other")); n != 0 {
				t.Errorf("an unconfigured filter has %d configs, want 0", n)
			}
		})
	}
}
