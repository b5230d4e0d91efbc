package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/herald-proxy/herald/internal/testutil"
)

// rateLimitFilter renders an envoy.filters.http.ratelimit http_filters
// entry (10-space list item) with extra fields and the given grpc_service.
func rateLimitFilter(extra, grpcService string) string {
	return `          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: herald
              timeout: 2s
` + extra + `              rate_limit_service:
                transport_api_version: V3
                grpc_service: ` + grpcService + "\n"
}

// fakeRLS answers by the request's "user" entry: "blocked" is OVER_LIMIT,
// "broken" an error, anything else OK with a header for the response.
type fakeRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu    sync.Mutex
	calls []string // "domain: k=v,k=v; k=v"
}

func (s *fakeRLS) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var ds []string
	user := ""
	for _, d := range req.GetDescriptors() {
		var es []string
		for _, e := range d.GetEntries() {
			es = append(es, e.GetKey()+"="+e.GetValue())
			if e.GetKey() == "user" {
				user = e.GetValue()
			}
		}
		ds = append(ds, strings.Join(es, ","))
	}
	s.mu.Lock()
	s.calls = append(s.calls, req.GetDomain()+": "+strings.Join(ds, "; "))
	s.mu.Unlock()
	switch user {
	case "blocked":
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, RawBody: []byte("over the limit")}, nil
	case "broken":
		return nil, errors.New("backing store unavailable")
	}
	return &rlsv3.RateLimitResponse{
		OverallCode:          rlsv3.RateLimitResponse_OK,
		ResponseHeadersToAdd: []*corev3.HeaderValue{{Key: "x-rls", Value: "checked"}},
	}, nil
}

func (s *fakeRLS) lastCall() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return ""
	}
	return s.calls[len(s.calls)-1]
}

