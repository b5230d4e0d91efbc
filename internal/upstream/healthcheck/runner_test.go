package healthcheck

import (
	nethttp "net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

type fakeTarget struct {
	addr  string
	flags atomic.Uint32
}

func newTarget(addr string) *fakeTarget {
	t := &fakeTarget{addr: addr}
	t.flags.Store(uint32(FailedActiveHC)) // as a new host of a health-checked cluster
	return t
}

func (t *fakeTarget) Address() string         { return t.addr }
func (t *fakeTarget) ActiveHealth() Flags     { return Flags(t.flags.Load()) }
func (t *fakeTarget) SetActiveHealth(f Flags) { t.flags.Store(uint32(f)) }

// switchable is an HTTP backend whose behaviour the test changes: a
// status code, 0 to drop the connection, -1 to hang until the check
// times out. requests counts checks received.
type switchable struct {
	status   atomic.Int32
	requests atomic.Int32
}

func (s *switchable) start(t *testing.T) string {
	s.status.Store(200)
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		s.requests.Add(1)
		switch st := s.status.Load(); st {
		case 0:
			c, _, err := w.(nethttp.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		case -1:
			<-r.Context().Done()
		default:
			w.WriteHeader(int(st))
		}
	}))
}

type runnerEnv struct {
	r       *Runner
	st      *Stats
	changes atomic.Int32
	// netFailuresAtChange is network_failure when the first change to
	// failed was reported.
	netFailuresAtChange atomic.Int64
}

func startRunner(t *testing.T, hc string, targets ...*fakeTarget) *runnerEnv {
	t.Helper()
	cfg := mustBuild(t, hc)
	e := &runnerEnv{st: NewStats(stats.NewStore().Scope("cluster.c.health_check."))}
	e.netFailuresAtChange.Store(-1)
	e.r = NewRunner(Options{Cluster: "c", Config: cfg, Stats: e.st, Dial: dialer(),
		OnChange: func() {
			e.changes.Add(1)
			for _, tg := range targets {
				if tg.ActiveHealth()&FailedActiveHC != 0 {
					e.netFailuresAtChange.CompareAndSwap(-1, int64(e.st.NetworkFailure.Value()))
				}
			}
		}})
	t.Cleanup(e.r.Stop)
	ts := make([]Target, len(targets))
	for i, tg := range targets {
		ts[i] = tg
	}
	e.r.SetHosts(ts)
	return e
}

func waitFlags(t *testing.T, tg *fakeTarget, want Flags) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := tg.ActiveHealth(); got != want {
			return errorf("flags of %s = %b, want %b", tg.addr, got, want)
		}
		return nil
	})
}

const fast = "{timeout: 1s, interval: 0.01s, no_traffic_interval: 0.01s, unhealthy_threshold: 3, healthy_threshold: 2, "

func TestRunnerTransitions(t *testing.T) {
	var b switchable
	tg := newTarget(b.start(t))
	e := startRunner(t, fast+"http_health_check: {path: /}}", tg)

	// First check passes: healthy at once.
	waitFlags(t, tg, 0)
	if got := e.st.Healthy.Value(); got != 1 {
		t.Errorf("health_check.healthy = %d, want 1", got)
	}
	// 503 is not retriable: unhealthy at once, whatever unhealthy_threshold.
	b.status.Store(503)
	waitFlags(t, tg, FailedActiveHC)
	if got := e.st.Healthy.Value(); got != 0 {
		t.Errorf("health_check.healthy = %d, want 0", got)
	}
	if e.st.Failure.Value() == 0 || e.st.NetworkFailure.Value() != 0 {
		t.Errorf("failure = %d, network_failure = %d; want >0 and 0", e.st.Failure.Value(), e.st.NetworkFailure.Value())
	}
	// Back to 200: healthy after healthy_threshold passes.
	succ := e.st.Success.Value()
	b.status.Store(200)
	waitFlags(t, tg, 0)
	if got := e.st.Success.Value() - succ; got < 2 {
		t.Errorf("healed after %d passes, want healthy_threshold 2", got)
	}
	if e.changes.Load() < 3 {
		t.Errorf("OnChange called %d times, want 3 transitions", e.changes.Load())
	}
	if a, s, f := e.st.Attempt.Value(), e.st.Success.Value(), e.st.Failure.Value(); a < s+f {
		t.Errorf("attempt %d < success %d + failure %d", a, s, f)
	}
	e.r.Stop()
	if got := e.st.Healthy.Value(); got != 0 {
		t.Errorf("health_check.healthy after Stop = %d, want 0", got)
	}
	// No check runs after Stop.
	n := b.requests.Load()
	e.r.SetHosts([]Target{tg})
	if b.requests.Load() != n {
		t.Error("checks ran after Stop")
	}
}

