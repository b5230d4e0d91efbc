package httpconnectionmanager_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	// Every extension, so that the router, the access loggers and the
	// STATIC cluster type resolve as they do in herald.
	_ "github.com/herald-proxy/herald/extensions/all"
	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// hcmPath is where the config sits in a bootstrap; errors must name fields
// below it.
const hcmPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

// routeToBackend and router complete a fragment that tests other fields.
const (
	routeToBackend = `
route_config:
  virtual_hosts:
  - name: all
    domains: ["*"]
    routes:
    - match: { prefix: "/" }
      route: { cluster: backend }
`
	router = `
http_filters:
- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`
)

// serverContext gives access loggers the file manager, as internal/server does.
type serverContext struct{ files *accesslog.FileManager }

func (s serverContext) AccessLogFiles() *accesslog.FileManager { return s.files }

// buildContext returns a context with a cluster manager holding one STATIC
// cluster, "backend".
func buildContext(t *testing.T) netfilter.BuildContext {
	t.Helper()
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	backend := &clusterv3.Cluster{}
	if _, err := bootstrap.Unmarshal("cluster.yaml", []byte(`
name: backend
type: STATIC
load_assignment:
  cluster_name: backend
  endpoints:
  - lb_endpoints:
    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }
`), backend); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	if err := mgr.Apply(context.Background(), []*clusterv3.Cluster{backend}, func(int) string { return "static_resources.clusters[0]" }); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	files := accesslog.NewFileManager(time.Second)
	t.Cleanup(func() { files.Close() })
	return netfilter.BuildContext{
		Path:     hcmPath,
		Stats:    store,
		Clusters: mgr,
		Server:   serverContext{files: files},
	}
}

// parse decodes a YAML fragment the way the bootstrap loader does (YAML →
// JSON → protojson) and requires it to pass the proto's own validation
// rules, so that a failure of Build is herald's and not Envoy's.
func parse(t *testing.T, fragment string) *hcmv3.HttpConnectionManager {
	t.Helper()
	cfg := parseUnvalidated(t, fragment)
	if err := cfg.ValidateAll(); err != nil {
		t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
	}
	return cfg
}

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&hcmv3.HttpConnectionManager{})
	e, ok := netfilter.Registry.ByTypeURL(url)
	if !ok {
		t.Fatalf("%s is not registered", url)
	}
	if got, want := e.Name, "envoy.filters.network.http_connection_manager"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if !e.Terminal {
		t.Error("Terminal = false, want true")
	}
	if byName, ok := netfilter.Registry.ByName(e.Name); !ok || byName != e {
		t.Errorf("ByName(%q) = %v, %v; want the entry registered by type URL", e.Name, byName, ok)
	}
}

