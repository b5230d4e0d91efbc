package healthcheck

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Target is a host to check. It stores the host's flags; the Runner only
// changes the Flags bits. Targets are compared by identity (use pointers).
type Target interface {
	// Address is "ip:port" to connect to.
	Address() string
	// ActiveHealth returns the host's active health checking flags.
	ActiveHealth() Flags
	// SetActiveHealth replaces them.
	SetActiveHealth(Flags)
}

// DialFunc opens a connection to address, bounded by ctx.
type DialFunc func(ctx context.Context, address string) (net.Conn, error)

// Options configure a Runner.
type Options struct {
	// Cluster is the cluster's name, for logs.
	Cluster string
	// Config is the built health check. Required.
	Config *Config
	// Stats are the cluster's health_check.* stats. Required.
	Stats *Stats
	// Dial opens check connections (default a net.Dialer). Health check
	// connections are not the cluster's traffic: they must not count
	// upstream_cx_total, or no_traffic_interval would never apply.
	Dial DialFunc
	// Rand returns random numbers for jitter (default math/rand/v2).
	Rand func() uint64
	// Traffic reports whether the cluster has ever carried traffic (Envoy:
	// upstream_cx_total, upstream_cx_tx/rx_bytes_total used). Nil means
	// always.
	Traffic func() bool
	// OnChange is called, on a checker goroutine and without locks held,
	// after a host's health flipped; the cluster rebuilds its host set.
	OnChange func()
	// OnCheck, if set, is called on a checker goroutine without locks held
	// after every check result of t is applied, with whether it passed
	// (Envoy's addHostCheckCompleteCb; outlier detection un-ejects a host
	// that passes).
	OnCheck func(t Target, passed bool)
}

// Runner checks a cluster's hosts, one goroutine per host, until Stop.
type Runner struct {
	// Immutable after NewRunner.
	opts   Options
	cfg    *Config
	prober prober
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Guarded by mu.
	mu       sync.Mutex
	sessions map[Target]*session
	stopped  bool
	initDone func()            // set by Initialize until it runs
	pending  map[*session]bool // hosts the initial round waits for
}

// NewRunner returns a Runner with no hosts; SetHosts starts checking.
func NewRunner(opts Options) *Runner {
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if opts.Rand == nil {
		opts.Rand = rand.Uint64
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	r := &Runner{opts: opts, cfg: opts.Config, sessions: map[Target]*session{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.prober = newProber(opts.Config, opts.Dial)
	return r
}

// SetHosts makes ts the checked hosts: new ones get a checker goroutine
// (Envoy's onClusterMemberUpdate hosts_added), missing ones have theirs
// cancelled. It does not wait for goroutines, so it may be called under
// the caller's locks.
func (r *Runner) SetHosts(ts []Target) {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	keep := make(map[Target]bool, len(ts))
	for _, t := range ts {
		keep[t] = true
		if r.sessions[t] == nil {
			r.startLocked(t)
		}
	}
	var gone []*session
	for t, s := range r.sessions {
		if !keep[t] {
			delete(r.sessions, t)
			gone = append(gone, s)
		}
	}
	done := r.settleLocked(gone)
	r.mu.Unlock()
	for _, s := range gone {
		s.remove()
	}
	if done != nil {
		done()
	}
}

func (r *Runner) startLocked(t Target) {
	s := &session{r: r, t: t, probe: r.prober.newSession(t.Address())}
	s.ctx, s.cancel = context.WithCancel(r.ctx)
	r.sessions[t] = s
	// Envoy's ActiveHealthCheckSession constructor: a host that is not
	// failed counts as healthy at once.
	if t.ActiveHealth()&FailedActiveHC == 0 {
		r.opts.Stats.Healthy.Inc()
	}
	r.wg.Add(1)
	go s.run()
}

// settleLocked drops gone sessions from the initial round and returns the
// round's callback when nothing is left to wait for.
func (r *Runner) settleLocked(gone []*session) func() {
	for _, s := range gone {
		delete(r.pending, s)
	}
	if r.initDone != nil && len(r.pending) == 0 {
		done := r.initDone
		r.initDone = nil
		return done
	}
	return nil
}

// Initialize calls done once every current host has had its first check
// (or was removed): Envoy's cluster initialization waits for the first
// health check round (ClusterImplBase::onPreInitComplete). With no hosts
// done runs at once. Stop also runs a pending done.
func (r *Runner) Initialize(done func()) {
	r.mu.Lock()
	r.pending = map[*session]bool{}
	for _, s := range r.sessions {
		if !s.firstCheckDone() {
			r.pending[s] = true
		}
	}
	r.initDone = done
	run := r.settleLocked(nil)
	if r.stopped {
		run, r.initDone = done, nil
	}
	r.mu.Unlock()
	if run != nil {
		run()
	}
}

// ImmediateFail marks t failed at once, as Envoy's router does for an
// upstream response carrying x-envoy-immediate-health-check-fail
// (HealthCheckHostMonitor::setUnhealthy(ImmediateHealthCheckFail)):
// /failed_active_hc and /excluded_via_immediate_hc_fail, a failure and a
// passive_failure. The next passing check brings the host back. It does
// nothing for a host the Runner does not check.
func (r *Runner) ImmediateFail(t Target) {
	r.mu.Lock()
	s := r.sessions[t]
	r.mu.Unlock()
	if s != nil {
		s.record(Result{Outcome: PassiveFailure, ImmediateFail: true, Detail: "x-envoy-immediate-health-check-fail"})
	}
}

// Stop ends every checker goroutine and waits for them, closes check
// connections and takes the hosts out of the healthy gauge.
func (r *Runner) Stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.cancel()
	gone := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		gone = append(gone, s)
	}
	r.sessions = map[Target]*session{}
	done := r.initDone
	r.initDone = nil
	r.mu.Unlock()
	r.wg.Wait()
	for _, s := range gone {
		s.remove()
	}
	r.prober.close()
	if done != nil {
		done()
	}
}

// firstChecked drops s from the initial round.
func (r *Runner) firstChecked(s *session) {
	r.mu.Lock()
	var done func()
	if r.pending[s] {
		done = r.settleLocked([]*session{s})
	}
	r.mu.Unlock()
	if done != nil {
		done()
	}
}

// session is one host's checker.
type session struct {
	// Immutable after startLocked.
	r      *Runner
	t      Target
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the run goroutine.
	probe probeSession

	// Guarded by mu (run goroutine, ImmediateFail, remove).
	mu      sync.Mutex
	st      counters
	removed bool
	// reported: the first result was recorded and its host set rebuild
	// (OnChange) has returned, so cluster warming may end.
	reported bool
}

func (s *session) firstCheckDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported
}

