package outlier

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Options configure a Detector.
type Options struct {
	// Cluster is the cluster's name, for logs.
	Cluster string
	// Config is the built outlier_detection. Required.
	Config *Config
	// Stats are the cluster's outlier_detection.* stats. Required.
	Stats *Stats
	// Now is the clock ejection times are measured with (default
	// time.Now). The interval timer itself is a real timer.
	Now func() time.Time
	// Rand returns random numbers for the enforcing_* percentages and the
	// ejection time jitter (default math/rand/v2).
	Rand func() uint64
	// OnChange is called without the detector's lock after hosts were
	// ejected or un-ejected, on the goroutine that did it (the interval
	// goroutine, a request reaching a consecutive error threshold, or a
	// health check); the cluster rebuilds its host set.
	OnChange func()
}

// SuccessRateStats are a cluster's success rate figures from the last
// interval (Envoy's EjectionPair); -1 when success rate ejection did not
// run.
type SuccessRateStats struct {
	Average           float64
	EjectionThreshold float64
}

// Detector is one cluster's outlier detector (Envoy's DetectorImpl).
type Detector struct {
	// Immutable after New.
	opts Options
	cfg  *Config

	// Guarded by mu.
	mu       sync.Mutex
	monitors []*Monitor
	active   int // ejected hosts among monitors
	sr       [2]SuccessRateStats
	stopped  bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// New returns a detector with no hosts; it starts nothing.
func New(opts Options) *Detector {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Uint64
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	d := &Detector{opts: opts, cfg: opts.Config}
	d.sr[ExternalOrigin] = SuccessRateStats{-1, -1}
	d.sr[LocalOrigin] = SuccessRateStats{-1, -1}
	return d
}

// NewMonitor returns a monitor for h. The detector judges it once SetHosts
// lists it.
func (d *Detector) NewMonitor(h Host) *Monitor {
	m := &Monitor{d: d, host: h}
	m.sr[ExternalOrigin].init()
	m.sr[LocalOrigin].init()
	return m
}

// SetHosts makes ms the cluster's hosts (Envoy's member update callback):
// removed ones stop counting, and an ejected one leaves ejections_active.
func (d *Detector) SetHosts(ms []*Monitor) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.monitors {
		m.tracked = false
	}
	for _, m := range ms {
		m.tracked = true
	}
	for _, m := range d.monitors {
		if !m.tracked && m.ejected {
			d.active--
			d.opts.Stats.EjectionsActive.Dec()
		}
	}
	d.monitors = append(d.monitors[:0:0], ms...)
}

// Start runs the interval timer until Stop.
func (d *Detector) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped || d.done != nil {
		return
	}
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(context.Background())
	d.done = make(chan struct{})
	go d.run(ctx, d.done)
}

func (d *Detector) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	// Envoy re-arms the timer after each sweep (armIntervalTimer).
	t := time.NewTimer(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if d.sweep() {
			d.opts.OnChange()
		}
		t.Reset(d.cfg.Interval)
	}
}

// Stop ends the interval goroutine and waits for it. The detector's
// ejected hosts leave ejections_active, as in Envoy's ~DetectorImpl.
func (d *Detector) Stop() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	cancel, done := d.cancel, d.done
	for _, m := range d.monitors {
		if m.ejected {
			d.opts.Stats.EjectionsActive.Dec()
		}
		m.tracked = false
	}
	d.active = 0
	d.monitors = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// SuccessRate returns the cluster's success rate average and ejection
// threshold from the last interval (admin /clusters).
func (d *Detector) SuccessRate(o Origin) SuccessRateStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sr[o]
}

// HealthCheckPassed is what an active health check reports when m's host
// passed a check and is not failing active health checking: with
// successful_active_health_check_uneject_host (the default) an ejected
// host is un-ejected at once (Envoy's DetectorImpl::initialize host check
// callback).
func (d *Detector) HealthCheckPassed(m *Monitor) {
	if !d.cfg.SuccessfulActiveHealthCheckUnejectHost {
		return
	}
	d.mu.Lock()
	if !m.tracked || !m.ejected {
		d.mu.Unlock()
		return
	}
	d.unejectLocked(m, d.opts.Now())
	d.mu.Unlock()
	d.opts.OnChange()
}

