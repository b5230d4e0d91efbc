package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestExtraConfigYAMLMerge: --config-yaml is merged over the -c file with
// protobuf merge semantics (Bootstrap.MergeFrom): singular messages merge
// field by field, scalars set in the YAML win, repeated fields are
// appended. Here the file has no admin (it comes from --config-yaml), the
// node's cluster is overridden while its id is kept, and a second cluster
// is appended; the file's route uses that cluster.
// https://www.envoyproxy.io/docs/envoy/latest/operations/cli#cmdoption-config-yaml
func TestExtraConfigYAMLMerge(t *testing.T) {
	t.Parallel()
	a := testutil.NamedBackend(t, "a")
	b := testutil.NamedBackend(t, "b")
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/a" }
                route: { cluster: a }
              - match: { prefix: "/b" }
                route: { cluster: b }`
	file := "node: { id: file-node, cluster: file-cluster }\nstatic_resources:\n  listeners:\n" +
		extraHCMListener(hcmSpec{name: "l", vhosts: vhosts}) + "  clusters:\n" + staticCluster("a", a)
	bHost, bPort, _ := net.SplitHostPort(b)
	override := fmt.Sprintf(`{admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}, node: {cluster: yaml-cluster},
static_resources: {clusters: [{name: b, type: STATIC, connect_timeout: 2s, load_assignment: {cluster_name: b,
endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]}]}}]}}`, bHost, bPort)
	h := testutil.Start(t, file, "--config-yaml", override)
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	for _, name := range []string{"a", "b"} {
		if code, _, body := get(t, c, base+"/"+name, ""); code != 200 || body != name {
			t.Fatalf("GET /%s = %d %q, want 200 %q", name, code, body, name)
		}
	}
	var dump struct {
		Configs []json.RawMessage `json:"configs"`
	}
	h.AdminJSON("/config_dump", &dump)
	var boot struct {
		Type      string `json:"@type"`
		Bootstrap struct {
			Node struct {
				ID      string `json:"id"`
				Cluster string `json:"cluster"`
			} `json:"node"`
			Admin struct {
				Address struct {
					SocketAddress struct {
						Address string `json:"address"`
					} `json:"socket_address"`
				} `json:"address"`
			} `json:"admin"`
			StaticResources struct {
				Clusters []struct {
					Name           string `json:"name"`
					ConnectTimeout string `json:"connect_timeout"`
				} `json:"clusters"`
			} `json:"static_resources"`
		} `json:"bootstrap"`
	}
	found := false
	for _, raw := range dump.Configs {
		if err := json.Unmarshal(raw, &boot); err == nil && strings.HasSuffix(boot.Type, "BootstrapConfigDump") {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("/config_dump has no BootstrapConfigDump")
	}
	bs := boot.Bootstrap
	if bs.Node.ID != "file-node" || bs.Node.Cluster != "yaml-cluster" {
		t.Errorf("node = %+v, want id file-node (from the file) and cluster yaml-cluster (from --config-yaml)", bs.Node)
	}
	if bs.Admin.Address.SocketAddress.Address != "127.0.0.1" {
		t.Errorf("admin address = %q, want 127.0.0.1 from --config-yaml", bs.Admin.Address.SocketAddress.Address)
	}
	var names []string
	for _, cl := range bs.StaticResources.Clusters {
		names = append(names, cl.Name+"="+cl.ConnectTimeout)
	}
	if got, want := strings.Join(names, ","), "a=1s,b=2s"; got != want {
		t.Errorf("bootstrap clusters = %s, want %s (file's, then the appended one)", got, want)
	}
}

// TestExtraDrainListeners: POST /drain_listeners stops the listeners, which
// cease accepting new connections at once; the admin keeps serving.
// https://www.envoyproxy.io/docs/envoy/latest/operations/admin#post--drain_listeners
func TestExtraDrainListeners(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "b")
	l := extraHCMListener(hcmSpec{name: "l", vhosts: catchAllVhost("b")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("b", backend)))
	addr := h.ListenerAddr("l")
	if code, _, _ := get(t, newClient(), "http://"+addr+"/", ""); code != 200 {
		t.Fatalf("before drain: %d", code)
	}
	if code, _ := h.Admin("GET", "/drain_listeners"); code != 405 {
		t.Errorf("GET /drain_listeners = %d, want 405 (mutating endpoints need POST)", code)
	}
	if code, body := h.Admin("POST", "/drain_listeners"); code != 200 {
		t.Fatalf("POST /drain_listeners = %d %q", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return fmt.Errorf("listener %s still accepts", addr)
		}
		return nil
	})
	if code, _ := h.Admin("GET", "/ready"); code != 200 && code != 503 {
		t.Errorf("admin stopped answering after drain: /ready = %d", code)
	}
}

// TestExtraPrometheusTags: /stats/prometheus exposes HTTP connection
// manager and listener stats with Envoy's tag names.
// https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats-prometheus
func TestExtraPrometheusTags(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "b")
	l := extraHCMListener(hcmSpec{name: "l", vhosts: catchAllVhost("b")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("b", backend)))
	addr := h.ListenerAddr("l")
	c := newClient()
	for i := 0; i < 3; i++ {
		if code, _, _ := get(t, c, "http://"+addr+"/", ""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_completed", 3)
	// Envoy names the listener scope by its address with ':' replaced.
	listenerTag := strings.ReplaceAll(addr, ":", "_")
	_, text := h.Admin("GET", "/stats/prometheus")
	samples := parseProm(t, text)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   string
	}{
		{name: "hcm counter", metric: "envoy_http_downstream_rq_total",
			labels: map[string]string{"envoy_http_conn_manager_prefix": "ingress_http"}, want: "3"},
		{name: "hcm response code class", metric: "envoy_http_downstream_rq_xx",
			labels: map[string]string{"envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "2"}, want: "3"},
		{name: "listener counter", metric: "envoy_listener_downstream_cx_total",
			labels: map[string]string{"envoy_listener_address": listenerTag}},
		{name: "per-listener hcm stats", metric: "envoy_listener_http_downstream_rq_xx",
			labels: map[string]string{"envoy_listener_address": listenerTag, "envoy_http_conn_manager_prefix": "ingress_http", "envoy_response_code_class": "2"}, want: "3"},
		{name: "cluster counter", metric: "envoy_cluster_upstream_rq_total",
			labels: map[string]string{"envoy_cluster_name": "b"}, want: "3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, seen := findProm(samples, tc.metric, tc.labels)
			if got == "" {
				t.Fatalf("no %s%v; samples of that metric: %v", tc.metric, tc.labels, seen)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("%s%v = %s, want %s", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	if !strings.Contains(text, "# TYPE envoy_http_downstream_rq_total counter\n") {
		t.Error("missing # TYPE line for envoy_http_downstream_rq_total")
	}
}

// TestAdminProfilers: POST /cpuprofiler?enable=y|n and /heapprofiler write
// Go pprof profiles to the bootstrap's admin.profile_path (Envoy writes
// gperftools profiles there).
func TestAdminProfilers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.prof")
	cfg := "admin:\n  profile_path: " + path + "\n  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n"
	h := testutil.Start(t, cfg)
	for _, step := range []struct{ target, want string }{
		{"/cpuprofiler?enable=y", "OK\n"},
		{"/cpuprofiler?enable=n", "OK\n"},
	} {
		if code, body := h.Admin("POST", step.target); code != 200 || body != step.want {
			t.Fatalf("POST %s = %d %q, want 200 %q", step.target, code, body, step.want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("CPU profile at %s: %v (size %d)", path, err, sizeOf(fi))
	}
	os.Remove(path)
	h.Admin("POST", "/heapprofiler?enable=y")
	if code, body := h.Admin("POST", "/heapprofiler?enable=n"); code != 200 || !strings.Contains(body, path) {
		t.Fatalf("stop heap profiler = %d %q", code, body)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("heap profile at %s: %v (size %d)", path, err, sizeOf(fi))
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}