func (s *session) run() {
	defer s.r.wg.Done()
	defer s.probe.close()
	cfg := s.r.cfg
	timer := time.NewTimer(cfg.initialDelay(s.r.opts.Rand))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			return
		}
		s.r.opts.Stats.Attempt.Inc()
		cctx, cancel := context.WithTimeout(s.ctx, cfg.Timeout)
		res := s.probe.check(cctx)
		timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		if s.ctx.Err() != nil {
			return // removed or stopped mid-check: the result means nothing
		}
		if res.Outcome != Success && timedOut {
			res.Outcome = TimeoutFailure
		}
		passed, tr := s.record(res)
		traffic := s.r.opts.Traffic == nil || s.r.opts.Traffic()
		timer.Reset(cfg.nextInterval(passed, tr, traffic, s.r.opts.Rand))
	}
}

// record applies res to the host and reports the transition.
func (s *session) record(res Result) (passed bool, tr transition) {
	st := s.r.opts.Stats
	s.mu.Lock()
	if s.removed {
		s.mu.Unlock()
		return res.Outcome == Success, unchanged
	}
	first := !s.st.checked
	before := s.t.ActiveHealth()
	after, tr := step(before, &s.st, res, s.r.cfg.HealthyThreshold, s.r.cfg.UnhealthyThreshold)
	if after != before {
		s.t.SetActiveHealth(after)
	}
	wasFailed, isFailed := before&FailedActiveHC != 0, after&FailedActiveHC != 0
	switch {
	case wasFailed && !isFailed:
		st.Healthy.Inc()
	case !wasFailed && isFailed:
		st.Healthy.Dec()
	}
	s.mu.Unlock()

	switch res.Outcome {
	case Success:
		st.Success.Inc()
	case NetworkFailure, TimeoutFailure:
		st.Failure.Inc()
		st.NetworkFailure.Inc()
	case PassiveFailure:
		st.Failure.Inc()
		st.PassiveFailure.Inc()
	default:
		st.Failure.Inc()
	}
	cfg := s.r.cfg
	switch {
	case tr == changed && isFailed:
		slog.Warn("health check: host unhealthy", "cluster", s.r.opts.Cluster, "host", s.t.Address(), "result", res.Outcome.String(), "detail", res.Detail)
	case tr == changed:
		slog.Info("health check: host healthy", "cluster", s.r.opts.Cluster, "host", s.t.Address())
	case res.Outcome != Success && cfg.AlwaysLogFailures, res.Outcome == Success && cfg.AlwaysLogSuccess:
		slog.Info("health check", "cluster", s.r.opts.Cluster, "host", s.t.Address(), "result", res.Outcome.String(), "detail", res.Detail)
	default:
		slog.Debug("health check", "cluster", s.r.opts.Cluster, "host", s.t.Address(), "result", res.Outcome.String(), "detail", res.Detail)
	}
	if s.r.opts.OnCheck != nil {
		s.r.opts.OnCheck(s.t, res.Outcome == Success)
	}
	// A host whose flags changed in any way (e.g. newly excluded while
	// already failed) needs a host set rebuild too.
	if tr == changed || after != before {
		s.r.opts.OnChange()
	}
	if first {
		s.mu.Lock()
		s.reported = true
		s.mu.Unlock()
		s.r.firstChecked(s)
	}
	return res.Outcome == Success, tr
}

// remove detaches a session whose host left (or whose Runner stopped):
// Envoy's onDeferredDeleteBase takes a healthy host out of the gauge.
func (s *session) remove() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	s.removed = true
	if s.t.ActiveHealth()&FailedActiveHC == 0 {
		s.r.opts.Stats.Healthy.Dec()
	}
}
