package outlier

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

type fakeHost struct {
	addr    string
	ejected atomic.Bool
}

func (h *fakeHost) Address() string   { return h.addr }
func (h *fakeHost) SetEjected(e bool) { h.ejected.Store(e) }

// fakeClock is advanced by tests; sweeps read it.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func newClock() *fakeClock                   { c := &fakeClock{}; c.t.Store(time.Unix(1000, 0).UnixNano()); return c }

type testDetector struct {
	d       *Detector
	ms      []*Monitor
	hosts   []*fakeHost
	store   *stats.Store
	clock   *fakeClock
	changes atomic.Int32
}

// newTestDetector builds a detector over n hosts from an outlier_detection
// YAML; rnd is the random source (nil: always 0, so any enforcing
// percentage above 0 ejects).
func newTestDetector(t *testing.T, y string, n int, rnd func() uint64) *testDetector {
	t.Helper()
	cfg, errs := Build(parseOD(t, y), "od")
	if len(errs) > 0 {
		t.Fatalf("Build: %v", errs)
	}
	if rnd == nil {
		rnd = func() uint64 { return 0 }
	}
	td := &testDetector{store: stats.NewStore(), clock: newClock()}
	td.d = New(Options{
		Cluster:  "c",
		Config:   cfg,
		Stats:    NewStats(td.store.Scope("cluster.c.outlier_detection.")),
		Now:      td.clock.now,
		Rand:     rnd,
		OnChange: func() { td.changes.Add(1) },
	})
	for i := range n {
		h := &fakeHost{addr: fmt.Sprintf("10.0.0.%d:80", i+1)}
		td.hosts = append(td.hosts, h)
		td.ms = append(td.ms, td.d.NewMonitor(h))
	}
	td.d.SetHosts(td.ms)
	t.Cleanup(td.d.Stop)
	return td
}

func (td *testDetector) codes(host int, codes ...int) {
	for _, c := range codes {
		td.ms[host].PutHTTPResponseCode(c)
	}
}

func (td *testDetector) repeat(host, code, n int) {
	for range n {
		td.ms[host].PutHTTPResponseCode(code)
	}
}

func (td *testDetector) counter(name string) uint64 {
	return td.store.Counter("cluster.c.outlier_detection." + name).Value()
}

func (td *testDetector) active() int64 {
	return td.store.Gauge("cluster.c.outlier_detection.ejections_active").Value()
}

// stats returns the non-zero outlier_detection counters and the gauge.
func (td *testDetector) stats() map[string]uint64 {
	out := map[string]uint64{}
	for _, name := range []string{
		"ejections_enforced_total", "ejections_overflow", "ejections_total", "ejections_consecutive_5xx",
		"ejections_success_rate",
		"ejections_detected_consecutive_5xx", "ejections_enforced_consecutive_5xx",
		"ejections_detected_consecutive_gateway_failure", "ejections_enforced_consecutive_gateway_failure",
		"ejections_detected_consecutive_local_origin_failure", "ejections_enforced_consecutive_local_origin_failure",
		"ejections_detected_success_rate", "ejections_enforced_success_rate",
		"ejections_detected_local_origin_success_rate", "ejections_enforced_local_origin_success_rate",
		"ejections_detected_failure_percentage", "ejections_enforced_failure_percentage",
		"ejections_detected_local_origin_failure_percentage", "ejections_enforced_local_origin_failure_percentage",
	} {
		if v := td.counter(name); v != 0 {
			out[name] = v
		}
	}
	if v := td.active(); v != 0 {
		out["ejections_active"] = uint64(v)
	}
	return out
}

func (td *testDetector) ejected() []bool {
	out := make([]bool, len(td.hosts))
	for i, h := range td.hosts {
		out[i] = h.ejected.Load()
		if out[i] != td.ms[i].Ejected() {
			panic("host flag and monitor disagree")
		}
	}
	return out
}