func TestBuildValid(t *testing.T) {
	tests := []struct {
		name   string
		config string
		check  func(t *testing.T, c *connmgr.Config)
	}{
		{
			name:   "defaults are Envoy's",
			config: "stat_prefix: ingress\n" + routeToBackend + router,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				want := connmgr.Config{
					StatPrefix:             "ingress",
					Codec:                  connmgr.Auto,
					ServerName:             "envoy",
					GenerateRequestID:      true,
					MaxRequestHeadersBytes: 60 << 10,
					MaxRequestHeadersCount: 100,
					StreamIdleTimeout:      5 * time.Minute,
					IdleTimeout:            time.Hour,
					DrainTimeout:           5 * time.Second,
				}
				checkFields(t, c, want)
				if c.Routes == nil {
					t.Error("Routes = nil, want the built route table")
				}
				if len(c.Filters) != 1 || c.Filters[0].Name != "envoy.filters.http.router" {
					t.Errorf("Filters = %+v, want the router only", c.Filters)
				}
			},
		},
		{
			name: "overrides",
			config: `
stat_prefix: edge
codec_type: HTTP2
server_name: herald-edge
server_header_transformation: PASS_THROUGH
max_request_headers_kb: 96
stream_idle_timeout: 30s
request_timeout: 10s
drain_timeout: 1s
generate_request_id: false
use_remote_address: true
xff_num_trusted_hops: 2
skip_xff_append: true
via: herald
preserve_external_request_id: true
always_set_request_id_in_response: true
common_http_protocol_options:
  idle_timeout: 120s
  max_headers_count: 50
` + routeToBackend + router,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				want := connmgr.Config{
					StatPrefix:                   "edge",
					Codec:                        connmgr.HTTP2,
					ServerName:                   "herald-edge",
					ServerHeaderTransformation:   connmgr.PassThrough,
					MaxRequestHeadersBytes:       96 << 10,
					MaxRequestHeadersCount:       50,
					StreamIdleTimeout:            30 * time.Second,
					RequestTimeout:               10 * time.Second,
					IdleTimeout:                  2 * time.Minute,
					DrainTimeout:                 time.Second,
					UseRemoteAddress:             true,
					XffNumTrustedHops:            2,
					SkipXffAppend:                true,
					Via:                          "herald",
					PreserveExternalRequestID:    true,
					AlwaysSetRequestIDInResponse: true,
				}
				checkFields(t, c, want)
			},
		},
		{
			// Envoy resolves a filter without typed_config by its name.
			name:   "router by name only",
			config: "stat_prefix: s\n" + routeToBackend + "http_filters:\n- name: envoy.filters.http.router\n",
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				if len(c.Filters) != 1 {
					t.Errorf("got %d filters, want 1", len(c.Filters))
				}
			},
		},
		{
			// Envoy: an optional filter the proxy does not know is skipped.
			name: "unknown optional filter is skipped",
			config: "stat_prefix: s\n" + routeToBackend + `
http_filters:
- name: envoy.filters.http.not_in_herald
  is_optional: true
- name: envoy.filters.http.router
`,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				if len(c.Filters) != 1 || c.Filters[0].Name != "envoy.filters.http.router" {
					t.Errorf("Filters = %+v, want the router only", c.Filters)
				}
			},
		},
		{
			name: "access log",
			config: "stat_prefix: s\n" + routeToBackend + router + `
access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
`,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				if len(c.AccessLogs) != 1 {
					t.Errorf("got %d access logs, want 1", len(c.AccessLogs))
				}
			},
		},
		{
			name: "http2_protocol_options",
			config: `
stat_prefix: s
http2_protocol_options:
  max_concurrent_streams: 64
  initial_stream_window_size: 131072
  initial_connection_window_size: 1048576
` + routeToBackend + router,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				want := hhttp.HTTP2Options{MaxConcurrentStreams: 64, InitialStreamWindowSize: 128 << 10, InitialConnectionWindowSize: 1 << 20}
				if c.HTTP2 == nil || *c.HTTP2 != want {
					t.Errorf("HTTP2 = %+v, want %+v", c.HTTP2, want)
				}
			},
		},
		{
			name:   "strip_any_host_port",
			config: "stat_prefix: s\nstrip_any_host_port: true\n" + routeToBackend + router,
			check: func(t *testing.T, c *connmgr.Config) {
				t.Helper()
				if c.Routes == nil {
					t.Error("Routes = nil")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, tc.config), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			hcm, ok := f.(*httpconnectionmanager.Filter)
			if !ok {
				t.Fatalf("Build returned %T, want *Filter", f)
			}
			if _, ok := f.(netfilter.Terminal); !ok {
				t.Errorf("%T does not implement netfilter.Terminal", f)
			}
			tc.check(t, hcm.Config())
		})
	}
}

