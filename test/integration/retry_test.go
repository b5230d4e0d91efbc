package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// Retries and circuit breakers through the real binary
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter,
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/circuit_breaking).

// retryLogFormat is the access log line the retry tests read.
const retryLogFormat = `%%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%UPSTREAM_REQUEST_ATTEMPT_COUNT%%\n`

// retrySetup renders a listener "l" whose single route sends "/" to
// cluster "b" with the given RouteAction fields (indented 18 spaces) and
// virtual host fields (indented 14 spaces), logging to log.
func retryListener(log, vhostExtra, routeExtra string) string {
	return extraHCMListener(hcmSpec{
		name: "l",
		hcmExtra: fmt.Sprintf(`          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: { text_format_source: { inline_string: "`+retryLogFormat+`" } }
`, log),
		vhosts: `            - name: vh
              domains: ["*"]
` + vhostExtra + `              routes:
              - match: { prefix: "/" }
                route:
                  cluster: b
` + routeExtra,
	})
}

// TestRetryUntilSuccess: a backend failing the first two attempts with 503
// is retried (num_retries 3) and the third attempt's 200 goes downstream;
// the request body is replayed on every attempt, x-envoy-attempt-count is
// sent upstream and downstream, and the retry stats count it.
func TestRetryUntilSuccess(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var mu sync.Mutex
	var seen []string // attempt header and body per call
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Header.Get("x-envoy-attempt-count")+":"+string(b))
		mu.Unlock()
		if calls.Add(1) <= 2 {
			w.WriteHeader(503)
			io.WriteString(w, "busy")
			return
		}
		io.WriteString(w, "ok")
	}))
	log := filepath.Join(t.TempDir(), "access.log")
	cfg := bootstrap([]string{retryListener(log, `              include_request_attempt_count: true
              include_attempt_count_in_response: true
`, `                  retry_policy:
                    retry_on: 5xx
                    num_retries: 3
                    retry_back_off: { base_interval: 0.001s }
`)}, staticCluster("b", backend))
	h := testutil.Start(t, cfg)
	resp, err := newClient().Post("http://"+h.ListenerAddr("l")+"/", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("response = %d %q, want 200 ok", resp.StatusCode, body)
	}
	if got := resp.Header.Get("x-envoy-attempt-count"); got != "3" {
		t.Errorf("x-envoy-attempt-count = %q, want 3", got)
	}
	mu.Lock()
	got := strings.Join(seen, ",")
	mu.Unlock()
	if want := "1:payload,2:payload,3:payload"; got != want {
		t.Errorf("backend saw %q, want %q", got, want)
	}
	for name, want := range map[string]int64{
		"cluster.b.upstream_rq_retry":         2,
		"cluster.b.upstream_rq_retry_success": 1,
		"cluster.b.retry.upstream_rq_503":     2,
		"cluster.b.upstream_rq_200":           1,
		"cluster.b.upstream_rq_total":         3,
	} {
		waitStat(t, h, name, want)
	}
	if lines := waitLines(t, log, 1); lines[0] != "200 - 3" {
		t.Errorf("access log = %q, want %q", lines[0], "200 - 3")
	}
}