// TestConsecutiveErrors covers the consecutive 5xx and gateway failure
// runs (Envoy's putHttpResponseCode).
func TestConsecutiveErrors(t *testing.T) {
	const all = "max_ejection_percent: 100, "
	tests := []struct {
		name        string
		yaml        string
		hosts       int
		codes       []int // sent to host 0
		wantEjected []bool
		wantStats   map[string]uint64
	}{
		{
			name: "5xx run ejects", yaml: "{" + all + "consecutive_5xx: 3}", hosts: 1,
			codes: []int{500, 501, 599}, wantEjected: []bool{true},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
		{
			name: "success resets the run", yaml: "{" + all + "consecutive_5xx: 3}", hosts: 1,
			codes: []int{500, 500, 404, 500, 500}, wantEjected: []bool{false}, wantStats: map[string]uint64{},
		},
		{
			// 502-504 are 5xx too; gateway failures need 5 by default
			// and are not enforced by default.
			name: "gateway errors count as 5xx", yaml: "{" + all + "consecutive_5xx: 3}", hosts: 1,
			codes: []int{502, 503, 504}, wantEjected: []bool{true},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
		{
			// Detected twice (the run restarts after a detection), never
			// enforced; ejections_total still counts (Envoy's deprecated
			// counter is charged before the enforcement roll).
			name: "enforcing 0 detects only", yaml: "{" + all + "consecutive_5xx: 2, enforcing_consecutive_5xx: 0}", hosts: 1,
			codes: []int{500, 500, 500, 500}, wantEjected: []bool{false},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 2, "ejections_total": 2, "ejections_consecutive_5xx": 2},
		},
		{
			// A 500 ends the gateway run but not the 5xx run.
			name: "gateway run", yaml: "{" + all + "consecutive_5xx: 0, consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100}", hosts: 1,
			codes: []int{502, 500, 503, 504}, wantEjected: []bool{true},
			wantStats: map[string]uint64{"ejections_detected_consecutive_gateway_failure": 1, "ejections_enforced_consecutive_gateway_failure": 1,
				"ejections_enforced_total": 1, "ejections_active": 1},
		},
		{
			name: "gateway run not enforced by default", yaml: "{" + all + "consecutive_5xx: 0, consecutive_gateway_failure: 2}", hosts: 1,
			codes: []int{503, 503}, wantEjected: []bool{false},
			wantStats: map[string]uint64{"ejections_detected_consecutive_gateway_failure": 1},
		},
		{
			// Default max_ejection_percent 10: 100*(0+1)/2 = 50 > 10.
			name: "max_ejection_percent overflow", yaml: "{consecutive_5xx: 2}", hosts: 2,
			codes: []int{500, 500}, wantEjected: []bool{false, false},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_overflow": 1, "ejections_consecutive_5xx": 1},
		},
		{
			name: "always_eject_one_host", yaml: "{consecutive_5xx: 2, always_eject_one_host: true}", hosts: 2,
			codes: []int{500, 500}, wantEjected: []bool{true, false},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
		{
			// An ejected host's run keeps growing past the threshold and
			// is not detected again.
			name: "ejected host not detected again", yaml: "{" + all + "consecutive_5xx: 2}", hosts: 1,
			codes: []int{500, 500, 500, 500, 500}, wantEjected: []bool{true},
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, tc.yaml, tc.hosts, nil)
			td.codes(0, tc.codes...)
			if diff := cmp.Diff(tc.wantEjected, td.ejected()); diff != "" {
				t.Errorf("ejected (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStats, td.stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if want := int32(0); tc.wantStats["ejections_active"] == 1 {
				if td.changes.Load() != 1 {
					t.Errorf("OnChange called %d times, want 1", td.changes.Load())
				}
			} else if td.changes.Load() != want {
				t.Errorf("OnChange called %d times, want 0", td.changes.Load())
			}
		})
	}
}

// TestEnforcingPercentage: enforcing_* is a chance, rolled as
// random % 100 < percentage.
func TestEnforcingPercentage(t *testing.T) {
	tests := []struct {
		name   string
		random uint64
		want   bool
	}{
		{name: "roll below", random: 149, want: true}, // 49 < 50
		{name: "roll at", random: 50, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, "{max_ejection_percent: 100, consecutive_5xx: 1, enforcing_consecutive_5xx: 50}", 1, func() uint64 { return tc.random })
			td.codes(0, 500)
			if got := td.ejected()[0]; got != tc.want {
				t.Errorf("ejected = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLocalOrigin: connection failures and timeouts are 503 and 504
// responses without split_external_local_origin_errors, and their own run
// with it.
func TestLocalOrigin(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		results     []Result
		codes       []int // sent after results
		wantEjected bool
		wantStats   map[string]uint64
	}{
		{
			name: "no split: connect failures are 5xx", yaml: "{consecutive_5xx: 3}",
			results: []Result{LocalOriginConnectFailed, LocalOriginTimeout, LocalOriginConnectFailed}, wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
		{
			// Timeouts are 504: a gateway failure run.
			name: "no split: timeouts are gateway failures", yaml: "{consecutive_5xx: 0, consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100}",
			results: []Result{LocalOriginTimeout, LocalOriginTimeout}, wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_consecutive_gateway_failure": 1, "ejections_enforced_consecutive_gateway_failure": 1,
				"ejections_enforced_total": 1, "ejections_active": 1},
		},
		{
			// ConnectSuccess maps to no code, so it does not end the run.
			name: "no split: connect success is neutral", yaml: "{consecutive_5xx: 2}",
			results: []Result{LocalOriginConnectFailed, LocalOriginConnectSuccess, LocalOriginConnectFailed}, wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
				"ejections_enforced_total": 1, "ejections_total": 1, "ejections_consecutive_5xx": 1, "ejections_active": 1},
		},
		{
			name: "split: local origin run", yaml: "{split_external_local_origin_errors: true, consecutive_local_origin_failure: 3, consecutive_5xx: 1}",
			results: []Result{LocalOriginConnectFailed, LocalOriginTimeout, LocalOriginConnectFailed}, wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_consecutive_local_origin_failure": 1, "ejections_enforced_consecutive_local_origin_failure": 1,
				"ejections_enforced_total": 1, "ejections_active": 1},
		},
		{
			name: "split: connect success ends the run", yaml: "{split_external_local_origin_errors: true, consecutive_local_origin_failure: 2}",
			results: []Result{LocalOriginConnectFailed, LocalOriginConnectSuccess, LocalOriginConnectFailed}, wantStats: map[string]uint64{},
		},
		{
			// 5xx do not touch the local origin run, and local failures
			// do not touch the 5xx run.
			name: "split: runs are separate", yaml: "{split_external_local_origin_errors: true, consecutive_local_origin_failure: 2, consecutive_5xx: 2}",
			results: []Result{LocalOriginConnectFailed}, codes: []int{500}, wantStats: map[string]uint64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, "{max_ejection_percent: 100, "+tc.yaml[1:], 1, nil)
			for _, r := range tc.results {
				td.ms[0].PutResult(r)
			}
			td.codes(0, tc.codes...)
			if got := td.ejected()[0]; got != tc.wantEjected {
				t.Errorf("ejected = %v, want %v", got, tc.wantEjected)
			}
			if diff := cmp.Diff(tc.wantStats, td.stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEjectionTime: base_ejection_time × back-off, capped by
// max_ejection_time, plus jitter; the back-off grows with each ejection and
// decays by one per interval the host stays back.
func TestEjectionTime(t *testing.T) {
	const base = "{max_ejection_percent: 100, consecutive_5xx: 1, interval: 1s, base_ejection_time: 10s"
	type step struct {
		eject    bool          // send a 500 now
		advance  time.Duration // then move the clock and sweep
		wantBack bool          // host back after the sweep
	}
	tests := []struct {
		name   string
		yaml   string
		random uint64
		steps  []step
	}{
		{
			name: "returns after base time", yaml: base + "}",
			steps: []step{
				{eject: true, advance: 9999 * time.Millisecond, wantBack: false},
				{advance: time.Millisecond, wantBack: true},
			},
		},
		{
			// Re-ejected at once: back-off 2, 20 s.
			name: "repeat ejection doubles", yaml: base + "}",
			steps: []step{
				{eject: true, advance: 10 * time.Second, wantBack: true},
				{eject: true, advance: 19 * time.Second, wantBack: false},
				{advance: time.Second, wantBack: true},
				{eject: true, advance: 29 * time.Second, wantBack: false},
				{advance: time.Second, wantBack: true},
			},
		},
		{
			// Back-off 3 would be 30 s; max_ejection_time caps it at 25 s.
			name: "capped by max_ejection_time", yaml: base + ", max_ejection_time: 25s}",
			steps: []step{
				{eject: true, advance: 10 * time.Second, wantBack: true},
				{eject: true, advance: 20 * time.Second, wantBack: true},
				{eject: true, advance: 24 * time.Second, wantBack: false},
				{advance: time.Second, wantBack: true},
				// Back-off stops growing at 4 (40 s < 25+10 fails): still 25 s.
				{eject: true, advance: 25 * time.Second, wantBack: true},
				{eject: true, advance: 25 * time.Second, wantBack: true},
			},
		},
		{
			// Back for two intervals: the back-off decays 2 → 1 (not in
			// the sweep that returned it, then once per interval after),
			// so the next ejection lasts 10 s + 10 s = 20 s only once more.
			name: "back-off decays", yaml: base + "}",
			steps: []step{
				{eject: true, advance: 10 * time.Second, wantBack: true},
				{eject: true, advance: 20 * time.Second, wantBack: true}, // back-off 2
				{advance: time.Second, wantBack: true},                   // decays to 1
				{advance: time.Second, wantBack: true},                   // decays to 0
				{eject: true, advance: 9 * time.Second, wantBack: false}, // back-off 1: 10 s
				{advance: time.Second, wantBack: true},
			},
		},
		{
			// random % (5000 ms + 1) = 3003 ms of jitter.
			name: "jitter", yaml: base + ", max_ejection_time_jitter: 5s}", random: 3003,
			steps: []step{
				{eject: true, advance: 13002 * time.Millisecond, wantBack: false},
				{advance: time.Millisecond, wantBack: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, tc.yaml, 1, func() uint64 { return tc.random })
			for i, s := range tc.steps {
				if s.eject {
					td.codes(0, 500)
					if !td.ejected()[0] {
						t.Fatalf("step %d: not ejected", i)
					}
				}
				td.clock.advance(s.advance)
				td.d.sweep()
				if back := !td.ejected()[0]; back != s.wantBack {
					t.Fatalf("step %d: back = %v, want %v", i, back, s.wantBack)
				}
			}
			if got := td.active(); got != 0 && !td.ejected()[0] {
				t.Errorf("ejections_active = %d with no host ejected", got)
			}
		})
	}
}

// TestMaxEjectionPercent: with 4 hosts and 50%, two may be out at once.
func TestMaxEjectionPercent(t *testing.T) {
	td := newTestDetector(t, "{max_ejection_percent: 50, consecutive_5xx: 1}", 4, nil)
	for i := range 4 {
		td.codes(i, 500)
	}
	if diff := cmp.Diff([]bool{true, true, false, false}, td.ejected()); diff != "" {
		t.Errorf("ejected (-want +got):\n%s", diff)
	}
	if got := td.counter("ejections_overflow"); got != 2 {
		t.Errorf("ejections_overflow = %d, want 2", got)
	}
	if got := td.active(); got != 2 {
		t.Errorf("ejections_active = %d, want 2", got)
	}
}

// TestSuccessRate: Envoy's worked example, success rates {50, 100, 100,
// 100, 100}: mean 90, stdev 20, threshold 90 - 1.9*20 = 52.
func TestSuccessRate(t *testing.T) {
	tests := []struct {
		name          string
		yaml          string
		volume        int // requests per host
		wantEjected   []bool
		wantThreshold SuccessRateStats
		wantRates     []float64
		wantStats     map[string]uint64
	}{
		{
			name: "outlier ejected", yaml: "{max_ejection_percent: 20}", volume: 100,
			wantEjected:   []bool{true, false, false, false, false},
			wantThreshold: SuccessRateStats{Average: 90, EjectionThreshold: 52},
			wantRates:     []float64{50, 100, 100, 100, 100},
			wantStats: map[string]uint64{"ejections_detected_success_rate": 1, "ejections_enforced_success_rate": 1,
				"ejections_success_rate": 1, "ejections_total": 1, "ejections_enforced_total": 1, "ejections_active": 1},
		},
		{
			name: "not enforced", yaml: "{max_ejection_percent: 20, enforcing_success_rate: 0}", volume: 100,
			wantEjected:   []bool{false, false, false, false, false},
			wantThreshold: SuccessRateStats{Average: 90, EjectionThreshold: 52},
			wantRates:     []float64{50, 100, 100, 100, 100},
			wantStats:     map[string]uint64{"ejections_detected_success_rate": 1, "ejections_success_rate": 1, "ejections_total": 1},
		},
		{
			// 99 requests is below success_rate_request_volume (100), but
			// enough for failure_percentage_request_volume (50), so the
			// host's rate is still shown.
			name: "too little volume", yaml: "{max_ejection_percent: 20}", volume: 99,
			wantEjected:   []bool{false, false, false, false, false},
			wantThreshold: SuccessRateStats{Average: -1, EjectionThreshold: -1},
			wantRates:     []float64{100 * 49.0 / 99, 100, 100, 100, 100},
			wantStats:     map[string]uint64{},
		},
		{
			// A stdev factor of 3 puts the threshold at 30.
			name: "stdev factor", yaml: "{max_ejection_percent: 20, success_rate_stdev_factor: 3000}", volume: 100,
			wantEjected:   []bool{false, false, false, false, false},
			wantThreshold: SuccessRateStats{Average: 90, EjectionThreshold: 30},
			wantRates:     []float64{50, 100, 100, 100, 100},
			wantStats:     map[string]uint64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, tc.yaml, 5, nil)
			// Host 0 fails every other request: a 5xx run never reaches 5.
			for i := range tc.volume {
				if i%2 == 0 {
					td.codes(0, 500)
				} else {
					td.codes(0, 200)
				}
			}
			for h := 1; h < 5; h++ {
				td.repeat(h, 200, tc.volume)
			}
			td.d.sweep()
			if diff := cmp.Diff(tc.wantEjected, td.ejected()); diff != "" {
				t.Errorf("ejected (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantThreshold, td.d.SuccessRate(ExternalOrigin)); diff != "" {
				t.Errorf("success rate stats (-want +got):\n%s", diff)
			}
			var rates []float64
			for _, m := range td.ms {
				rates = append(rates, m.SuccessRate(ExternalOrigin))
			}
			if diff := cmp.Diff(tc.wantRates, rates); diff != "" {
				t.Errorf("host success rates (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStats, td.stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			// The next interval had no requests: rates reset to -1.
			td.d.sweep()
			if got := td.ms[1].SuccessRate(ExternalOrigin); got != -1 {
				t.Errorf("success rate after an idle interval = %v, want -1", got)
			}
		})
	}
}

// TestFailurePercentage: a host failing 90% of 50 requests, against a
// threshold of 85%.
func TestFailurePercentage(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		split       bool
		wantEjected bool
		wantStats   map[string]uint64
	}{
		{
			name: "detected, not enforced by default", yaml: "{max_ejection_percent: 20, consecutive_5xx: 0}",
			wantStats: map[string]uint64{"ejections_detected_failure_percentage": 1},
		},
		{
			name: "enforced", yaml: "{max_ejection_percent: 20, consecutive_5xx: 0, enforcing_failure_percentage: 100}", wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_failure_percentage": 1, "ejections_enforced_failure_percentage": 1,
				"ejections_enforced_total": 1, "ejections_active": 1},
		},
		{
			name: "threshold not reached", yaml: "{max_ejection_percent: 20, consecutive_5xx: 0, enforcing_failure_percentage: 100, failure_percentage_threshold: 95}",
			wantStats: map[string]uint64{},
		},
		{
			// Local-origin failures in their own success rate monitor.
			name: "local origin", split: true,
			yaml:        "{max_ejection_percent: 20, split_external_local_origin_errors: true, consecutive_local_origin_failure: 0, enforcing_failure_percentage_local_origin: 100}",
			wantEjected: true,
			wantStats: map[string]uint64{"ejections_detected_local_origin_failure_percentage": 1, "ejections_enforced_local_origin_failure_percentage": 1,
				"ejections_enforced_total": 1, "ejections_active": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, tc.yaml, 5, nil)
			for h := range 5 {
				for i := range 50 {
					fail := h == 0 && i%10 != 0
					switch {
					case tc.split && fail:
						td.ms[h].PutResult(LocalOriginConnectFailed)
					case tc.split:
						td.ms[h].PutResult(LocalOriginConnectSuccess)
					case fail:
						td.codes(h, 500)
					default:
						td.codes(h, 200)
					}
				}
			}
			td.d.sweep()
			if got := td.ejected()[0]; got != tc.wantEjected {
				t.Errorf("host 0 ejected = %v, want %v", got, tc.wantEjected)
			}
			o := ExternalOrigin
			if tc.split {
				o = LocalOrigin
			}
			if got := td.ms[0].SuccessRate(o); got != 10 {
				t.Errorf("host 0 success rate = %v, want 10", got)
			}
			if diff := cmp.Diff(tc.wantStats, td.stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHealthCheckPassed: a passing active health check un-ejects unless
// successful_active_health_check_uneject_host is false.
func TestHealthCheckPassed(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantBack bool
	}{
		{name: "default", yaml: "{max_ejection_percent: 100, consecutive_5xx: 2}", wantBack: true},
		{name: "disabled", yaml: "{max_ejection_percent: 100, consecutive_5xx: 2, successful_active_health_check_uneject_host: false}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td := newTestDetector(t, tc.yaml, 1, nil)
			td.codes(0, 500, 500)
			td.d.HealthCheckPassed(td.ms[0])
			if back := !td.ejected()[0]; back != tc.wantBack {
				t.Fatalf("back = %v, want %v", back, tc.wantBack)
			}
			if !tc.wantBack {
				return
			}
			if got := td.active(); got != 0 {
				t.Errorf("ejections_active = %d, want 0", got)
			}
			// Counters were reset: one more 500 does not eject.
			td.codes(0, 500)
			if td.ejected()[0] {
				t.Error("re-ejected after one 500")
			}
		})
	}
}

// TestSetHosts: a removed ejected host leaves ejections_active and its late
// results do nothing; Stop clears the gauge like Envoy's destructor.
func TestSetHosts(t *testing.T) {
	td := newTestDetector(t, "{max_ejection_percent: 100, consecutive_5xx: 1}", 3, nil)
	td.codes(0, 500)
	td.codes(1, 500)
	if got := td.active(); got != 2 {
		t.Fatalf("ejections_active = %d, want 2", got)
	}
	td.d.SetHosts([]*Monitor{td.ms[1], td.ms[2]})
	if got := td.active(); got != 1 {
		t.Errorf("after removal ejections_active = %d, want 1", got)
	}
	removed := td.d.NewMonitor(&fakeHost{addr: "gone"})
	removed.PutHTTPResponseCode(500)
	if removed.Ejected() {
		t.Error("a host the detector does not track was ejected")
	}
	td.d.Stop()
	if got := td.active(); got != 0 {
		t.Errorf("after Stop ejections_active = %d, want 0", got)
	}
}

// TestIntervalGoroutine: Start sweeps on the real interval timer and calls
// OnChange when a host returns; Stop ends the goroutine.
func TestIntervalGoroutine(t *testing.T) {
	td := newTestDetector(t, "{max_ejection_percent: 100, consecutive_5xx: 1, interval: 0.001s, base_ejection_time: 10s}", 1, nil)
	td.d.Start()
	td.codes(0, 500)
	if !td.ejected()[0] {
		t.Fatal("not ejected")
	}
	td.clock.advance(10 * time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		if td.ejected()[0] {
			return errors.New("host did not return")
		}
		// OnChange runs after the flag is cleared.
		if got := td.changes.Load(); got < 2 {
			return fmt.Errorf("OnChange called %d times, want eject + return", got)
		}
		return nil
	})
	td.d.Stop()
}

// BenchmarkPutHTTPResponseCode is the request path's success case.
func BenchmarkPutHTTPResponseCode(b *testing.B) {
	cfg, _ := Build(nil, "od")
	st := stats.NewStore()
	d := New(Options{Config: cfg, Stats: NewStats(st.Scope("x."))})
	m := d.NewMonitor(&fakeHost{})
	d.SetHosts([]*Monitor{m})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.PutHTTPResponseCode(200)
		}
	})
}
