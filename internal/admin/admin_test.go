package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/stats"
)

// fakeSource records what the admin asked of it.
type fakeSource struct {
	mu           sync.Mutex
	store        *stats.Store
	state        adminv3.ServerInfo_State
	listeners    []ListenerStatus
	clustersText string
	clustersJSON string
	clustersErr  error
	dump         *adminv3.ConfigDump
	includeEDS   bool
	quits        int
	drains       []DrainOptions
	drainErr     error
	hcFailed     []bool
	levels       map[string]string
	setLevelErr  error
	reopens      int
}

func newFakeSource() *fakeSource {
	st := stats.NewStore()
	st.Counter("cluster.backend.upstream_rq_total").Add(3)
	st.Counter("http.ingress.downstream_rq_total") // zero: not "used"
	st.Gauge("server.live").Set(1)
	st.Histogram("cluster.backend.upstream_rq_time", stats.Milliseconds).Record(7)
	return &fakeSource{
		store: st,
		state: adminv3.ServerInfo_LIVE,
		listeners: []ListenerStatus{
			{Name: "ingress", Addrs: []net.Addr{
				&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 10000},
				&net.TCPAddr{IP: net.ParseIP("::1"), Port: 10001},
			}},
			{Name: "uds", Addrs: []net.Addr{&net.UnixAddr{Name: "/tmp/herald.sock", Net: "unix"}}},
		},
		clustersText: "backend::added_via_api::false\n",
		clustersJSON: `{"cluster_statuses":[{"name":"backend"}]}`,
		levels:       map[string]string{"upstream": "info", "admin": "info", "http": "warning"},
	}
}

func (f *fakeSource) Stats() *stats.Store { return f.store }

func (f *fakeSource) ServerInfo() *adminv3.ServerInfo {
	return &adminv3.ServerInfo{
		Version:            "herald/1.0.0/Clean/RELEASE",
		UptimeCurrentEpoch: durationpb.New(90 * time.Second),
		UptimeAllEpochs:    durationpb.New(90 * time.Second),
		CommandLineOptions: &adminv3.CommandLineOptions{Concurrency: 2},
		Node:               &corev3.Node{Id: "node-1", Cluster: "edge"},
	}
}

func (f *fakeSource) State() adminv3.ServerInfo_State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeSource) Listeners() []ListenerStatus { return f.listeners }

func (f *fakeSource) WriteClusters(w io.Writer, asJSON bool) error {
	if f.clustersErr != nil {
		return f.clustersErr
	}
	body := f.clustersText
	if asJSON {
		body = f.clustersJSON
	}
	_, err := io.WriteString(w, body)
	return err
}

func (f *fakeSource) ConfigDump(includeEDS bool) (*adminv3.ConfigDump, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.includeEDS = includeEDS
	if f.dump == nil {
		return &adminv3.ConfigDump{}, nil
	}
	return f.dump, nil
}

func (f *fakeSource) Quit() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quits++
}

func (f *fakeSource) DrainListeners(opts DrainOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drainErr != nil {
		return f.drainErr
	}
	f.drains = append(f.drains, opts)
	return nil
}

func (f *fakeSource) SetHealthcheckFailed(failed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hcFailed = append(f.hcFailed, failed)
}

func (f *fakeSource) LogLevels() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]string, len(f.levels))
	for k, v := range f.levels {
		out[k] = v
	}
	return out
}

func (f *fakeSource) SetLogLevel(logger, level string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setLevelErr != nil {
		return f.setLevelErr
	}
	if logger == "" {
		for k := range f.levels {
			f.levels[k] = level
		}
		return nil
	}
	f.levels[logger] = level
	return nil
}

func (f *fakeSource) ReopenLogs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reopens++
}

var _ Source = (*fakeSource)(nil)

// quiet keeps the admin's own log lines out of test output.
var quiet = Options{Logger: slog.New(slog.DiscardHandler)}