// TestRetryLimitExceeded: when every attempt fails, the last upstream
// answer goes downstream with the URX flag; with max_retries 0 in the
// circuit breakers, no retry is made and the flag is UO.
func TestRetryLimitExceeded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		breakers  string
		wantLog   string
		wantStats map[string]int64
	}{
		{
			name:    "retry limit",
			wantLog: "503 URX 3",
			wantStats: map[string]int64{
				"cluster.b.upstream_rq_retry":                2,
				"cluster.b.upstream_rq_retry_limit_exceeded": 1,
				"cluster.b.upstream_rq_retry_success":        0,
			},
		},
		{
			// The retry circuit breaker is open: Envoy's NoOverflow.
			name: "retry overflow",
			breakers: `    circuit_breakers:
      thresholds: [{ max_retries: 0 }]
`,
			wantLog: "503 UO 1",
			wantStats: map[string]int64{
				"cluster.b.upstream_rq_retry":          0,
				"cluster.b.upstream_rq_retry_overflow": 1,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
				n := calls.Add(1)
				w.WriteHeader(503)
				fmt.Fprintf(w, "busy %d", n)
			}))
			log := filepath.Join(t.TempDir(), "access.log")
			cfg := bootstrap([]string{retryListener(log, "", `                  retry_policy:
                    retry_on: gateway-error
                    num_retries: 2
                    retry_back_off: { base_interval: 0.001s, max_interval: 0.002s }
`)}, staticCluster("b", backend)+tc.breakers)
			h := testutil.Start(t, cfg)
			code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
			want := fmt.Sprintf("busy %d", calls.Load())
			if code != 503 || body != want {
				t.Errorf("response = %d %q, want the last upstream answer 503 %q", code, body, want)
			}
			if lines := waitLines(t, log, 1); lines[0] != tc.wantLog {
				t.Errorf("access log = %q, want %q", lines[0], tc.wantLog)
			}
			for name, v := range tc.wantStats {
				waitStat(t, h, name, v)
			}
		})
	}
}

// blockingBackend blocks the requests for which block returns true until
// the test ends; the others get 200 with the backend's name.
func blockingBackend(t *testing.T, name string, block func(n int64) bool) (addr string, calls *atomic.Int64) {
	t.Helper()
	release := make(chan struct{})
	calls = &atomic.Int64{}
	addr = testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if block(calls.Add(1)) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, name)
	}))
	// Registered after the server, so it runs before the server closes.
	t.Cleanup(func() { close(release) })
	return addr, calls
}

// TestPerTryTimeout: an attempt that does not answer within
// per_try_timeout is abandoned; with retries left the next attempt
// answers, without them the request gets 504 with the UT flag.
func TestPerTryTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		numRetries int
		wantCode   int
		wantLog    string
	}{
		{name: "retried", numRetries: 1, wantCode: 200, wantLog: "200 - 2"},
		// As Envoy: the timeout would be retried but no retry is left, so
		// URX joins UT.
		{name: "no retries left", numRetries: 0, wantCode: 504, wantLog: "504 UT,URX 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend, _ := blockingBackend(t, "ok", func(n int64) bool { return n == 1 })
			log := filepath.Join(t.TempDir(), "access.log")
			cfg := bootstrap([]string{retryListener(log, "", fmt.Sprintf(`                  timeout: 10s
                  retry_policy:
                    retry_on: 5xx
                    num_retries: %d
                    per_try_timeout: 0.2s
                    retry_back_off: { base_interval: 0.001s }
`, tc.numRetries))}, staticCluster("b", backend))
			h := testutil.Start(t, cfg)
			start := time.Now()
			code, _, _ := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
			if code != tc.wantCode {
				t.Errorf("status = %d, want %d", code, tc.wantCode)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("request took %v; the per-try timeout is 200ms", d)
			}
			if lines := waitLines(t, log, 1); lines[0] != tc.wantLog {
				t.Errorf("access log = %q, want %q", lines[0], tc.wantLog)
			}
			waitStat(t, h, "cluster.b.upstream_rq_per_try_timeout", 1)
			waitStat(t, h, "cluster.b.upstream_rq_timeout", 0)
		})
	}
}