// onConsecutiveError runs when a run counter reached its threshold
// (Envoy's onConsecutiveErrorWorker, which runs on the main thread; here
// on the request's goroutine under mu).
func (d *Detector) onConsecutiveError(m *Monitor, t EjectionType) {
	d.mu.Lock()
	// A host removed meanwhile, or already ejected, is left alone.
	if !m.tracked || m.ejected {
		d.mu.Unlock()
		return
	}
	d.opts.Stats.detected(t).Inc()
	changed := d.ejectLocked(m, t, d.opts.Now())
	// Reset the run so a new bout is detected even without an interleaved
	// success.
	switch t {
	case Consecutive5xx:
		d.opts.Stats.EjectionsConsecutive5xx.Inc()
		m.consecutive5xx.Store(0)
	case ConsecutiveGatewayFailure:
		m.consecutiveGatewayFailure.Store(0)
	case ConsecutiveLocalOriginFailure:
		m.consecutiveLocalOriginFailure.Store(0)
	}
	d.mu.Unlock()
	if changed {
		d.opts.OnChange()
	}
}

// enforce reports whether a detected outlier of type t is ejected: the
// enforcing_* percentage as a chance (Envoy's runtime featureEnabled).
func (d *Detector) enforce(t EjectionType) bool {
	var pct uint32
	switch t {
	case Consecutive5xx:
		pct = d.cfg.EnforcingConsecutive5xx
	case ConsecutiveGatewayFailure:
		pct = d.cfg.EnforcingConsecutiveGatewayFailure
	case ConsecutiveLocalOriginFailure:
		pct = d.cfg.EnforcingConsecutiveLocalOriginFailure
	case SuccessRate:
		pct = d.cfg.EnforcingSuccessRate
	case SuccessRateLocalOrigin:
		pct = d.cfg.EnforcingLocalOriginSuccessRate
	case FailurePercentage:
		pct = d.cfg.EnforcingFailurePercentage
	case FailurePercentageLocalOrigin:
		pct = d.cfg.EnforcingFailurePercentageLocalOrigin
	}
	return d.opts.Rand()%100 < uint64(pct)
}

// ejectLocked is Envoy's DetectorImpl::ejectHost. It reports whether the
// host was ejected.
func (d *Detector) ejectLocked(m *Monitor, t EjectionType, now time.Time) bool {
	if m.ejected {
		// Envoy asserts this cannot happen; a host found by both success
		// rate and failure percentage in one sweep would reach it.
		return false
	}
	// Envoy: ejected_percent = 100 * (ejections_active + 1) / hosts, and
	// the host may go if that is <= max_ejection_percent, or if none is
	// ejected yet and always_eject_one_host is set.
	pct := 100 * float64(d.active+1) / float64(len(d.monitors))
	should := pct <= float64(d.cfg.MaxEjectionPercent)
	if d.cfg.AlwaysEjectOneHost {
		should = d.active == 0 || should
	}
	if !should {
		d.opts.Stats.EjectionsOverflow.Inc()
		return false
	}
	if t == Consecutive5xx || t == SuccessRate {
		d.opts.Stats.EjectionsTotal.Inc()
	}
	if !d.enforce(t) {
		slog.Debug("outlier detection: host detected, not enforced", "cluster", d.opts.Cluster, "host", m.host.Address(), "type", t.String())
		return false
	}
	d.active++
	d.opts.Stats.EjectionsActive.Inc()
	d.opts.Stats.EjectionsEnforcedTotal.Inc()
	d.opts.Stats.enforced(t).Inc()
	m.ejected = true
	m.ejectedFlag.Store(true)
	m.host.SetEjected(true)
	m.numEjections++
	m.lastEjection = now
	// "Generate random jitter so that not all hosts uneject at the same
	// time": random % (max_ejection_time_jitter_ms + 1) milliseconds.
	jitterMs := uint64(d.cfg.MaxEjectionTimeJitter / time.Millisecond)
	m.jitter = time.Duration(d.opts.Rand()%(jitterMs+1)) * time.Millisecond
	if time.Duration(m.backoff)*d.cfg.BaseEjectionTime < d.cfg.MaxEjectionTime+d.cfg.BaseEjectionTime {
		m.backoff++
	}
	slog.Info("outlier detection: host ejected", "cluster", d.opts.Cluster, "host", m.host.Address(), "type", t.String(), "num_ejections", m.numEjections)
	return true
}

// unejectLocked is Envoy's DetectorImpl::unejectHost: the host returns and
// its run counters restart, "to avoid re-ejection on very few new errors".
func (d *Detector) unejectLocked(m *Monitor, now time.Time) {
	d.active--
	d.opts.Stats.EjectionsActive.Dec()
	m.ejected = false
	m.ejectedFlag.Store(false)
	m.host.SetEjected(false)
	m.consecutive5xx.Store(0)
	m.consecutiveGatewayFailure.Store(0)
	m.consecutiveLocalOriginFailure.Store(0)
	m.lastUnejection = now
	slog.Info("outlier detection: host returned", "cluster", d.opts.Cluster, "host", m.host.Address())
}

