package healthcheck

import (
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	ok := Result{Outcome: Success}
	tests := []struct {
		name      string
		flags     Flags // before the sequence
		checked   bool  // a check already ran (not the first)
		results   []Result
		wantFlags Flags
		wantLast  transition
	}{
		// Envoy: the first ever passing check makes a new host healthy at
		// once, whatever healthy_threshold says.
		{name: "first pass heals at once", flags: FailedActiveHC, results: []Result{ok}, wantFlags: 0, wantLast: changed},
		{name: "later passes need the threshold", flags: FailedActiveHC, checked: true, results: []Result{ok}, wantFlags: FailedActiveHC, wantLast: changePending},
		{name: "healthy_threshold passes heal", flags: FailedActiveHC, checked: true, results: []Result{ok, ok}, wantFlags: 0, wantLast: changed},
		{name: "a failure restarts the count", flags: FailedActiveHC, checked: true,
			results: []Result{ok, {Outcome: NetworkFailure}, ok}, wantFlags: FailedActiveHC, wantLast: changePending},
		{name: "pass on healthy host changes nothing", flags: 0, checked: true, results: []Result{ok}, wantFlags: 0, wantLast: unchanged},
		// A non-retriable ACTIVE failure (unexpected status) ignores
		// unhealthy_threshold.
		{name: "unexpected status fails at once", flags: 0, checked: true, results: []Result{{Outcome: Failure}}, wantFlags: FailedActiveHC, wantLast: changed},
		{name: "network failures count", flags: 0, checked: true,
			results: []Result{{Outcome: NetworkFailure}, {Outcome: NetworkFailure}}, wantFlags: 0, wantLast: changePending},
		{name: "unhealthy_threshold network failures fail", flags: 0, checked: true,
			results: []Result{{Outcome: NetworkFailure}, {Outcome: TimeoutFailure}, {Outcome: NetworkFailure}}, wantFlags: FailedActiveHC, wantLast: changed},
		{name: "retriable statuses count", flags: 0, checked: true,
			results: []Result{{Outcome: RetriableFailure}, {Outcome: RetriableFailure}}, wantFlags: 0, wantLast: changePending},
		{name: "a pass restarts the failure count", flags: 0, checked: true,
			results: []Result{{Outcome: NetworkFailure}, {Outcome: NetworkFailure}, ok, {Outcome: NetworkFailure}}, wantFlags: 0, wantLast: changePending},
		// NETWORK_TIMEOUT on a failed host sets /active_hc_timeout; another
		// kind of failure clears it; healing clears it.
		{name: "timeout on failed host", flags: FailedActiveHC, checked: true, results: []Result{{Outcome: TimeoutFailure}}, wantFlags: FailedActiveHC | ActiveHCTimeout, wantLast: unchanged},
		{name: "timeout then refusal", flags: FailedActiveHC, checked: true,
			results: []Result{{Outcome: TimeoutFailure}, {Outcome: NetworkFailure}}, wantFlags: FailedActiveHC, wantLast: unchanged},
		{name: "timeouts reaching the threshold", flags: 0, checked: true,
			results: []Result{{Outcome: TimeoutFailure}, {Outcome: TimeoutFailure}, {Outcome: TimeoutFailure}}, wantFlags: FailedActiveHC | ActiveHCTimeout, wantLast: changed},
		{name: "immediate fail excludes", flags: 0, checked: true, results: []Result{{Outcome: Failure, ImmediateFail: true}}, wantFlags: FailedActiveHC | ExcludedViaImmediateHCFail, wantLast: changed},
		{name: "passive failure is immediate", flags: 0, checked: true, results: []Result{{Outcome: PassiveFailure, ImmediateFail: true}}, wantFlags: FailedActiveHC | ExcludedViaImmediateHCFail, wantLast: changed},
		{name: "healing clears exclusion", flags: FailedActiveHC | ExcludedViaImmediateHCFail | ActiveHCTimeout, checked: true,
			results: []Result{ok, ok}, wantFlags: 0, wantLast: changed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := counters{checked: tc.checked}
			f := tc.flags
			var tr transition
			for _, r := range tc.results {
				f, tr = step(f, &st, r, 2, 3)
			}
			if f != tc.wantFlags || tr != tc.wantLast {
				t.Errorf("flags, transition = %b, %d; want %b, %d", f, tr, tc.wantFlags, tc.wantLast)
			}
		})
	}
}

func TestNextInterval(t *testing.T) {
	cfg := &Config{Interval: 10 * time.Second, UnhealthyInterval: 20 * time.Second, UnhealthyEdgeInterval: 30 * time.Second,
		HealthyEdgeInterval: 40 * time.Second, NoTrafficInterval: 50 * time.Second, NoTrafficHealthyInterval: 60 * time.Second}
	zero := func() uint64 { return 0 }
	tests := []struct {
		name    string
		passed  bool
		tr      transition
		traffic bool
		want    time.Duration
	}{
		{name: "healthy", passed: true, tr: unchanged, traffic: true, want: 10 * time.Second},
		{name: "just healed", passed: true, tr: changed, traffic: true, want: 10 * time.Second},
		{name: "healing pending", passed: true, tr: changePending, traffic: true, want: 40 * time.Second},
		{name: "unhealthy", passed: false, tr: unchanged, traffic: true, want: 20 * time.Second},
		{name: "failing pending", passed: false, tr: changePending, traffic: true, want: 30 * time.Second},
		{name: "no traffic healthy", passed: true, tr: unchanged, traffic: false, want: 60 * time.Second},
		{name: "no traffic healing pending", passed: true, tr: changePending, traffic: false, want: 50 * time.Second},
		{name: "no traffic unhealthy", passed: false, tr: unchanged, traffic: false, want: 50 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cfg.nextInterval(tc.passed, tc.tr, tc.traffic, zero); got != tc.want {
				t.Errorf("nextInterval = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		base   time.Duration
		jitter time.Duration
		rnd    uint64
		want   time.Duration
	}{
		{name: "none", base: time.Second, rnd: 12345, want: time.Second},
		// interval_jitter: + rand % jitter ms.
		{name: "interval_jitter", base: time.Second, jitter: 100 * time.Millisecond, rnd: 250, want: 1050 * time.Millisecond},
		// interval_jitter_percent: + rand % (percent * base / 100) ms.
		{name: "percent", cfg: Config{IntervalJitterPercent: 10}, base: time.Second, rnd: 130, want: 1030 * time.Millisecond},
		{name: "both", cfg: Config{IntervalJitterPercent: 10}, base: time.Second, jitter: 100 * time.Millisecond, rnd: 130, want: 1060 * time.Millisecond},
		// Envoy forces at least 1 ms.
		{name: "floor", base: 0, rnd: 7, want: time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.withJitter(tc.base.Milliseconds(), tc.jitter, func() uint64 { return tc.rnd })
			if got != tc.want {
				t.Errorf("withJitter = %v, want %v", got, tc.want)
			}
		})
	}
	c := Config{InitialJitter: 100 * time.Millisecond}
	if got := c.initialDelay(func() uint64 { return 42 }); got != 42*time.Millisecond {
		t.Errorf("initialDelay = %v, want 42ms", got)
	}
	if got := (&Config{}).initialDelay(func() uint64 { return 42 }); got != 0 {
		t.Errorf("initialDelay without initial_jitter = %v, want 0", got)
	}
}
