package tcpproxy

import (
	"strings"
	"testing"
	"time"

	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/google/go-cmp/cmp"

	// The stdout access logger, for the access_log cases (an internal test
	// cannot import extensions/all, which imports this package).
	_ "github.com/herald-proxy/herald/extensions/access_loggers/stream"
	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// tcpProxyPath is where the config sits in a bootstrap; errors must name
// fields below it.
const tcpProxyPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

// accessLogServer gives access loggers the file manager, as internal/server does.
type accessLogServer struct{ files *accesslog.FileManager }

func (s accessLogServer) AccessLogFiles() *accesslog.FileManager { return s.files }

func tcpBuildContext(t *testing.T) (netfilter.BuildContext, *stats.Store) {
	t.Helper()
	store := stats.NewStore()
	mgr := upstream.NewManager(store)
	t.Cleanup(mgr.Close)
	files := accesslog.NewFileManager(time.Second)
	t.Cleanup(func() { files.Close() })
	return netfilter.BuildContext{
		Path:     tcpProxyPath,
		Stats:    store,
		Clusters: mgr,
		Server:   accessLogServer{files: files},
	}, store
}

// parseTCPProxy decodes a YAML fragment the way the bootstrap loader does
// (YAML → JSON → protojson). It requires the fragment to pass the proto's
// own validation rules, so that a failure of Build is herald's and not
// Envoy's — or, when protoInvalid, to break them.
func parseTCPProxy(t *testing.T, fragment string, protoInvalid bool) *tcpv3.TcpProxy {
	t.Helper()
	cfg := &tcpv3.TcpProxy{}
	if _, err := bootstrap.Unmarshal("tcp_proxy.yaml", []byte(fragment), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	switch err := cfg.ValidateAll(); {
	case err != nil && !protoInvalid:
		t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
	case err == nil && protoInvalid:
		t.Fatal("fragment passes Envoy's validation rules; the case should not say protoInvalid")
	}
	return cfg
}

func TestRegisteredConfig(t *testing.T) {
	url := registry.TypeURL(&tcpv3.TcpProxy{})
	e, ok := netfilter.Registry.ByTypeURL(url)
	if !ok {
		t.Fatalf("%s is not registered", url)
	}
	if got, want := e.Name, "envoy.filters.network.tcp_proxy"; got != want {
		t.Errorf("Name = %q, want %q", got, want)
	}
	if !e.Terminal {
		t.Error("Terminal = false, want true")
	}
}

// builtConfig is what a test compares of a built Filter.
type builtConfig struct {
	Single      string
	Weighted    []weightedCluster
	TotalWeight uint64
	IdleTimeout time.Duration
	MaxAttempts int
	AccessLogs  int
	HashSource  bool
}

func TestBuildValidConfig(t *testing.T) {
	tests := []struct {
		name   string
		config string
		want   builtConfig
	}{
		{
			// Envoy: idle_timeout defaults to 1 h, max_connect_attempts to 1.
			name:   "cluster with defaults",
			config: "stat_prefix: db\ncluster: backend\n",
			want:   builtConfig{Single: "backend", IdleTimeout: time.Hour, MaxAttempts: 1},
		},
		{
			name: "weighted clusters",
			config: `
stat_prefix: db
weighted_clusters:
  clusters:
  - { name: primary, weight: 3 }
  - { name: canary, weight: 1 }
`,
			want: builtConfig{
				Weighted:    []weightedCluster{{name: "primary", weight: 3}, {name: "canary", weight: 1}},
				TotalWeight: 4,
				IdleTimeout: time.Hour,
				MaxAttempts: 1,
			},
		},
		{
			// Envoy: an idle_timeout of 0 disables the timeout.
			name:   "idle_timeout 0 disables",
			config: "stat_prefix: db\ncluster: backend\nidle_timeout: 0s\n",
			want:   builtConfig{Single: "backend", MaxAttempts: 1},
		},
		{
			name:   "idle_timeout and max_connect_attempts",
			config: "stat_prefix: db\ncluster: backend\nidle_timeout: 90s\nmax_connect_attempts: 3\n",
			want:   builtConfig{Single: "backend", IdleTimeout: 90 * time.Second, MaxAttempts: 3},
		},
		{
			name:   "hash_policy source_ip",
			config: "stat_prefix: db\ncluster: backend\nhash_policy: [{ source_ip: {} }]\n",
			want:   builtConfig{Single: "backend", IdleTimeout: time.Hour, MaxAttempts: 1, HashSource: true},
		},
		{
			name: "access log",
			config: `
stat_prefix: db
cluster: backend
access_log:
- name: envoy.access_loggers.stdout
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
`,
			want: builtConfig{Single: "backend", IdleTimeout: time.Hour, MaxAttempts: 1, AccessLogs: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, store := tcpBuildContext(t)
			nf, err := Build(parseTCPProxy(t, tc.config, false), ctx)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			f, ok := nf.(*Filter)
			if !ok {
				t.Fatalf("Build returned %T, want *Filter", nf)
			}
			got := builtConfig{
				Single: f.single, Weighted: f.weighted, TotalWeight: f.totalWeight,
				IdleTimeout: f.idleTimeout, MaxAttempts: f.maxAttempts, AccessLogs: len(f.accessLogs),
				HashSource: f.hashSourceIP,
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(weightedCluster{})); diff != "" {
				t.Errorf("built config mismatch (-want +got):\n%s", diff)
			}
			// Envoy's stat names, rooted at tcp.<stat_prefix>.
			for _, name := range []string{"tcp.db.downstream_cx_total", "tcp.db.downstream_cx_no_route", "tcp.db.idle_timeout"} {
				if !hasStat(store, name) {
					t.Errorf("stat %s not created", name)
				}
			}
		})
	}
}

// hasStat reports whether Build created the counter name.
func hasStat(store *stats.Store, name string) bool {
	for _, c := range store.Counters() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

func TestBuildInvalidConfig(t *testing.T) {
	tests := []struct {
		name         string
		config       string
		protoInvalid bool   // the fragment also breaks Envoy's validation rules
		wantErr      string // the field path below tcpProxyPath, then the message
	}{
		{
			// Envoy's rules reject it too; Build must not rely on them.
			name:         "no cluster",
			config:       "stat_prefix: db\n",
			protoInvalid: true,
			wantErr:      ": one of cluster or weighted_clusters is required",
		},
		{
			name:         "weights sum to zero",
			config:       "stat_prefix: db\nweighted_clusters: { clusters: [{ name: a, weight: 0 }, { name: b, weight: 0 }] }\n",
			protoInvalid: true,
			wantErr:      ".weighted_clusters: weights sum to zero",
		},
		{
			name:    "metadata_match",
			config:  "stat_prefix: db\ncluster: backend\nmetadata_match: { filter_metadata: { envoy.lb: { version: v1 } } }\n",
			wantErr: ".metadata_match: metadata_match is not supported by herald yet",
		},
		{
			name:    "hash_policy filter_state",
			config:  "stat_prefix: db\ncluster: backend\nhash_policy: [{ filter_state: { key: k } }]\n",
			wantErr: ".hash_policy[0].filter_state: filter_state is not supported by herald yet",
		},
		{
			name:    "max_downstream_connection_duration",
			config:  "stat_prefix: db\ncluster: backend\nmax_downstream_connection_duration: 60s\n",
			wantErr: ".max_downstream_connection_duration: max_downstream_connection_duration is not supported by herald yet",
		},
		{
			name:    "unknown access logger",
			config:  "stat_prefix: db\ncluster: backend\naccess_log:\n- name: envoy.access_loggers.nope\n",
			wantErr: ".access_log[0].name: unknown access logger",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, _ := tcpBuildContext(t)
			_, err := Build(parseTCPProxy(t, tc.config, tc.protoInvalid), ctx)
			if err == nil {
				t.Fatalf("Build succeeded, want error %q", tcpProxyPath+tc.wantErr)
			}
			if !strings.Contains(err.Error(), tcpProxyPath+tc.wantErr) {
				t.Errorf("Build error:\n%v\nwant it to contain %q", err, tcpProxyPath+tc.wantErr)
			}
		})
	}
}