// ejectionTime is how long m stays ejected: base_ejection_time times its
// back-off, capped by max_ejection_time, plus its jitter.
func (d *Detector) ejectionTime(m *Monitor) time.Duration {
	return min(time.Duration(m.backoff)*d.cfg.BaseEjectionTime, d.cfg.MaxEjectionTime) + m.jitter
}

// sweep is one interval (Envoy's DetectorImpl::onIntervalTimer); it
// reports whether any host was ejected or returned.
func (d *Detector) sweep() bool {
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return false
	}
	changed := false
	for _, m := range d.monitors {
		if m.ejected && d.ejectionTime(m) <= now.Sub(m.lastEjection) {
			d.unejectLocked(m, now)
			changed = true
		}
		for o := range m.sr {
			m.sr[o].rotate()
			m.sr[o].setRate(-1)
		}
	}
	if d.successRateEjectionsLocked(ExternalOrigin, now) {
		changed = true
	}
	if d.successRateEjectionsLocked(LocalOrigin, now) {
		changed = true
	}
	// "Decrement time backoff for all hosts which have not been ejected":
	// a host back for at least an interval loses one step per interval.
	for _, m := range d.monitors {
		if !m.ejected && !m.lastUnejection.IsZero() && now.Sub(m.lastUnejection) >= d.cfg.Interval && m.backoff != 0 {
			m.backoff--
		}
	}
	return changed
}

type hostRate struct {
	m    *Monitor
	rate float64
}

// successRateEjectionsLocked is Envoy's processSuccessRateEjections for one
// origin: success rate outliers (mean minus stdev_factor/1000 standard
// deviations) and failure percentage outliers, among hosts not ejected
// with enough requests in the interval just finished.
func (d *Detector) successRateEjectionsLocked(o Origin, now time.Time) bool {
	cfg := d.cfg
	d.sr[o] = SuccessRateStats{-1, -1}
	n := len(d.monitors)
	if n < int(cfg.SuccessRateMinimumHosts) && n < int(cfg.FailurePercentageMinimumHosts) {
		return false
	}
	var srHosts, fpHosts []hostRate
	sum := 0.0
	for _, m := range d.monitors {
		if m.ejected {
			continue
		}
		rate, volume, ok := m.sr[o].last()
		if !ok {
			continue
		}
		if volume >= uint64(min(cfg.SuccessRateRequestVolume, cfg.FailurePercentageRequestVolume)) {
			m.sr[o].setRate(rate)
		}
		if volume >= uint64(cfg.SuccessRateRequestVolume) {
			srHosts = append(srHosts, hostRate{m, rate})
			sum += rate
		}
		if volume >= uint64(cfg.FailurePercentageRequestVolume) {
			fpHosts = append(fpHosts, hostRate{m, rate})
		}
	}
	changed := false
	if len(srHosts) > 0 && len(srHosts) >= int(cfg.SuccessRateMinimumHosts) {
		d.sr[o] = successRateThreshold(sum, srHosts, float64(cfg.SuccessRateStdevFactor)/1000)
		t := SuccessRate
		if o == LocalOrigin {
			t = SuccessRateLocalOrigin
		}
		for _, h := range srHosts {
			if h.rate < d.sr[o].EjectionThreshold {
				d.opts.Stats.EjectionsSuccessRate.Inc()
				d.opts.Stats.detected(t).Inc()
				if d.ejectLocked(h.m, t, now) {
					changed = true
				}
			}
		}
	}
	if len(fpHosts) > 0 && len(fpHosts) >= int(cfg.FailurePercentageMinimumHosts) {
		t := FailurePercentage
		if o == LocalOrigin {
			t = FailurePercentageLocalOrigin
		}
		for _, h := range fpHosts {
			if 100-h.rate >= float64(cfg.FailurePercentageThreshold) {
				d.opts.Stats.detected(t).Inc()
				if d.ejectLocked(h.m, t, now) {
					changed = true
				}
			}
		}
	}
	return changed
}

// successRateThreshold is Envoy's successRateEjectionThreshold: the mean
// of the hosts' success rates and mean - factor*stdev (population
// standard deviation). E.g. {50, 100, 100, 100, 100} with factor 1.9:
// mean 90, stdev 20, threshold 52.
func successRateThreshold(sum float64, hosts []hostRate, factor float64) SuccessRateStats {
	mean := sum / float64(len(hosts))
	variance := 0.0
	for _, h := range hosts {
		variance += (h.rate - mean) * (h.rate - mean)
	}
	variance /= float64(len(hosts))
	return SuccessRateStats{Average: mean, EjectionThreshold: mean - factor*math.Sqrt(variance)}
}
