package router

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

func compilePolicy(t *testing.T, js string) *RetryPolicy {
	t.Helper()
	var cfg routev3.RetryPolicy
	if err := protojson.Unmarshal([]byte(js), &cfg); err != nil {
		t.Fatal(err)
	}
	p, err := CompileRetryPolicy(&cfg, "retry_policy")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reqHeaders(kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseRetryOn(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		grpc   bool
		want   RetryOn
		wantOK bool
	}{
		{name: "one", in: "5xx", want: RetryOn5xx, wantOK: true},
		{name: "trimmed list", in: " 5xx , connect-failure,reset ", want: RetryOn5xx | RetryOnConnectFailure | RetryOnReset, wantOK: true},
		// Envoy ignores unknown names (and empty tokens).
		{name: "unknown ignored", in: "5xx,bogus,,", want: RetryOn5xx, wantOK: false},
		{name: "grpc names are not http names", in: "unavailable", want: 0, wantOK: false},
		{name: "grpc", in: "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable", grpc: true, want: retryOnGrpc, wantOK: true},
		{name: "empty", in: "", want: 0, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryOn(tc.in, tc.grpc)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("ParseRetryOn(%q, %v) = %b, %v; want %b, %v", tc.in, tc.grpc, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCompileRetryPolicy(t *testing.T) {
	p := compilePolicy(t, `{"retry_on": "5xx,unavailable", "per_try_timeout": "0.5s", "per_try_idle_timeout": "1s",
		"retry_back_off": {"base_interval": "0.0001s"}, "retriable_status_codes": [418]}`)
	if p.RetryOn() != RetryOn5xx|RetryOnGrpcUnavailable {
		t.Errorf("RetryOn = %b", p.RetryOn())
	}
	if p.NumRetries() != 1 {
		t.Errorf("NumRetries = %d, want Envoy's default 1", p.NumRetries())
	}
	if p.PerTryTimeout() != 500*time.Millisecond || p.PerTryIdleTimeout() != time.Second {
		t.Errorf("per-try timeouts = %v, %v", p.PerTryTimeout(), p.PerTryIdleTimeout())
	}
	// Envoy rounds a sub-millisecond base up to 1 ms; the max is 10 × base.
	if base, max := p.BackOff(); base != time.Millisecond || max != 10*time.Millisecond {
		t.Errorf("BackOff = %v, %v; want 1ms, 10ms", base, max)
	}
	if base, max := defaultRetryPolicy.BackOff(); base != 25*time.Millisecond || max != 250*time.Millisecond {
		t.Errorf("default BackOff = %v, %v; want 25ms, 250ms", base, max)
	}
}

func TestCompileRetryPolicyErrors(t *testing.T) {
	tests := []struct {
		name     string
		js       string
		wantPath string
		wantMsg  string
	}{
		{
			name:     "other host predicate",
			js:       `{"retry_host_predicate": [{"name": "envoy.retry_host_predicates.omit_canary_hosts"}]}`,
			wantPath: "retry_policy.retry_host_predicate[0].name",
			wantMsg:  configerr.NotSupported,
		},
		{
			name:     "retry_priority",
			js:       `{"retry_priority": {"name": "envoy.retry_priorities.previous_priorities"}}`,
			wantPath: "retry_policy.retry_priority",
			wantMsg:  configerr.NotSupported,
		},
		{
			name:     "rate_limited_retry_back_off",
			js:       `{"rate_limited_retry_back_off": {"reset_headers": [{"name": "retry-after"}]}}`,
			wantPath: "retry_policy.rate_limited_retry_back_off",
			wantMsg:  configerr.NotSupported,
		},
		{
			name:     "max below base",
			js:       `{"retry_back_off": {"base_interval": "1s", "max_interval": "0.5s"}}`,
			wantPath: "retry_policy.retry_back_off.max_interval",
			wantMsg:  "greater than or equal to the base_interval",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg routev3.RetryPolicy
			if err := protojson.Unmarshal([]byte(tc.js), &cfg); err != nil {
				t.Fatal(err)
			}
			_, err := CompileRetryPolicy(&cfg, "retry_policy")
			if err == nil || !strings.Contains(err.Error(), tc.wantPath) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error = %v, want %s: %s", err, tc.wantPath, tc.wantMsg)
			}
		})
	}
}

// TestWouldRetryHeaders follows RetryStateImpl::wouldRetryFromHeaders.
func TestWouldRetryHeaders(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		req    []string // request headers
		resp   []string
		want   bool
	}{
		{name: "5xx on 500", policy: `{"retry_on": "5xx"}`, resp: []string{":status", "500"}, want: true},
		{name: "5xx on 200", policy: `{"retry_on": "5xx"}`, resp: []string{":status", "200"}, want: false},
		{name: "gateway-error on 503", policy: `{"retry_on": "gateway-error"}`, resp: []string{":status", "503"}, want: true},
		{name: "gateway-error not on 500", policy: `{"retry_on": "gateway-error"}`, resp: []string{":status", "500"}, want: false},
		{name: "retriable-4xx is 409", policy: `{"retry_on": "retriable-4xx"}`, resp: []string{":status", "409"}, want: true},
		{name: "retriable-4xx not 404", policy: `{"retry_on": "retriable-4xx"}`, resp: []string{":status", "404"}, want: false},
		{name: "status codes", policy: `{"retry_on": "retriable-status-codes", "retriable_status_codes": [418]}`, resp: []string{":status", "418"}, want: true},
		{name: "status codes need retry_on", policy: `{"retry_on": "5xx", "retriable_status_codes": [418]}`, resp: []string{":status", "418"}, want: false},
		{
			// x-envoy-retriable-status-codes adds to the policy's codes.
			name: "status codes header", policy: `{"retry_on": "retriable-status-codes"}`,
			req: []string{hdrRetriableStatusCodes, "429, 418"}, resp: []string{":status", "418"}, want: true,
		},
		{
			name: "retriable headers", policy: `{"retry_on": "retriable-headers", "retriable_headers": [{"name": "x-retry", "exact_match": "yes"}]}`,
			resp: []string{":status", "200", "x-retry", "yes"}, want: true,
		},
		{
			name: "retriable header names header", policy: `{"retry_on": "retriable-headers"}`,
			req: []string{hdrRetriableHeaderNames, "X-Upstream-Retry"}, resp: []string{":status", "200", "x-upstream-retry", "1"}, want: true,
		},
		{
			// An upstream Envoy's rate limit is retried only with envoy-ratelimited.
			name: "ratelimited not retried on 5xx", policy: `{"retry_on": "5xx"}`,
			resp: []string{":status", "503", hdrRateLimited, "true"}, want: false,
		},
		{name: "envoy-ratelimited", policy: `{"retry_on": "envoy-ratelimited"}`, resp: []string{":status", "429", hdrRateLimited, "true"}, want: true},
		{name: "grpc unavailable", policy: `{"retry_on": "unavailable"}`, resp: []string{":status", "200", "grpc-status", "14"}, want: true},
		{name: "grpc other status", policy: `{"retry_on": "unavailable"}`, resp: []string{":status", "200", "grpc-status", "13"}, want: false},
		{name: "grpc internal", policy: `{"retry_on": "internal,cancelled"}`, resp: []string{":status", "200", "grpc-status", "13"}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compilePolicy(t, tc.policy)
			req := reqHeaders(tc.req...)
			e := scanEnvoyHeaders(req)
			var s retryState
			if !s.init(p, &e, req) {
				t.Fatal("init = false, want retries enabled")
			}
			if got := s.wouldRetryHeaders(reqHeaders(tc.resp...)); got != tc.want {
				t.Errorf("wouldRetryHeaders = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWouldRetryReset follows RetryStateImpl::wouldRetryFromReset.
func TestWouldRetryReset(t *testing.T) {
	tests := []struct {
		name    string
		on      RetryOn
		reason  resetReason
		started bool
		want    bool
	}{
		{name: "overflow never", on: RetryOn5xx | RetryOnReset | RetryOnConnectFailure, reason: resetOverflow, want: false},
		{name: "connect-failure", on: RetryOnConnectFailure, reason: resetConnectFailure, want: true},
		{name: "connect-failure not a reset", on: RetryOnConnectFailure, reason: resetConnectionTermination, want: false},
		{name: "5xx covers resets", on: RetryOn5xx, reason: resetConnectionTermination, want: true},
		{name: "5xx covers connect failures", on: RetryOn5xx, reason: resetConnectFailure, want: true},
		{name: "gateway-error covers per-try timeouts", on: RetryOnGatewayError, reason: resetLocal, want: true},
		{name: "reset", on: RetryOnReset, reason: resetConnectionTermination, started: true, want: true},
		{name: "reset-before-request before", on: RetryOnResetBeforeRequest, reason: resetConnectionTermination, want: true},
		{name: "reset-before-request after", on: RetryOnResetBeforeRequest, reason: resetConnectionTermination, started: true, want: false},
		{name: "refused-stream", on: RetryOnRefusedStream, reason: resetRefusedStream, want: true},
		{name: "refused-stream only", on: RetryOnRefusedStream, reason: resetConnectionTermination, want: false},
		{name: "retriable-4xx no reset", on: RetryOnRetriable4xx, reason: resetConnectionTermination, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := retryState{on: tc.on}
			if got := s.wouldRetryReset(tc.reason, tc.started); got != tc.want {
				t.Errorf("wouldRetryReset = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetryHeaderOverrides: the x-envoy-* request headers merge into the
// route's policy and are removed before forwarding.
func TestRetryHeaderOverrides(t *testing.T) {
	tests := []struct {
		name          string
		policy        string // "" for none
		req           []string
		wantEnabled   bool
		wantOn        RetryOn
		wantRemaining uint32
	}{
		{name: "no policy no header", wantEnabled: false},
		{name: "header only uses the default policy", req: []string{hdrRetryOn, "5xx"}, wantEnabled: true, wantOn: RetryOn5xx, wantRemaining: 1},
		{name: "grpc header", req: []string{hdrRetryGrpcOn, "unavailable"}, wantEnabled: true, wantOn: RetryOnGrpcUnavailable, wantRemaining: 1},
		{name: "merged", policy: `{"retry_on": "reset", "num_retries": 2}`, req: []string{hdrRetryOn, "5xx"}, wantEnabled: true, wantOn: RetryOnReset | RetryOn5xx, wantRemaining: 2},
		{name: "max retries header wins", policy: `{"retry_on": "5xx", "num_retries": 2}`, req: []string{hdrMaxRetries, "5"}, wantEnabled: true, wantOn: RetryOn5xx, wantRemaining: 5},
		{name: "bad max retries ignored", policy: `{"retry_on": "5xx", "num_retries": 2}`, req: []string{hdrMaxRetries, "x"}, wantEnabled: true, wantOn: RetryOn5xx, wantRemaining: 2},
		{
			name:   "retriable request headers match",
			policy: `{"retry_on": "5xx", "retriable_request_headers": [{"name": ":method", "exact_match": "GET"}]}`,
			req:    []string{":method", "GET"}, wantEnabled: true, wantOn: RetryOn5xx, wantRemaining: 1,
		},
		{
			name:   "retriable request headers mismatch",
			policy: `{"retry_on": "5xx", "retriable_request_headers": [{"name": ":method", "exact_match": "GET"}]}`,
			req:    []string{":method", "POST"}, wantEnabled: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p *RetryPolicy
			if tc.policy != "" {
				p = compilePolicy(t, tc.policy)
			}
			req := reqHeaders(tc.req...)
			e := scanEnvoyHeaders(req)
			var s retryState
			if got := s.init(p, &e, req); got != tc.wantEnabled {
				t.Fatalf("init = %v, want %v", got, tc.wantEnabled)
			}
			if tc.wantEnabled && (s.on != tc.wantOn || s.remaining != tc.wantRemaining) {
				t.Errorf("on, remaining = %b, %d; want %b, %d", s.on, s.remaining, tc.wantOn, tc.wantRemaining)
			}
			for _, f := range req.Fields {
				if strings.HasPrefix(f.Name, "x-envoy-") {
					t.Errorf("%s was not removed", f.Name)
				}
			}
		})
	}
}

func TestScanEnvoyHeadersTimeouts(t *testing.T) {
	h := reqHeaders(":path", "/", hdrUpstreamRqTimeout, "250", hdrPerTryTimeout, "100", "x-envoy-internal", "true")
	e := scanEnvoyHeaders(h)
	if d, ok := parseMillis(e.rqTimeout); !e.hasRqTimeout || !ok || d != 250*time.Millisecond {
		t.Errorf("rq timeout = %q %v", e.rqTimeout, ok)
	}
	if d, ok := parseMillis(e.perTry); !e.hasPerTry || !ok || d != 100*time.Millisecond {
		t.Errorf("per-try timeout = %q %v", e.perTry, ok)
	}
	// Headers the router does not consume stay.
	want := []hhttp.HeaderField{{Name: ":path", Value: "/"}, {Name: "x-envoy-internal", Value: "true"}}
	if diff := cmp.Diff(want, h.Fields); diff != "" {
		t.Errorf("headers after scan (-want +got):\n%s", diff)
	}
	if _, ok := parseMillis("-5"); ok {
		t.Error("parseMillis(-5) ok, want an error")
	}
}

// TestBackOff: Envoy's JitteredExponentialBackOffStrategy with base 25 ms
// and max 250 ms draws from [0,25), [0,50), [0,100), [0,200), then [0,250).
func TestBackOff(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bounds := []time.Duration{25, 50, 100, 200, 250, 250}
	for trial := 0; trial < 200; trial++ {
		s := retryState{next: 25, maxMs: 250}
		for i, b := range bounds {
			if d := s.backOff(rng.Uint64()); d < 0 || d >= b*time.Millisecond {
				t.Fatalf("retry %d back-off %v, want in [0, %v)", i+1, d, b*time.Millisecond)
			}
		}
	}
	// The draw is random % interval.
	s := retryState{next: 25, maxMs: 250}
	if d := s.backOff(24); d != 24*time.Millisecond {
		t.Errorf("backOff(24) = %v, want 24ms", d)
	}
	if d := s.backOff(51); d != time.Millisecond {
		t.Errorf("second backOff(51) = %v, want 51 %% 50 = 1ms", d)
	}
}

// TestShouldRetry: the retry budget of the request, the cluster's retry
// circuit breaker, and the stats, as RetryStateImpl::shouldRetry.
func TestShouldRetry(t *testing.T) {
	store := stats.NewStore()
	sc := store.Scope("cluster.c.")
	rm := upstream.NewResourceManager(sc.Scope("circuit_breakers.default."), sc, upstream.Thresholds{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1, MaxRetries: 1})
	rs := upstream.NewRetryStats(sc)
	s := retryState{on: RetryOn5xx, remaining: 2}
	steps := []struct {
		would bool
		want  retryStatus
	}{
		{would: true, want: retryYes},             // retry 1 holds the cluster's only retry
		{would: true, want: retryYes},             // judged: released, then taken again
		{would: true, want: retryNoLimitExceeded}, // the request's retries are spent
	}
	for i, st := range steps {
		if got := s.shouldRetry(st.would, rm, rs); got != st.want {
			t.Fatalf("step %d: shouldRetry = %v, want %v", i, got, st.want)
		}
	}
	// Another request cannot retry while one holds the breaker.
	other := retryState{on: RetryOn5xx, remaining: 1}
	other.shouldRetry(true, rm, rs)
	blocked := retryState{on: RetryOn5xx, remaining: 1}
	if got := blocked.shouldRetry(true, rm, rs); got != retryNoOverflow {
		t.Errorf("shouldRetry with the breaker open = %v, want retryNoOverflow", got)
	}
	// A retried attempt that succeeds counts upstream_rq_retry_success.
	if got := other.shouldRetry(false, rm, rs); got != retryNo {
		t.Errorf("shouldRetry(false) = %v, want retryNo", got)
	}
	for name, want := range map[string]uint64{
		"upstream_rq_retry":                3,
		"upstream_rq_retry_success":        1,
		"upstream_rq_retry_overflow":       1,
		"upstream_rq_retry_limit_exceeded": 1,
	} {
		if got := sc.Counter(name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := sc.Gauge("circuit_breakers.default.rq_retry_open").Value(); got != 0 {
		t.Errorf("rq_retry_open = %d, want 0", got)
	}
	if rm.Retries.Count() != 0 {
		t.Errorf("retries in use = %d, want 0 once judged", rm.Retries.Count())
	}
}

func TestPreviousHosts(t *testing.T) {
	p := compilePolicy(t, `{"retry_on": "5xx", "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]}`)
	var s retryState
	e := envoyHeaders{}
	if !s.init(p, &e, reqHeaders()) {
		t.Fatal("init = false")
	}
	a, b := &upstream.Host{}, &upstream.Host{}
	s.attempted(a)
	if !s.rejectHost(a) || s.rejectHost(b) {
		t.Errorf("rejectHost(a), rejectHost(b) = %v, %v; want true, false", s.rejectHost(a), s.rejectHost(b))
	}
}