// parseUnvalidated decodes a YAML fragment without the validation rules.
func parseUnvalidated(t *testing.T, fragment string) *hcmv3.HttpConnectionManager {
	t.Helper()
	cfg := &hcmv3.HttpConnectionManager{}
	if _, err := bootstrap.Unmarshal("hcm.yaml", []byte(fragment), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// checkFields compares the scalar settings of got with want.
func checkFields(t *testing.T, got *connmgr.Config, want connmgr.Config) {
	t.Helper()
	type scalars struct {
		StatPrefix                   string
		Codec                        connmgr.CodecType
		ServerName                   string
		ServerHeaderTransformation   connmgr.ServerHeaderTransformation
		GenerateRequestID            bool
		MaxRequestHeadersBytes       int
		MaxRequestHeadersCount       int
		StreamIdleTimeout            time.Duration
		RequestTimeout               time.Duration
		IdleTimeout                  time.Duration
		DrainTimeout                 time.Duration
		UseRemoteAddress             bool
		XffNumTrustedHops            int
		SkipXffAppend                bool
		Via                          string
		PreserveExternalRequestID    bool
		AlwaysSetRequestIDInResponse bool
	}
	pick := func(c *connmgr.Config) scalars {
		return scalars{
			StatPrefix: c.StatPrefix, Codec: c.Codec, ServerName: c.ServerName,
			ServerHeaderTransformation: c.ServerHeaderTransformation, GenerateRequestID: c.GenerateRequestID,
			MaxRequestHeadersBytes: c.MaxRequestHeadersBytes, MaxRequestHeadersCount: c.MaxRequestHeadersCount,
			StreamIdleTimeout: c.StreamIdleTimeout, RequestTimeout: c.RequestTimeout, IdleTimeout: c.IdleTimeout,
			DrainTimeout: c.DrainTimeout, UseRemoteAddress: c.UseRemoteAddress, XffNumTrustedHops: c.XffNumTrustedHops,
			SkipXffAppend: c.SkipXffAppend, Via: c.Via, PreserveExternalRequestID: c.PreserveExternalRequestID,
			AlwaysSetRequestIDInResponse: c.AlwaysSetRequestIDInResponse,
		}
	}
	if g, w := pick(got), pick(&want); g != w {
		t.Errorf("config:\n got %+v\nwant %+v", g, w)
	}
}

func TestBuildInvalid(t *testing.T) {
	tests := []struct {
		name         string
		config       string
		protoInvalid bool   // the fragment also breaks Envoy's validation rules
		wantErr      string // the field path below hcmPath, then the message
	}{
		{
			// rds is served by internal/server (rds_test.go); a server
			// without it is an internal error, not a silent empty table.
			name: "rds without the server's xDS client",
			config: `
stat_prefix: s
rds:
  route_config_name: local
  config_source: { ads: {} }
` + router,
			wantErr: ".rds: rds needs the server's xDS client (internal error)",
		},
		{
			name: "scoped_routes",
			config: `
stat_prefix: s
scoped_routes:
  name: scoped
  scope_key_builder:
    fragments:
    - header_value_extractor: { name: x-tenant }
  rds_config_source: { ads: {} }
  scoped_route_configurations_list:
    scoped_route_configurations:
    - name: tenant
      route_configuration_name: r
      key: { fragments: [{ string_key: a }] }
` + router,
			wantErr: ".scoped_routes: scoped_routes is not supported by herald yet (#7)",
		},
		{
			// A filter chain of its own for upgrades is not implemented.
			name:    "upgrade_configs filters",
			config:  "stat_prefix: s\nupgrade_configs:\n- upgrade_type: websocket\n  filters:\n  - name: envoy.filters.http.router\n" + routeToBackend + router,
			wantErr: ".upgrade_configs[0].filters: filters is not supported by herald yet (#6)",
		},
		{
			// Envoy: "multiple upgrade configs with the same name".
			name:    "upgrade_configs duplicate type",
			config:  "stat_prefix: s\nupgrade_configs:\n- upgrade_type: websocket\n- upgrade_type: WebSocket\n" + routeToBackend + router,
			wantErr: ".upgrade_configs[1].upgrade_type: multiple upgrade configs with the same name",
		},
		{
			// No tracking issue: the message ends at "yet".
			name:    "tracing",
			config:  "stat_prefix: s\ntracing: {}\n" + routeToBackend + router,
			wantErr: ".tracing: tracing is not supported by herald yet",
		},
		{
			// codec_type HTTP3 builds (the listener checks it is a QUIC
			// one); what quic-go cannot do is refused (http3_options.go).
			name:    "http3_protocol_options.allow_metadata",
			config:  "stat_prefix: s\ncodec_type: HTTP3\nhttp3_protocol_options: { allow_metadata: true }\n" + routeToBackend + router,
			wantErr: ".http3_protocol_options.allow_metadata: allow_metadata is not supported by herald yet",
		},
		{
			name:    "normalize_path",
			config:  "stat_prefix: s\nnormalize_path: true\n" + routeToBackend + router,
			wantErr: ".normalize_path: normalize_path is not supported by herald yet",
		},
		{
			name:    "merge_slashes",
			config:  "stat_prefix: s\nmerge_slashes: true\n" + routeToBackend + router,
			wantErr: ".merge_slashes: merge_slashes is not supported by herald yet",
		},
		{
			name:    "max_connection_duration_jitter",
			config:  "stat_prefix: s\ncommon_http_protocol_options: { max_connection_duration: 10s, max_connection_duration_jitter: { value: 5 } }\n" + routeToBackend + router,
			wantErr: ".common_http_protocol_options.max_connection_duration_jitter: max_connection_duration_jitter is not supported by herald yet",
		},
		{
			// Envoy's rules reject it too; Build must not rely on them.
			name:         "no route_config",
			config:       "stat_prefix: s\n" + router,
			protoInvalid: true,
			wantErr:      ".route_config: route_config is required",
		},
		{
			name:    "no http_filters",
			config:  "stat_prefix: s\n" + routeToBackend,
			wantErr: ".http_filters: http_filters must end with envoy.filters.http.router",
		},
		{
			name:    "router not last",
			config:  "stat_prefix: s\n" + routeToBackend + "http_filters:\n- name: envoy.filters.http.router\n- name: envoy.filters.http.router\n",
			wantErr: ".http_filters[0]: envoy.filters.http.router is terminal and must be the last HTTP filter",
		},
		{
			name:    "unknown filter",
			config:  "stat_prefix: s\n" + routeToBackend + "http_filters:\n- name: envoy.filters.http.not_in_herald\n- name: envoy.filters.http.router\n",
			wantErr: `.http_filters[0].name: HTTP filter "envoy.filters.http.not_in_herald" is not supported by herald`,
		},
		{
			name:    "disabled terminal filter",
			config:  "stat_prefix: s\n" + routeToBackend + "http_filters:\n- name: envoy.filters.http.router\n  disabled: true\n",
			wantErr: ".http_filters[0].disabled: the terminal filter envoy.filters.http.router cannot be disabled",
		},
		{
			name: "router rejects its own field",
			config: "stat_prefix: s\n" + routeToBackend + `
http_filters:
- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
    upstream_log:
    - name: envoy.access_loggers.stdout
`,
			wantErr: ".http_filters[0].typed_config.upstream_log: upstream_log is not supported by herald yet",
		},
		{
			name:    "unknown access logger",
			config:  "stat_prefix: s\n" + routeToBackend + router + "access_log:\n- name: envoy.access_loggers.nope\n",
			wantErr: ".access_log[0].name: unknown access logger",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg *hcmv3.HttpConnectionManager
			if tc.protoInvalid {
				cfg = parseUnvalidated(t, tc.config)
				if cfg.ValidateAll() == nil {
					t.Fatal("fragment passes Envoy's validation rules; the case should not say protoInvalid")
				}
			} else {
				cfg = parse(t, tc.config)
			}
			_, err := httpconnectionmanager.Build(cfg, buildContext(t))
			if err == nil {
				t.Fatalf("Build succeeded, want error %q", hcmPath+tc.wantErr)
			}
			if !strings.Contains(err.Error(), hcmPath+tc.wantErr) {
				t.Errorf("Build error:\n%v\nwant it to contain %q", err, hcmPath+tc.wantErr)
			}
		})
	}
}