func TestRunnerNetworkThreshold(t *testing.T) {
	var b switchable
	tg := newTarget(b.start(t))
	e := startRunner(t, fast+"http_health_check: {path: /}}", tg)
	waitFlags(t, tg, 0)
	b.status.Store(0) // drop connections: network failures
	waitFlags(t, tg, FailedActiveHC)
	testutil.Eventually(t, 5*time.Second, func() error {
		if e.netFailuresAtChange.Load() < 0 {
			return errorf("change not reported")
		}
		return nil
	})
	if got := e.netFailuresAtChange.Load(); got != 3 {
		t.Errorf("host failed after %d network failures, want unhealthy_threshold 3", got)
	}
}

func TestRunnerTimeout(t *testing.T) {
	var b switchable
	tg := newTarget(b.start(t))
	e := startRunner(t, "{timeout: 0.05s, interval: 0.01s, no_traffic_interval: 0.01s, unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: {path: /}}", tg)
	waitFlags(t, tg, 0)
	b.status.Store(-1)
	// Timeouts count as network failures and mark the failed host.
	waitFlags(t, tg, FailedActiveHC|ActiveHCTimeout)
	if e.st.NetworkFailure.Value() < 2 {
		t.Errorf("network_failure = %d, want >= 2", e.st.NetworkFailure.Value())
	}
	b.status.Store(200)
	waitFlags(t, tg, 0)
}

func TestRunnerMembershipAndInitialize(t *testing.T) {
	var up, hang switchable
	a, h := newTarget(up.start(t)), newTarget(hang.start(t))
	hang.status.Store(-1)
	e := startRunner(t, "{timeout: 10s, interval: 0.01s, no_traffic_interval: 0.01s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /}}", a, h)

	var done atomic.Int32
	e.r.Initialize(func() { done.Add(1) })
	waitFlags(t, a, 0)
	testutil.Eventually(t, 5*time.Second, func() error {
		if hang.requests.Load() == 0 {
			return errorf("hanging host not checked yet")
		}
		return nil
	})
	if done.Load() != 0 {
		t.Fatal("initial round finished while a host awaits its first check")
	}
	// Removing the host still waiting ends the round (Envoy runs the
	// callbacks of a session deleted before its first check).
	e.r.SetHosts([]Target{a})
	testutil.Eventually(t, 5*time.Second, func() error {
		if done.Load() != 1 {
			return errorf("initialize callback ran %d times, want 1", done.Load())
		}
		return nil
	})
	// The removed host's checker stopped: its hanging check was cancelled
	// and no new one starts.
	n := hang.requests.Load()
	for range 5 {
		before := up.requests.Load()
		testutil.Eventually(t, 5*time.Second, func() error {
			if up.requests.Load() == before {
				return errorf("no check of the remaining host")
			}
			return nil
		})
	}
	if hang.requests.Load() != n {
		t.Errorf("removed host checked again")
	}
	if got := e.st.Healthy.Value(); got != 1 {
		t.Errorf("health_check.healthy = %d, want 1", got)
	}

	// With no hosts pending, Initialize calls back at once.
	var again atomic.Int32
	e.r.Initialize(func() { again.Add(1) })
	if again.Load() != 1 {
		t.Error("Initialize with every host checked did not call back")
	}
}

func TestRunnerImmediateFail(t *testing.T) {
	var b switchable
	tg := newTarget(b.start(t))
	e := startRunner(t, "{timeout: 1s, interval: 0.05s, no_traffic_interval: 0.05s, unhealthy_threshold: 3, healthy_threshold: 2, http_health_check: {path: /}}", tg)
	waitFlags(t, tg, 0)
	b.status.Store(503) // keep it down so the next check does not heal it
	e.r.ImmediateFail(tg)
	if got := tg.ActiveHealth(); got != FailedActiveHC|ExcludedViaImmediateHCFail {
		t.Errorf("flags = %b, want failed and excluded", got)
	}
	if e.st.PassiveFailure.Value() != 1 {
		t.Errorf("passive_failure = %d, want 1", e.st.PassiveFailure.Value())
	}
	// Unknown targets are ignored.
	e.r.ImmediateFail(newTarget("127.0.0.1:1"))
	b.status.Store(200)
	waitFlags(t, tg, 0)
}

// The immediate-fail header on a failing check response excludes the host.
func TestRunnerImmediateFailHeader(t *testing.T) {
	addr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set(HeaderImmediateHealthCheckFail, "true")
		w.WriteHeader(503)
	}))
	tg := newTarget(addr)
	tg.SetActiveHealth(0)
	startRunner(t, fast+"http_health_check: {path: /}}", tg)
	waitFlags(t, tg, FailedActiveHC|ExcludedViaImmediateHCFail)
}