// do runs one request through the admin handler.
func do(t *testing.T, a *Admin, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	a.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name         string
		method       string
		target       string
		setup        func(*fakeSource)
		wantStatus   int
		wantType     string
		wantBody     string   // exact, when set
		wantContains []string // substrings of the body
		wantAbsent   []string // substrings that must not appear
		check        func(t *testing.T, f *fakeSource, body string)
	}{
		{
			name:       "help lists endpoints as Envoy",
			method:     "GET",
			target:     "/help",
			wantStatus: 200,
			wantType:   contentTypeText,
			wantContains: []string{
				"admin commands are:\n",
				"  /clusters: upstream cluster status\n",
				"  /quitquitquit (POST): exit the server\n",
				"  /ready: print server state, return 200 if LIVE, otherwise return 503\n",
				"      filter: Regular expression (Google re2) for filtering stats\n",
				"      format: File format to use; One of (text, json)\n",
				"      level: desired logging level, this will change all loggers's level; One of (, trace, debug, info, warning, error, critical, off)\n",
				"  /dashboard: ",
			},
			check: func(t *testing.T, _ *fakeSource, body string) {
				// Envoy prints the handlers in alphabetical order.
				var paths []string
				for _, line := range strings.Split(body, "\n") {
					if strings.HasPrefix(line, "  /") {
						paths = append(paths, strings.TrimSuffix(strings.Fields(line)[0], ":"))
					}
				}
				if !slices.IsSorted(paths) {
					t.Errorf("help paths not sorted: %v", paths)
				}
			},
		},
		{
			name:         "home page is html with links and POST forms",
			method:       "GET",
			target:       "/",
			wantStatus:   200,
			wantType:     contentTypeHTML,
			wantContains: []string{`<a href="/dashboard">`, `<form action="/quitquitquit" method="post">`, `<a href="/stats">`},
		},
		{
			// Envoy answers an unknown path with "invalid path. " and the help text.
			name:         "unknown path is 404 with help",
			method:       "GET",
			target:       "/nope?x=1",
			wantStatus:   404,
			wantType:     contentTypeText,
			wantContains: []string{"invalid path. admin commands are:\n", "  /stats/prometheus: "},
		},
		{
			// Paths match exactly; a prefix of a handler is unknown.
			name:       "trailing slash is not a handler",
			method:     "GET",
			target:     "/ready/",
			wantStatus: 404,
			wantType:   contentTypeText,
		},
		{name: "ready when live", method: "GET", target: "/ready", wantStatus: 200, wantType: contentTypeText, wantBody: "LIVE\n"},
		{
			name: "ready when draining", method: "GET", target: "/ready",
			setup:      func(f *fakeSource) { f.state = adminv3.ServerInfo_DRAINING },
			wantStatus: 503, wantType: contentTypeText, wantBody: "DRAINING\n",
		},
		{
			name: "ready when pre-initializing", method: "GET", target: "/ready",
			setup:      func(f *fakeSource) { f.state = adminv3.ServerInfo_PRE_INITIALIZING },
			wantStatus: 503, wantType: contentTypeText, wantBody: "PRE_INITIALIZING\n",
		},
		{
			name: "ready when initializing", method: "GET", target: "/ready",
			setup:      func(f *fakeSource) { f.state = adminv3.ServerInfo_INITIALIZING },
			wantStatus: 503, wantType: contentTypeText, wantBody: "INITIALIZING\n",
		},
		{
			name: "server_info is ServerInfo json with Envoy field names", method: "GET", target: "/server_info",
			setup:        func(f *fakeSource) { f.state = adminv3.ServerInfo_DRAINING },
			wantStatus:   200,
			wantType:     contentTypeJSON,
			wantContains: []string{`"uptime_current_epoch"`, `"command_line_options"`, `"hot_restart_version"`},
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got adminv3.ServerInfo
				if err := protojson.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				want := &adminv3.ServerInfo{
					Version:            "herald/1.0.0/Clean/RELEASE",
					State:              adminv3.ServerInfo_DRAINING, // from State(), not from ServerInfo()
					UptimeCurrentEpoch: durationpb.New(90 * time.Second),
					UptimeAllEpochs:    durationpb.New(90 * time.Second),
					CommandLineOptions: &adminv3.CommandLineOptions{Concurrency: 2},
					Node:               &corev3.Node{Id: "node-1", Cluster: "edge"},
				}
				if d := cmp.Diff(want, &got, protocmp.Transform()); d != "" {
					t.Errorf("server_info (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "stats text", method: "GET", target: "/stats",
			wantStatus: 200, wantType: contentTypeText,
			wantContains: []string{"cluster.backend.upstream_rq_total: 3\n", "server.live: 1\n", "http.ingress.downstream_rq_total: 0\n"},
		},
		{
			name: "stats filter", method: "GET", target: "/stats?filter=%5Ecluster%5C.",
			wantStatus: 200, wantType: contentTypeText,
			wantContains: []string{"cluster.backend.upstream_rq_total: 3\n"},
			wantAbsent:   []string{"server.live"},
		},
		{
			name: "stats bad filter regex", method: "GET", target: "/stats?filter=(",
			wantStatus: 400, wantType: contentTypeText, wantBody: "Invalid re2 regex",
		},
		{
			// Perl lookahead is not RE2, so Envoy rejects it too.
			name: "stats non-re2 filter", method: "GET", target: "/stats?filter=a(%3F=b)",
			wantStatus: 400, wantType: contentTypeText, wantBody: "Invalid re2 regex",
		},
		{
			name: "stats usedonly", method: "GET", target: "/stats?usedonly",
			wantStatus: 200, wantType: contentTypeText,
			wantContains: []string{"cluster.backend.upstream_rq_total: 3\n"},
			wantAbsent:   []string{"http.ingress.downstream_rq_total"},
		},
		{
			name: "stats type counters", method: "GET", target: "/stats?type=Counters",
			wantStatus: 200, wantType: contentTypeText,
			wantContains: []string{"cluster.backend.upstream_rq_total: 3\n"},
			wantAbsent:   []string{"server.live"},
		},
		{
			name: "stats type text readouts is empty", method: "GET", target: "/stats?type=TextReadouts",
			wantStatus: 200, wantType: contentTypeText, wantBody: "",
		},
		{
			name: "stats type text readouts json", method: "GET", target: "/stats?type=TextReadouts&format=json",
			wantStatus: 200, wantType: contentTypeJSON, wantBody: `{"stats":[]}`,
		},
		{
			name: "stats type histograms", method: "GET", target: "/stats?type=Histograms",
			wantStatus: 200, wantType: contentTypeText,
			wantContains: []string{"cluster.backend.upstream_rq_time: "},
			wantAbsent:   []string{"server.live", "upstream_rq_total"},
		},
		{
			name: "stats bad type", method: "GET", target: "/stats?type=counters",
			wantStatus: 400, wantType: contentTypeText, wantBody: "invalid &type= param",
		},
		{
			name: "stats bad format", method: "GET", target: "/stats?format=xml",
			wantStatus: 400, wantType: contentTypeText,
			wantBody: "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n",
		},
		{
			name: "stats json", method: "GET", target: "/stats?format=json&filter=upstream_rq_total",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got struct {
					Stats []map[string]any `json:"stats"`
				}
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal %q: %v", body, err)
				}
				if len(got.Stats) != 1 || got.Stats[0]["name"] != "cluster.backend.upstream_rq_total" || got.Stats[0]["value"] != float64(3) {
					t.Errorf("stats json = %v, want the one backend counter with value 3", got.Stats)
				}
			},
		},
		{
			name: "stats format prometheus", method: "GET", target: "/stats?format=prometheus",
			wantStatus: 200, wantType: contentTypePrometheus,
			wantContains: []string{"# TYPE envoy_cluster"},
		},
		{
			name: "stats prometheus", method: "GET", target: "/stats/prometheus",
			wantStatus: 200, wantType: contentTypePrometheus,
			wantContains: []string{"# TYPE envoy_cluster", "# TYPE envoy_server_live gauge\n"},
		},
		{
			name: "stats prometheus bad filter", method: "GET", target: "/stats/prometheus?filter=%5B",
			wantStatus: 400, wantType: contentTypeText, wantBody: "Invalid re2 regex",
		},
		{
			name: "clusters text", method: "GET", target: "/clusters",
			wantStatus: 200, wantType: contentTypeText, wantBody: "backend::added_via_api::false\n",
		},
		{
			name: "clusters json", method: "GET", target: "/clusters?format=json",
			wantStatus: 200, wantType: contentTypeJSON, wantBody: `{"cluster_statuses":[{"name":"backend"}]}`,
		},
		{
			name: "clusters error", method: "GET", target: "/clusters",
			setup:      func(f *fakeSource) { f.clustersErr = errors.New("boom") },
			wantStatus: 500, wantType: contentTypeText, wantContains: []string{"boom"},
		},
		{
			name: "listeners text", method: "GET", target: "/listeners",
			wantStatus: 200, wantType: contentTypeText,
			wantBody: "ingress::127.0.0.1:10000\ningress::[::1]:10001\nuds::/tmp/herald.sock\n",
		},
		{
			name: "listeners json", method: "GET", target: "/listeners?format=json",
			wantStatus: 200, wantType: contentTypeJSON,
			wantContains: []string{`"listener_statuses"`, `"local_address"`, `"socket_address"`, `"port_value"`},
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got adminv3.Listeners
				if err := protojson.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				sock := func(ip string, port uint32) *corev3.Address {
					return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
				}
				want := &adminv3.Listeners{ListenerStatuses: []*adminv3.ListenerStatus{
					{Name: "ingress", LocalAddress: sock("127.0.0.1", 10000), AdditionalLocalAddresses: []*corev3.Address{sock("::1", 10001)}},
					{Name: "uds", LocalAddress: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/herald.sock"}}}},
				}}
				if d := cmp.Diff(want, &got, protocmp.Transform()); d != "" {
					t.Errorf("listeners (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "quitquitquit", method: "POST", target: "/quitquitquit",
			wantStatus: 200, wantType: contentTypeText, wantBody: "OK\n",
			check: func(t *testing.T, f *fakeSource, _ string) {
				if f.quits != 1 {
					t.Errorf("Quit called %d times, want 1", f.quits)
				}
			},
		},
		{
			name: "drain listeners graceful inbound", method: "POST", target: "/drain_listeners?graceful&inboundonly",
			wantStatus: 200, wantType: contentTypeText, wantBody: "OK\n",
			check: func(t *testing.T, f *fakeSource, _ string) {
				if d := cmp.Diff([]DrainOptions{{Graceful: true, InboundOnly: true}}, f.drains); d != "" {
					t.Errorf("drains (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "drain listeners plain", method: "POST", target: "/drain_listeners",
			wantStatus: 200, wantBody: "OK\n", wantType: contentTypeText,
			check: func(t *testing.T, f *fakeSource, _ string) {
				if d := cmp.Diff([]DrainOptions{{}}, f.drains); d != "" {
					t.Errorf("drains (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "drain listeners rejected", method: "POST", target: "/drain_listeners?skip_exit",
			setup:      func(f *fakeSource) { f.drainErr = errors.New("skip_exit requires graceful") },
			wantStatus: 400, wantType: contentTypeText, wantBody: "skip_exit requires graceful\n",
		},
		{
			name: "healthcheck fail", method: "POST", target: "/healthcheck/fail",
			wantStatus: 200, wantType: contentTypeText, wantBody: "OK\n",
			check: func(t *testing.T, f *fakeSource, _ string) {
				if d := cmp.Diff([]bool{true}, f.hcFailed); d != "" {
					t.Errorf("SetHealthcheckFailed calls (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "healthcheck ok", method: "POST", target: "/healthcheck/ok",
			wantStatus: 200, wantType: contentTypeText, wantBody: "OK\n",
			check: func(t *testing.T, f *fakeSource, _ string) {
				if d := cmp.Diff([]bool{false}, f.hcFailed); d != "" {
					t.Errorf("SetHealthcheckFailed calls (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "reopen logs", method: "POST", target: "/reopen_logs",
			wantStatus: 200, wantType: contentTypeText, wantBody: "OK\n",
			check: func(t *testing.T, f *fakeSource, _ string) {
				if f.reopens != 1 {
					t.Errorf("ReopenLogs called %d times, want 1", f.reopens)
				}
			},
		},
		{
			name: "logging lists loggers sorted", method: "POST", target: "/logging",
			wantStatus: 200, wantType: contentTypeText,
			wantBody: "active loggers:\n  admin: info\n  http: warning\n  upstream: info\n\n",
		},
		{
			name: "logging level sets all", method: "POST", target: "/logging?level=debug",
			wantStatus: 200, wantType: contentTypeText,
			wantBody: "active loggers:\n  admin: debug\n  http: debug\n  upstream: debug\n\n",
		},
		{
			name: "logging one logger", method: "POST", target: "/logging?upstream=trace",
			wantStatus: 200, wantType: contentTypeText,
			wantBody: "active loggers:\n  admin: info\n  http: warning\n  upstream: trace\n\n",
		},
		{
			name: "logging paths", method: "POST", target: "/logging?paths=admin:error,http:critical",
			wantStatus: 200, wantType: contentTypeText,
			wantBody: "active loggers:\n  admin: error\n  http: critical\n  upstream: info\n\n",
		},
		{
			name: "logging bad level", method: "POST", target: "/logging?level=loud",
			wantStatus: 400, wantType: contentTypeText,
			wantContains: []string{
				"error: unknown logger level\n\n",
				"usage: /logging?<name>=<level> (change single level)\n",
				"levels: trace debug info warning error critical off \n",
				"active loggers:\n  admin: info\n",
			},
		},
		{
			// One unknown name in paths leaves every logger unchanged.
			name: "logging paths with unknown logger changes nothing", method: "POST", target: "/logging?paths=admin:error,nope:debug",
			wantStatus: 400, wantType: contentTypeText,
			wantContains: []string{"error: unknown logger name\n\n", "  admin: info\n"},
		},
		{
			name: "logging empty pair", method: "POST", target: "/logging?paths=admin:",
			wantStatus: 400, wantType: contentTypeText,
			wantContains: []string{"error: empty logger name or empty logger level\n\n"},
		},
		{
			name: "logging two params", method: "POST", target: "/logging?admin=info&http=info",
			wantStatus: 400, wantType: contentTypeText,
			wantContains: []string{"error: invalid number of parameters\n\n"},
		},
		{
			name: "logging source failure", method: "POST", target: "/logging?level=info",
			setup:      func(f *fakeSource) { f.setLevelErr = errors.New("boom") },
			wantStatus: 500, wantType: contentTypeText, wantContains: []string{"boom"},
		},
		{
			name: "memory", method: "GET", target: "/memory",
			wantStatus: 200, wantType: contentTypeJSON,
			wantContains: []string{`"allocated"`, `"heap_size"`, `"pageheap_unmapped"`, `"pageheap_free"`, `"total_thread_cache"`, `"total_physical_bytes"`},
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got adminv3.Memory
				if err := protojson.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				if got.GetAllocated() == 0 || got.GetHeapSize() < got.GetAllocated() {
					t.Errorf("memory = %v, want 0 < allocated <= heap_size", &got)
				}
			},
		},
		{
			name: "runtime without layers", method: "GET", target: "/runtime",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				want := map[string]any{"layers": []any{}, "entries": map[string]any{}}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("runtime (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "certs empty", method: "GET", target: "/certs",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("unmarshal: %v", err)
				}
				if d := cmp.Diff(map[string]any{"certificates": []any{}}, got); d != "" {
					t.Errorf("certs (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "dashboard", method: "GET", target: "/dashboard",
			wantStatus: 200, wantType: contentTypeHTML,
			wantContains: []string{"<title>herald dashboard</title>", "/stats?format=json", "/clusters?format=json", "/listeners?format=json", "/server_info", "setInterval(tick, 2000)"},
			// Self-contained: no external scripts, styles or images.
			wantAbsent: []string{`src="http`, `href="http`, "<link ", "@import", "url("},
		},
		{
			// Reads accept any method, as in Envoy.
			name: "post to a read-only path", method: "POST", target: "/ready",
			wantStatus: 200, wantType: contentTypeText, wantBody: "LIVE\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSource()
			if tc.setup != nil {
				tc.setup(f)
			}
			a := New(f, quiet)
			w := do(t, a, tc.method, tc.target)
			body := w.Body.String()
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", w.Code, tc.wantStatus, body)
			}
			if got := w.Header().Get("Content-Type"); got != tc.wantType {
				t.Errorf("content-type = %q, want %q", got, tc.wantType)
			}
			// Envoy's populateFallbackResponseHeaders, on every response.
			if got := w.Header().Get("Cache-Control"); got != "no-cache, max-age=0" {
				t.Errorf("cache-control = %q, want %q", got, "no-cache, max-age=0")
			}
			if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("x-content-type-options = %q, want nosniff", got)
			}
			if tc.wantBody != "" && body != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			for _, s := range tc.wantContains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q; body:\n%s", s, body)
				}
			}
			for _, s := range tc.wantAbsent {
				if strings.Contains(body, s) {
					t.Errorf("body contains %q; body:\n%s", s, body)
				}
			}
			if tc.check != nil {
				tc.check(t, f, body)
			}
		})
	}
}

// TestMutatingPathsRequirePost checks Envoy's "Method GET not allowed, POST
// required." 405 on every mutating path, and that nothing happened.
func TestMutatingPathsRequirePost(t *testing.T) {
	tests := []struct {
		name   string
		method string
		target string
	}{
		{name: "quitquitquit", method: "GET", target: "/quitquitquit"},
		{name: "drain_listeners", method: "GET", target: "/drain_listeners?graceful"},
		{name: "healthcheck fail", method: "GET", target: "/healthcheck/fail"},
		{name: "healthcheck ok", method: "GET", target: "/healthcheck/ok"},
		{name: "logging", method: "GET", target: "/logging?level=trace"},
		{name: "reopen_logs", method: "GET", target: "/reopen_logs"},
		{name: "put is not post", method: "PUT", target: "/quitquitquit"},
		{name: "head is not post", method: "HEAD", target: "/healthcheck/fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSource()
			a := New(f, quiet)
			w := do(t, a, tc.method, tc.target)
			if w.Code != nethttp.StatusMethodNotAllowed {
				t.Errorf("status = %d, want 405", w.Code)
			}
			want := "Method " + tc.method + " not allowed, POST required."
			if got := w.Body.String(); got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
			if got := w.Header().Get("Content-Type"); got != contentTypeText {
				t.Errorf("content-type = %q, want %q", got, contentTypeText)
			}
			if f.quits != 0 || len(f.drains) != 0 || len(f.hcFailed) != 0 || f.reopens != 0 || f.levels["admin"] != "info" {
				t.Errorf("a mutation ran: quits=%d drains=%v hc=%v reopens=%d levels=%v", f.quits, f.drains, f.hcFailed, f.reopens, f.levels)
			}
		})
	}
}

// TestServeAndAccessLog runs the admin on a loopback listener, checks the
// access-log hook, and that Shutdown makes Serve return nil.
func TestServeAndAccessLog(t *testing.T) {
	type entry struct {
		method, path string
		status       int
	}
	logged := make(chan entry, 4)
	a := New(newFakeSource(), Options{Logger: quiet.Logger, AccessLog: func(method, path string, status int) {
		logged <- entry{method, path, status}
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ln) }()

	base := "http://" + ln.Addr().String()
	client := &nethttp.Client{Timeout: 5 * time.Second}
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{name: "ready", method: "GET", path: "/ready?x=1", wantStatus: 200},
		{name: "405", method: "GET", path: "/quitquitquit", wantStatus: 405},
		{name: "404", method: "GET", path: "/missing", wantStatus: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := nethttp.NewRequest(tc.method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			select {
			case got := <-logged:
				if want := (entry{tc.method, tc.path, tc.wantStatus}); got != want {
					t.Errorf("access log = %+v, want %+v", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no access log entry")
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil after Shutdown", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after Shutdown")
	}
}

func TestHelpMatchesHandlers(t *testing.T) {
	a := New(newFakeSource(), quiet)
	for path, h := range a.handlers {
		line := fmt.Sprintf("  %s: %s\n", path, h.help)
		if h.mutates {
			line = fmt.Sprintf("  %s (POST): %s\n", path, h.help)
		}
		if !strings.Contains(a.helpText, line) {
			t.Errorf("help text lacks %q", line)
		}
	}
}
