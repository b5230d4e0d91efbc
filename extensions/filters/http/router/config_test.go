package router_test

import (
	"strings"
	"testing"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	// Every extension, so that the router is registered as in herald.
	_ "github.com/herald-proxy/herald/extensions/all"
	"github.com/herald-proxy/herald/extensions/filters/http/router"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// routerPath is where the config sits in a bootstrap; errors must name
// fields below it.
const routerPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"

func buildContext(t *testing.T) httpfilter.BuildContext {
	t.Helper()
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	return httpfilter.BuildContext{
		Path:       routerPath,
		StatPrefix: "http.ingress.",
		Stats:      store,
		Clusters:   mgr,
	}
}

// parse decodes a YAML fragment the way the bootstrap loader does (YAML →
// JSON → protojson) and requires it to pass the proto's own validation
// rules, so that a failure of Build is herald's and not Envoy's.
func parse(t *testing.T, fragment string) *routerv3.Router {
	t.Helper()
	cfg := &routerv3.Router{}
	if _, err := bootstrap.Unmarshal("router.yaml", []byte(fragment), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if err := cfg.ValidateAll(); err != nil {
		t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
	}
	return cfg
}

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&routerv3.Router{})
	e, ok := httpfilter.Registry.ByTypeURL(url)
	if !ok {
		t.Fatalf("%s is not registered", url)
	}
	if got, want := e.Name, "envoy.filters.http.router"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if !e.Terminal {
		t.Error("Terminal = false, want true: the router must be the last HTTP filter")
	}
	if byName, ok := httpfilter.Registry.ByName(e.Name); !ok || byName != e {
		t.Errorf("ByName(%q) = %v, %v; want the entry registered by type URL", e.Name, byName, ok)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByName(e.Name); ok {
		t.Error("the router has no typed_per_filter_config in Envoy, but one is registered")
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string // "" for a valid config; else the field path below routerPath, then the message
	}{
		{
			// Envoy accepts an empty Router; so does a name-only filter entry.
			name:   "empty",
			config: "{}",
		},
		{
			name:   "suppress_envoy_headers",
			config: "suppress_envoy_headers: true",
		},
		{
			name: "upstream_log",
			config: `
upstream_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
`,
			wantErr: ".upstream_log: upstream_log is not supported by herald yet",
		},
		{
			name: "upstream_http_filters",
			config: `
upstream_http_filters:
- name: envoy.filters.http.upstream_codec
`,
			wantErr: ".upstream_http_filters: upstream_http_filters is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			factory, err := router.Build(parse(t, tc.config), buildContext(t))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if factory == nil {
					t.Fatal("Build returned a nil factory")
				}
				return
			}
			if err == nil {
				t.Fatalf("Build succeeded, want error %q", routerPath+tc.wantErr)
			}
			if !strings.Contains(err.Error(), routerPath+tc.wantErr) {
				t.Errorf("Build error:\n%v\nwant it to contain %q", err, routerPath+tc.wantErr)
			}
		})
	}
}

// TestBuildThroughRegistry builds the router the way the connection manager
// does: through the type-erased registry entry.
func TestBuildThroughRegistry(t *testing.T) {
	e, ok := httpfilter.Registry.ByName("envoy.filters.http.router")
	if !ok {
		t.Fatal("router not registered")
	}
	cfg := e.NewConfig()
	if _, ok := cfg.(*routerv3.Router); !ok {
		t.Fatalf("NewConfig() = %T, want *routerv3.Router", cfg)
	}
	factory, err := e.Build(cfg, buildContext(t))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if factory == nil {
		t.Fatal("Build returned a nil factory")
	}
}