// TestRetryPreviousHosts: with the previous_hosts predicate a retry never
// goes back to the host that failed, even with a random load balancer.
func TestRetryPreviousHosts(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	badSeen := map[string]int{}
	bad := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		mu.Lock()
		badSeen[r.Header.Get("x-request-id")]++
		mu.Unlock()
		w.WriteHeader(503)
	}))
	good := nameBackend(t, "good")
	log := filepath.Join(t.TempDir(), "access.log")
	cfg := bootstrap([]string{retryListener(log, "", `                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    retry_back_off: { base_interval: 0.001s }
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 40
`)}, staticCluster("b", bad, good)+"    lb_policy: RANDOM\n")
	h := testutil.Start(t, cfg)
	c := newClient()
	const n = 20
	for i := 0; i < n; i++ {
		code, _, body := get(t, c, "http://"+h.ListenerAddr("l")+"/", "")
		if code != 200 || body != "good" {
			t.Fatalf("request %d = %d %q, want 200 good (the retry goes to the other host)", i, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, k := range badSeen {
		if k > 1 {
			t.Errorf("request %s went to the failing host %d times", id, k)
		}
	}
}

// TestCircuitBreakerMaxRequests: with max_requests 1 and one request in
// flight, a second concurrent request is answered 503 with
// x-envoy-overloaded: true and counted as upstream_rq_pending_overflow (as
// Envoy's connection pool counts a max_requests overflow); rq_open shows
// the open breaker.
func TestCircuitBreakerMaxRequests(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	}))
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	log := filepath.Join(t.TempDir(), "access.log")
	cfg := bootstrap([]string{retryListener(log, "", "")}, staticCluster("b", backend)+`    circuit_breakers:
      thresholds: [{ priority: DEFAULT, max_requests: 1, track_remaining: true }]
`)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l") + "/"
	first := make(chan string, 1)
	go func() {
		resp, err := newClient().Get(base)
		if err != nil {
			first <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		first <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the backend")
	}
	waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 1)
	waitStat(t, h, "cluster.b.circuit_breakers.default.remaining_rq", 0)

	code, hdr, body := get(t, newClient(), base, "")
	if code != 503 || hdr.Get("x-envoy-overloaded") != "true" || !strings.Contains(body, "overflow") {
		t.Errorf("second request = %d overloaded=%q %q, want 503 with x-envoy-overloaded: true", code, hdr.Get("x-envoy-overloaded"), body)
	}
	waitStat(t, h, "cluster.b.upstream_rq_pending_overflow", 1)

	unblock()
	if got := <-first; got != "200 slow" {
		t.Errorf("first request = %q, want 200 slow", got)
	}
	waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 0)
	waitStat(t, h, "cluster.b.circuit_breakers.default.remaining_rq", 1)
	lines := waitLines(t, log, 2)
	if lines[0] != "503 UO 1" {
		t.Errorf("access log of the overflow = %q, want %q", lines[0], "503 UO 1")
	}
}

// TestCircuitBreakerPendingRequests: with max_connections 1 a second
// request waits for the only connection (upstream_cx_overflow) and is
// served on it once the first finishes; a third, over
// max_pending_requests 1, is answered 503 at once.
func TestCircuitBreakerPendingRequests(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 3)
	release := make(chan struct{})
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		arrived <- struct{}{}
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	log := filepath.Join(t.TempDir(), "access.log")
	cfg := bootstrap([]string{retryListener(log, "", "")}, staticCluster("b", backend)+`    circuit_breakers:
      thresholds: [{ max_connections: 1, max_pending_requests: 1 }]
`)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	results := make(chan string, 2)
	fetch := func(path string) {
		resp, err := newClient().Get(base + path)
		if err != nil {
			results <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- fmt.Sprintf("%s %d %s", path, resp.StatusCode, b)
	}
	go fetch("/slow")
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the backend")
	}
	go fetch("/second")
	// The second request is pending: it waits for the connection.
	waitStat(t, h, "cluster.b.upstream_rq_pending_active", 1)
	waitStat(t, h, "cluster.b.upstream_cx_overflow", 1)
	waitStat(t, h, "cluster.b.circuit_breakers.default.rq_pending_open", 1)

	code, hdr, _ := get(t, newClient(), base+"/third", "")
	if code != 503 || hdr.Get("x-envoy-overloaded") != "true" {
		t.Errorf("third request = %d overloaded=%q, want 503 with x-envoy-overloaded: true", code, hdr.Get("x-envoy-overloaded"))
	}
	waitStat(t, h, "cluster.b.upstream_rq_pending_overflow", 1)

	unblock()
	got := map[string]bool{<-results: true, <-results: true}
	if !got["/slow 200 ok"] || !got["/second 200 ok"] {
		t.Errorf("results = %v, want /slow and /second answered 200", got)
	}
	waitStat(t, h, "cluster.b.upstream_cx_total", 1)
	waitStat(t, h, "cluster.b.upstream_rq_pending_active", 0)
}