// TestHTTPFilterRateLimit drives envoy.filters.http.ratelimit through the
// binary against a rate limit service implemented in this test, reached
// through an envoy_grpc cluster: OK, OVER_LIMIT, errors with and without
// failure_mode_deny, and Envoy's cluster.<target>.ratelimit.* stats.
func TestHTTPFilterRateLimit(t *testing.T) {
	t.Parallel()
	backend, hits := countingBackend(t)
	svc := &fakeRLS{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(gs, svc)
	go gs.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(gs.Stop)

	vhosts := `            - name: app
              domains: ["*"]
              rate_limits:
              - actions: [{generic_key: {descriptor_value: vh}}]
              routes:
              - match: { prefix: "/user" }
                route:
                  cluster: app
                  rate_limits:
                  - actions:
                    - request_headers: {header_name: x-user, descriptor_key: user}
                    - destination_cluster: {}
              - match: { prefix: "/" }
                route: { cluster: app }`
	const rls = `{envoy_grpc: {cluster_name: rls}}`
	h := testutil.Start(t, bootstrap([]string{
		filtersListener("allow", vhosts, rateLimitFilter("", rls)),
		filtersListener("deny", vhosts, rateLimitFilter("              failure_mode_deny: true\n", rls)),
	}, staticCluster("app", backend), staticCluster("rls", ln.Addr().String())))
	allow := "http://" + h.ListenerAddr("allow")
	deny := "http://" + h.ListenerAddr("deny")
	c := newClient()

	steps := []struct {
		name        string
		url         string
		user        string
		wantCode    int
		wantBody    string
		wantCall    string // the service's view of the call
		wantLimited string // x-envoy-ratelimited
		wantRLS     string // x-rls, from the service's response_headers_to_add
	}{
		{name: "OK", url: allow + "/user", user: "alice", wantCode: 200, wantBody: "backend", wantCall: "herald: user=alice,destination_cluster=app", wantRLS: "checked"},
		{name: "OVER_LIMIT", url: allow + "/user", user: "blocked", wantCode: 429, wantBody: "over the limit", wantCall: "herald: user=blocked,destination_cluster=app", wantLimited: "true"},
		{name: "error allowed", url: allow + "/user", user: "broken", wantCode: 200, wantBody: "backend", wantCall: "herald: user=broken,destination_cluster=app"},
		{name: "error denied", url: deny + "/user", user: "broken", wantCode: 500, wantCall: "herald: user=broken,destination_cluster=app"},
		{name: "virtual host limits", url: allow + "/other", wantCode: 200, wantBody: "backend", wantCall: "herald: generic_key=vh", wantRLS: "checked"},
	}
	for _, s := range steps {
		hdr := map[string]string{}
		if s.user != "" {
			hdr["x-user"] = s.user
		}
		before := hits.Load()
		code, rh, body, _ := do(t, c, "GET", s.url, hdr)
		if code != s.wantCode || (s.wantBody != "" && body != s.wantBody) {
			t.Errorf("%s: %d %q, want %d %q", s.name, code, body, s.wantCode, s.wantBody)
		}
		if got := svc.lastCall(); got != s.wantCall {
			t.Errorf("%s: service saw %q, want %q", s.name, got, s.wantCall)
		}
		if got := rh.Get("x-envoy-ratelimited"); got != s.wantLimited {
			t.Errorf("%s: x-envoy-ratelimited %q, want %q", s.name, got, s.wantLimited)
		}
		if got := rh.Get("x-rls"); got != s.wantRLS {
			t.Errorf("%s: x-rls %q, want %q", s.name, got, s.wantRLS)
		}
		if reached := hits.Load() > before; reached != (s.wantCode == 200) {
			t.Errorf("%s: backend reached %v, want %v", s.name, reached, s.wantCode == 200)
		}
	}
	waitStat(t, h, "cluster.app.ratelimit.ok", 2)
	waitStat(t, h, "cluster.app.ratelimit.over_limit", 1)
	waitStat(t, h, "cluster.app.ratelimit.error", 2)
	waitStat(t, h, "cluster.app.ratelimit.failure_mode_allowed", 1)
}

// rateLimitBinaries finds the Envoy rate limit service
// (github.com/envoyproxy/ratelimit's service_cmd) and redis-server, or
// skips the test.
func rateLimitBinaries(t *testing.T) (rls, redis string) {
	t.Helper()
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install -y redis-server)")
	}
	rls = os.Getenv("HERALD_RATELIMIT_BIN")
	if rls == "" {
		for _, name := range []string{"ratelimit", "service_cmd"} {
			if p, err := exec.LookPath(name); err == nil {
				rls = p
				break
			}
		}
	}
	if rls == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			p := filepath.Join(strings.TrimSpace(string(out)), "bin", "service_cmd")
			if _, err := os.Stat(p); err == nil {
				rls = p
			}
		}
	}
	if rls == "" {
		t.Skip("Envoy's rate limit service not installed (go install github.com/envoyproxy/ratelimit/src/service_cmd@latest, or set HERALD_RATELIMIT_BIN)")
	}
	return rls, redis
}

