package healthcheck

import "time"

// Flags are a host's active health checking flags: the subset of Envoy's
// Host::HealthFlag this package sets. A Target stores them.
type Flags uint32

const (
	// FailedActiveHC: the host failed active health checking
	// (/failed_active_hc). New hosts start with it.
	FailedActiveHC Flags = 1 << iota
	// ActiveHCTimeout: the host is failed and its last check timed out
	// (/active_hc_timeout).
	ActiveHCTimeout
	// ExcludedViaImmediateHCFail: the host answered with
	// x-envoy-immediate-health-check-fail (/excluded_via_immediate_hc_fail).
	ExcludedViaImmediateHCFail
)

// Outcome is how one check ended, mapped onto Envoy's
// HealthCheckFailureType (ACTIVE, NETWORK, NETWORK_TIMEOUT, PASSIVE).
type Outcome int

const (
	// Success: the check passed.
	Success Outcome = iota
	// Failure: an ACTIVE failure that is not retriable (an unexpected HTTP
	// status, a payload mismatch, a gRPC status other than SERVING). It
	// makes a healthy host unhealthy at once, ignoring unhealthy_threshold.
	Failure
	// RetriableFailure: an ACTIVE failure with a status in
	// retriable_statuses; it counts towards unhealthy_threshold.
	RetriableFailure
	// NetworkFailure: connect failure, reset or protocol error (NETWORK);
	// it counts towards unhealthy_threshold.
	NetworkFailure
	// TimeoutFailure: the check did not finish within timeout
	// (NETWORK_TIMEOUT); it counts towards unhealthy_threshold and marks a
	// failed host /active_hc_timeout.
	TimeoutFailure
	// PassiveFailure: the data path saw x-envoy-immediate-health-check-fail
	// (PASSIVE); immediate, like Failure.
	PassiveFailure
)

func (o Outcome) String() string {
	return [...]string{"success", "failure", "retriable failure", "network failure", "timeout", "passive failure"}[o]
}

// Result is one check's outcome.
type Result struct {
	Outcome Outcome
	// ImmediateFail: the failing HTTP response carried
	// x-envoy-immediate-health-check-fail; the host is also excluded.
	ImmediateFail bool
	// Detail says why, for logs ("status 503", "connection refused").
	Detail string

	err error // the transport error of a NetworkFailure
}

// transition is Envoy's HealthTransition.
type transition int

const (
	unchanged     transition = iota
	changePending            // a threshold is being counted towards
	changed                  // the host flipped
)

// counters are one host's state machine (Envoy's ActiveHealthCheckSession
// num_healthy_, num_unhealthy_, first_check_).
type counters struct {
	numHealthy   uint32
	numUnhealthy uint32
	checked      bool // a result was recorded (not first_check_)
}

// step applies one result to a host's flags, following
// HealthCheckerImplBase::ActiveHealthCheckSession::handleSuccess and
// setUnhealthy (source/extensions/health_checkers/common/health_checker_base_impl.cc):
//   - success resets the failure count; a failed host becomes healthy on
//     its very first check or after healthy_threshold consecutive
//     successes, clearing /active_hc_timeout and
//     /excluded_via_immediate_hc_fail with /failed_active_hc;
//   - failure resets the success count; a healthy host becomes failed at
//     once on a non-network, non-retriable failure, else after
//     unhealthy_threshold consecutive failures; a timeout on a failed host
//     sets /active_hc_timeout, any other failure clears it.
func step(f Flags, st *counters, res Result, healthyThreshold, unhealthyThreshold uint32) (Flags, transition) {
	tr := unchanged
	first := !st.checked
	st.checked = true
	if res.Outcome == Success {
		st.numUnhealthy = 0
		if f&FailedActiveHC != 0 {
			st.numHealthy++
			if first || st.numHealthy >= healthyThreshold {
				f &^= FailedActiveHC | ActiveHCTimeout | ExcludedViaImmediateHCFail
				st.numHealthy = 0
				tr = changed
			} else {
				tr = changePending
			}
		}
		return f, tr
	}
	st.numHealthy = 0
	if res.ImmediateFail {
		f |= ExcludedViaImmediateHCFail
	}
	if f&FailedActiveHC == 0 {
		network := res.Outcome == NetworkFailure || res.Outcome == TimeoutFailure
		retriable := res.Outcome == RetriableFailure
		st.numUnhealthy++
		if (!network && !retriable) || st.numUnhealthy >= unhealthyThreshold {
			f |= FailedActiveHC
			st.numUnhealthy = 0
			tr = changed
		} else {
			tr = changePending
		}
	}
	if res.Outcome == TimeoutFailure && f&FailedActiveHC != 0 {
		f |= ActiveHCTimeout
	} else {
		f &^= ActiveHCTimeout
	}
	return f, tr
}

// nextInterval is HealthCheckerImplBase::interval: with traffic, a failed
// check waits unhealthy_edge_interval while a change is pending, else
// unhealthy_interval; a passed check waits healthy_edge_interval while a
// change is pending, else interval. Without traffic it waits
// no_traffic_healthy_interval after a pass that changed nothing pending,
// else no_traffic_interval. Jitter is added as intervalWithJitter does.
func (c *Config) nextInterval(passed bool, tr transition, traffic bool, rnd func() uint64) time.Duration {
	var base time.Duration
	switch {
	case !traffic && passed && tr != changePending:
		base = c.NoTrafficHealthyInterval
	case !traffic:
		base = c.NoTrafficInterval
	case !passed && tr == changePending:
		base = c.UnhealthyEdgeInterval
	case !passed:
		base = c.UnhealthyInterval
	case tr == changePending:
		base = c.HealthyEdgeInterval
	default:
		base = c.Interval
	}
	return c.withJitter(base.Milliseconds(), c.IntervalJitter, rnd)
}

// withJitter is HealthCheckerImplBase::intervalWithJitter, in milliseconds:
// base plus rand % (interval_jitter_percent of base) plus rand % jitter,
// at least 1 ms.
func (c *Config) withJitter(baseMS int64, jitter time.Duration, rnd func() uint64) time.Duration {
	ms := uint64(max(baseMS, 0))
	if mod := uint64(c.IntervalJitterPercent) * ms / 100; mod > 0 {
		ms += rnd() % mod
	}
	if j := uint64(jitter.Milliseconds()); j > 0 {
		ms += rnd() % j
	}
	return time.Duration(max(ms, 1)) * time.Millisecond
}

// initialDelay is onInitialInterval: at once without initial_jitter, else
// intervalWithJitter(0, initial_jitter).
func (c *Config) initialDelay(rnd func() uint64) time.Duration {
	if c.InitialJitter <= 0 {
		return 0
	}
	return c.withJitter(0, c.InitialJitter, rnd)
}
