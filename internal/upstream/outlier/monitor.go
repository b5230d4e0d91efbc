package outlier

import (
	"math"
	"sync/atomic"
	"time"
)

// Result is a request outcome the data path reports besides HTTP status
// codes (Envoy's Upstream::Outlier::Result, envoy/upstream/outlier_detection.h).
type Result int

const (
	// LocalOriginConnectSuccess: a connection to the host is ready for a
	// request that another protocol (HTTP) then runs over.
	LocalOriginConnectSuccess Result = iota
	// LocalOriginConnectSuccessFinal: a connection is established and
	// nothing runs on top of it (tcp_proxy).
	LocalOriginConnectSuccessFinal
	// LocalOriginTimeout: connecting or the request timed out.
	LocalOriginTimeout
	// LocalOriginConnectFailed: the connection failed or was reset.
	LocalOriginConnectFailed
	// ExtOriginRequestFailed: the host said it could not process the
	// request (non-HTTP protocols).
	ExtOriginRequestFailed
	// ExtOriginRequestSuccess: the request completed (non-HTTP protocols).
	ExtOriginRequestSuccess
)

// EjectionType is why a host was ejected (Envoy's
// data.cluster.v3.OutlierEjectionType; String returns its enum name).
type EjectionType int

const (
	Consecutive5xx EjectionType = iota
	ConsecutiveGatewayFailure
	SuccessRate
	ConsecutiveLocalOriginFailure
	SuccessRateLocalOrigin
	FailurePercentage
	FailurePercentageLocalOrigin
)

var ejectionTypeNames = [...]string{
	Consecutive5xx:                "CONSECUTIVE_5XX",
	ConsecutiveGatewayFailure:     "CONSECUTIVE_GATEWAY_FAILURE",
	SuccessRate:                   "SUCCESS_RATE",
	ConsecutiveLocalOriginFailure: "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
	SuccessRateLocalOrigin:        "SUCCESS_RATE_LOCAL_ORIGIN",
	FailurePercentage:             "FAILURE_PERCENTAGE",
	FailurePercentageLocalOrigin:  "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
}

func (t EjectionType) String() string {
	if t >= 0 && int(t) < len(ejectionTypeNames) {
		return ejectionTypeNames[t]
	}
	return "UNKNOWN"
}

// Origin selects one of a host's two success rate monitors.
type Origin int

const (
	// ExternalOrigin counts HTTP responses (and, without
	// split_external_local_origin_errors, local-origin failures as 503/504).
	ExternalOrigin Origin = iota
	// LocalOrigin counts connection outcomes when
	// split_external_local_origin_errors is set.
	LocalOrigin
)

// Host is the upstream host a Monitor watches. Hosts are compared by
// identity.
type Host interface {
	// Address is "ip:port", for logs.
	Address() string
	// SetEjected sets (true) or clears the host's /failed_outlier_check
	// flag, keeping its other flags.
	SetEjected(bool)
}

// bucket is one interval's request counts.
type bucket struct {
	success atomic.Uint64
	total   atomic.Uint64
}

// srMonitor is Envoy's SuccessRateMonitor: the data path writes to the
// current bucket; each interval the detector swaps buckets and reads the
// one just finished (SuccessRateAccumulator::updateCurrentWriter).
type srMonitor struct {
	cur     atomic.Pointer[bucket]
	buckets [2]bucket
	// rate is the last computed success rate as float64 bits; -1 when the
	// host had too few requests (admin /clusters).
	rate atomic.Uint64
}

func (s *srMonitor) init() {
	s.cur.Store(&s.buckets[0])
	s.rate.Store(math.Float64bits(-1))
}

// other returns the bucket that b is not.
func (s *srMonitor) other(b *bucket) *bucket {
	if b == &s.buckets[0] {
		return &s.buckets[1]
	}
	return &s.buckets[0]
}

// rotate clears the finished-before-last bucket and makes it current; the
// one just finished becomes readable through last.
func (s *srMonitor) rotate() {
	next := s.other(s.cur.Load())
	next.success.Store(0)
	next.total.Store(0)
	s.cur.Store(next)
}

// last returns the success rate (percent) and request volume of the bucket
// finished at the last rotate; ok is false without requests.
func (s *srMonitor) last() (rate float64, volume uint64, ok bool) {
	b := s.other(s.cur.Load())
	total := b.total.Load()
	if total == 0 {
		return 0, 0, false
	}
	return float64(b.success.Load()) * 100 / float64(total), total, true
}

func (s *srMonitor) setRate(v float64) { s.rate.Store(math.Float64bits(v)) }