// startProcess starts a helper process, stops it by PID at cleanup and
// prints its output when the test failed.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s output:\n%s", name, out.String())
			mu.Unlock()
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestHTTPFilterRateLimitRealService runs Envoy's own rate limit service
// (github.com/envoyproxy/ratelimit) on a real Redis, both on unix sockets,
// and checks herald's descriptors against its limits.
func TestHTTPFilterRateLimitRealService(t *testing.T) {
	t.Parallel()
	rlsBin, redisBin := rateLimitBinaries(t)
	dir, err := os.MkdirTemp("", "rl") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	redisSock := filepath.Join(dir, "redis.sock")
	rlsSock := filepath.Join(dir, "rls.sock")

	startProcess(t, "redis-server", exec.Command(redisBin, "--port", "0", "--unixsocket", redisSock,
		"--save", "", "--appendonly", "no", "--dir", dir))
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(redisSock)
		return err
	})

	cfgDir := filepath.Join(dir, "runtime", "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The limits the service enforces, keyed by herald's descriptor entries.
	const limits = `domain: herald
descriptors:
  - key: generic_key
    value: slow
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: remote_address
    value: 127.0.0.1
    descriptors:
      - key: destination_cluster
        value: app
        rate_limit: {unit: hour, requests_per_unit: 3}
`
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(limits), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rlsBin)
	cmd.Env = append(os.Environ(),
		"USE_STATSD=false", "LOG_LEVEL=info",
		"RUNTIME_ROOT="+filepath.Join(dir, "runtime"), "RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_WATCH_ROOT=false", "RUNTIME_IGNOREDOTFILES=true",
		"REDIS_SOCKET_TYPE=unix", "REDIS_URL="+redisSock,
		"GRPC_UDS="+rlsSock, "HOST=127.0.0.1", "PORT=0", "DEBUG_HOST=127.0.0.1", "DEBUG_PORT=0")
	startProcess(t, "ratelimit", cmd)
	conn, err := grpc.NewClient("unix://"+rlsSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	probe := rlsv3.NewRateLimitServiceClient(conn)
	testutil.Eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := probe.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "herald", Descriptors: []*commonrlv3.RateLimitDescriptor{
			{Entries: []*commonrlv3.RateLimitDescriptor_Entry{{Key: "probe", Value: "x"}}},
		}})
		return err
	})

	backend, _ := countingBackend(t)
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/slow" }
                route:
                  cluster: app
                  rate_limits: [{actions: [{generic_key: {descriptor_value: slow}}]}]
              - match: { prefix: "/user" }
                route:
                  cluster: app
                  rate_limits: [{actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]}]
              - match: { prefix: "/addr" }
                route:
                  cluster: app
                  rate_limits: [{actions: [{remote_address: {}}, {destination_cluster: {}}]}]`
	filter := rateLimitFilter("              failure_mode_deny: true\n              enable_x_ratelimit_headers: DRAFT_VERSION_03\n",
		fmt.Sprintf("{google_grpc: {target_uri: %q, stat_prefix: rls}}", "unix://"+rlsSock))
	h := testutil.Start(t, bootstrap([]string{filtersListener("rl", vhosts, filter)}, staticCluster("app", backend)))
	base := "http://" + h.ListenerAddr("rl")
	c := newClient()
	steps := []struct {
		path      string
		user      string
		wantCode  int
		remaining string // x-ratelimit-remaining from the service's statuses
	}{
		{path: "/slow", wantCode: 200, remaining: "1"},
		{path: "/slow", wantCode: 200, remaining: "0"},
		{path: "/slow", wantCode: 429, remaining: "0"},
		{path: "/user", user: "alice", wantCode: 200, remaining: "0"},
		{path: "/user", user: "alice", wantCode: 429, remaining: "0"},
		{path: "/user", user: "bob", wantCode: 200, remaining: "0"},
		{path: "/addr", wantCode: 200, remaining: "2"},
		{path: "/addr", wantCode: 200, remaining: "1"},
		{path: "/addr", wantCode: 200, remaining: "0"},
		{path: "/addr", wantCode: 429, remaining: "0"},
	}
	for i, s := range steps {
		hdr := map[string]string{}
		if s.user != "" {
			hdr["x-user"] = s.user
		}
		code, rh, body, _ := do(t, c, "GET", base+s.path, hdr)
		if code != s.wantCode {
			t.Fatalf("step %d GET %s (user %q): %d %q, want %d", i, s.path, s.user, code, body, s.wantCode)
		}
		if got := rh.Get("x-ratelimit-remaining"); got != s.remaining {
			t.Errorf("step %d: x-ratelimit-remaining %q, want %q", i, got, s.remaining)
		}
		limited := rh.Get("x-envoy-ratelimited")
		if (code == 429) != (limited == "true") {
			t.Errorf("step %d: %d with x-envoy-ratelimited %q", i, code, limited)
		}
	}
	waitStat(t, h, "cluster.app.ratelimit.ok", 7)
	waitStat(t, h, "cluster.app.ratelimit.over_limit", 3)
	waitStat(t, h, "cluster.app.ratelimit.error", 0)
}