// Monitor is one host's outlier state (Envoy's DetectorHostMonitorImpl).
// Its Put methods run on the request path: atomic adds and loads only,
// except when a consecutive error count reaches its threshold.
type Monitor struct {
	// Immutable after NewMonitor.
	d    *Detector
	host Host

	// Written by the data path.
	consecutive5xx                atomic.Uint32
	consecutiveGatewayFailure     atomic.Uint32
	consecutiveLocalOriginFailure atomic.Uint32
	sr                            [2]srMonitor // by Origin

	// Guarded by d.mu.
	tracked        bool // in the detector's host list
	ejected        bool
	numEjections   uint32
	backoff        uint32 // Envoy's eject_time_backoff_
	lastEjection   time.Time
	lastUnejection time.Time // zero: never un-ejected
	jitter         time.Duration

	// ejectedFlag mirrors ejected for lock-free readers.
	ejectedFlag atomic.Bool
}

// PutHTTPResponseCode reports an upstream response's status code (Envoy's
// putHttpResponseCode): 5xx extend the consecutive 5xx run and 502, 503 and
// 504 the gateway failure run; any other code ends both runs and counts as
// a success for the success rate.
func (m *Monitor) PutHTTPResponseCode(code int) {
	cfg := m.d.cfg
	b := m.sr[ExternalOrigin].cur.Load()
	b.total.Add(1)
	if code >= 500 && code < 600 {
		if code == 502 || code == 503 || code == 504 {
			if t := cfg.ConsecutiveGatewayFailure; t != 0 && m.consecutiveGatewayFailure.Add(1) == t {
				m.d.onConsecutiveError(m, ConsecutiveGatewayFailure)
			}
		} else {
			reset(&m.consecutiveGatewayFailure)
		}
		if t := cfg.Consecutive5xx; t != 0 && m.consecutive5xx.Add(1) == t {
			m.d.onConsecutiveError(m, Consecutive5xx)
		}
		return
	}
	b.success.Add(1)
	reset(&m.consecutive5xx)
	reset(&m.consecutiveGatewayFailure)
}

// PutResult reports a non-HTTP outcome. Without
// split_external_local_origin_errors, Envoy maps it to an HTTP code
// (resultToHttpCode): timeouts are 504, connect failures 503, success 200,
// LocalOriginConnectSuccess nothing (the HTTP response that follows
// counts). With the split, connection outcomes feed the local-origin
// counters and success rate.
func (m *Monitor) PutResult(r Result) {
	if !m.d.cfg.SplitExternalLocalOriginErrors {
		switch r {
		case ExtOriginRequestSuccess, LocalOriginConnectSuccessFinal:
			m.PutHTTPResponseCode(200)
		case LocalOriginTimeout:
			m.PutHTTPResponseCode(504)
		case LocalOriginConnectFailed:
			m.PutHTTPResponseCode(503)
		case ExtOriginRequestFailed:
			m.PutHTTPResponseCode(500)
		case LocalOriginConnectSuccess:
		}
		return
	}
	// putResultWithLocalExternalSplit.
	switch r {
	case LocalOriginConnectSuccess, LocalOriginConnectSuccessFinal:
		m.localOriginNoFailure()
	case LocalOriginTimeout, LocalOriginConnectFailed:
		m.localOriginFailure()
	case ExtOriginRequestFailed:
		m.PutHTTPResponseCode(503)
	case ExtOriginRequestSuccess:
		m.PutHTTPResponseCode(200)
		m.localOriginNoFailure()
	}
}

func (m *Monitor) localOriginFailure() {
	m.sr[LocalOrigin].cur.Load().total.Add(1)
	if t := m.d.cfg.ConsecutiveLocalOriginFailure; t != 0 && m.consecutiveLocalOriginFailure.Add(1) == t {
		m.d.onConsecutiveError(m, ConsecutiveLocalOriginFailure)
	}
}

func (m *Monitor) localOriginNoFailure() {
	b := m.sr[LocalOrigin].cur.Load()
	b.total.Add(1)
	b.success.Add(1)
	reset(&m.consecutiveLocalOriginFailure)
}

// reset zeroes a run counter, skipping the store (and its cache line
// write) when it is already zero, the common case.
func reset(c *atomic.Uint32) {
	if c.Load() != 0 {
		c.Store(0)
	}
}

// SuccessRate returns the host's success rate in percent from the last
// interval, or -1 when it had too few requests or the detector has not run
// (admin /clusters success_rate and local_origin_success_rate).
func (m *Monitor) SuccessRate(o Origin) float64 {
	return math.Float64frombits(m.sr[o].rate.Load())
}

// Ejected reports whether outlier detection has ejected the host.
func (m *Monitor) Ejected() bool { return m.ejectedFlag.Load() }

// NumEjections returns how often the host was ejected.
func (m *Monitor) NumEjections() uint32 {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	return m.numEjections
}
