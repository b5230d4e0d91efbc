package router

import (
	"strconv"
	"strings"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/upstream"
)

// The request headers Envoy's router reads and removes before forwarding
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#http-headers-consumed).
// The connection manager strips them from external requests
// (internal/http/connmgr externalSanitized), so only trusted callers set them.
const (
	hdrRetryOn              = "x-envoy-retry-on"
	hdrRetryGrpcOn          = "x-envoy-retry-grpc-on"
	hdrMaxRetries           = "x-envoy-max-retries"
	hdrRetriableStatusCodes = "x-envoy-retriable-status-codes"
	hdrRetriableHeaderNames = "x-envoy-retriable-header-names"
	hdrUpstreamRqTimeout    = "x-envoy-upstream-rq-timeout-ms"
	hdrPerTryTimeout        = "x-envoy-upstream-rq-per-try-timeout-ms"
	hdrHedgeOnPerTryTimeout = "x-envoy-hedge-on-per-try-timeout"
	hdrAttemptCount         = "x-envoy-attempt-count"
	hdrRateLimited          = "x-envoy-ratelimited"
	hdrGrpcStatus           = "grpc-status"
)

// envoyHeaders are the x-envoy-* request headers the router consumes, as
// found by scanEnvoyHeaders.
type envoyHeaders struct {
	retryOn, retryGrpcOn, maxRetries, codes, names, rqTimeout, perTry  string
	hasRetryOn, hasRetryGrpcOn, hasMaxRetries, hasRqTimeout, hasPerTry bool
	any                                                                bool
	// hedge is x-envoy-hedge-on-per-try-timeout (hedge.go).
	hedge    string
	hasHedge bool
}

// scanEnvoyHeaders finds the consumed x-envoy-* headers in one pass over
// h and removes them, as Envoy does (RetryStateImpl::create,
// FilterUtility::finalTimeout). It allocates nothing when there are none.
func scanEnvoyHeaders(h *hhttp.Headers) envoyHeaders {
	var e envoyHeaders
	for i := range h.Fields {
		n := h.Fields[i].Name
		if len(n) < 9 || n[:8] != "x-envoy-" {
			continue
		}
		v := h.Fields[i].Value
		switch n {
		case hdrRetryOn:
			e.retryOn, e.hasRetryOn = v, true
		case hdrRetryGrpcOn:
			e.retryGrpcOn, e.hasRetryGrpcOn = v, true
		case hdrMaxRetries:
			e.maxRetries, e.hasMaxRetries = v, true
		case hdrRetriableStatusCodes:
			e.codes = v
		case hdrRetriableHeaderNames:
			e.names = v
		case hdrUpstreamRqTimeout:
			e.rqTimeout, e.hasRqTimeout = v, true
		case hdrPerTryTimeout:
			e.perTry, e.hasPerTry = v, true
		case hdrHedgeOnPerTryTimeout:
			e.hedge, e.hasHedge = v, true
		default:
			continue
		}
		e.any = true
	}
	if e.any {
		for _, n := range [...]string{hdrRetryOn, hdrRetryGrpcOn, hdrMaxRetries, hdrRetriableStatusCodes,
			hdrRetriableHeaderNames, hdrUpstreamRqTimeout, hdrPerTryTimeout, hdrHedgeOnPerTryTimeout} {
			h.Del(n)
		}
	}
	return e
}

// parseMillis parses a header timeout in milliseconds (absl::SimpleAtoi:
// an unsigned decimal).
func parseMillis(s string) (time.Duration, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 63)
	if err != nil || n > uint64(time.Duration(1<<63-1)/time.Millisecond) {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// resetReason is why an upstream attempt ended without a response (the
// Envoy StreamResetReasons herald produces).
type resetReason int

const (
	// resetConnectFailure: the connection could not be made.
	resetConnectFailure resetReason = iota + 1
	// resetConnectionTermination: the upstream closed or reset the
	// connection (or stream) before answering.
	resetConnectionTermination
	// resetLocal: herald reset the attempt (a per-try timeout).
	resetLocal
	// resetRefusedStream: an HTTP/2 upstream refused the stream.
	resetRefusedStream
	// resetOverflow: a circuit breaker refused the attempt.
	resetOverflow
)

// retryStatus is Envoy's RetryStatus.
type retryStatus int

const (
	retryNo retryStatus = iota
	retryYes
	retryNoOverflow
	retryNoLimitExceeded
)

// retryState is one request's retry bookkeeping (Envoy's RetryStateImpl).
// It lives inside the pooled Filter; the zero value is "no retries".
type retryState struct {
	policy    *RetryPolicy
	on        RetryOn
	remaining uint32
	// codes and names come from x-envoy-retriable-status-codes and
	// x-envoy-retriable-header-names; nil without them.
	codes []uint32
	names []string
	// next is the next back-off interval (Envoy's
	// JitteredExponentialBackOffStrategy), in ms.
	next, maxMs uint64
	// armed: a granted retry holds one of the cluster's retries until
	// the retried attempt is judged (Envoy's backoff_callback_).
	armed bool
	hosts []*upstream.Host
	hostA [4]*upstream.Host
}

// enabled reports whether the request may be retried at all.
func (s *retryState) enabled() bool { return s.on != 0 }

// init sets the state up from the route's policy (nil: none) and the
// request's headers, as RetryStateImpl::create and its constructor. It
// reports false, leaving s disabled, when no retry can happen.
func (s *retryState) init(p *RetryPolicy, e *envoyHeaders, h *hhttp.Headers) bool {
	if (p == nil || p.on == 0) && !e.hasRetryOn && !e.hasRetryGrpcOn {
		return false
	}
	if p == nil {
		p = defaultRetryPolicy
	}
	s.policy, s.on, s.remaining = p, p.on, p.numRetries
	base := uint64(p.baseInterval / time.Millisecond)
	s.next, s.maxMs = base, uint64(p.maxInterval/time.Millisecond)
	if e.hasRetryOn {
		on, _ := ParseRetryOn(e.retryOn, false)
		s.on |= on
	}
	if e.hasRetryGrpcOn {
		on, _ := ParseRetryOn(e.retryGrpcOn, true)
		s.on |= on
	}
	if len(p.retriableRequestHeaders) > 0 {
		// "If this route limits retries by request headers, make sure
		// there is a match."
		match := false
		for i := range p.retriableRequestHeaders {
			if p.retriableRequestHeaders[i].Matches(h) {
				match = true
				break
			}
		}
		if !match {
			s.on = 0
		}
	}
	if s.on != 0 && e.hasMaxRetries {
		if n, err := strconv.ParseUint(e.maxRetries, 10, 32); err == nil {
			s.remaining = uint32(n)
		}
	}
	for _, c := range splitTokens(e.codes) {
		if n, err := strconv.ParseUint(c, 10, 32); err == nil {
			s.codes = append(s.codes, uint32(n))
		}
	}
	s.names = splitTokens(e.names)
	s.hosts = s.hostA[:0]
	return s.on != 0
}

func splitTokens(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, strings.ToLower(t))
		}
	}
	return out
}

// wouldRetryHeaders is RetryStateImpl::wouldRetryFromHeaders.
func (s *retryState) wouldRetryHeaders(resp *hhttp.Headers) bool {
	if resp.Has(hdrRateLimited) {
		// "A response that contains the x-envoy-ratelimited header comes
		// from an upstream envoy. We retry these only when the
		// envoy-ratelimited policy is in effect."
		return s.on&RetryOnEnvoyRateLimited != 0
	}
	code := resp.StatusCode()
	if s.on&RetryOn5xx != 0 && code >= 500 && code < 600 {
		return true
	}
	if s.on&RetryOnGatewayError != 0 && code >= 502 && code <= 504 {
		return true
	}
	if s.on&RetryOnRetriable4xx != 0 && code == 409 {
		return true
	}
	if s.on&RetryOnRetriableStatusCodes != 0 {
		for _, c := range s.policy.statusCodes {
			if int(c) == code {
				return true
			}
		}
		for _, c := range s.codes {
			if int(c) == code {
				return true
			}
		}
	}
	if s.on&RetryOnRetriableHeaders != 0 {
		for i := range s.policy.retriableHeaders {
			if s.policy.retriableHeaders[i].Matches(resp) {
				return true
			}
		}
		for _, n := range s.names {
			if _, ok := matcher.HeaderValue(resp, n); ok {
				return true
			}
		}
	}
	if s.on&retryOnGrpc != 0 {
		if v, ok := resp.Lookup(hdrGrpcStatus); ok {
			switch strings.TrimSpace(v) {
			case "1":
				return s.on&RetryOnGrpcCancelled != 0
			case "4":
				return s.on&RetryOnGrpcDeadlineExceeded != 0
			case "8":
				return s.on&RetryOnGrpcResourceExhausted != 0
			case "13":
				return s.on&RetryOnGrpcInternal != 0
			case "14":
				return s.on&RetryOnGrpcUnavailable != 0
			}
		}
	}
	return false
}

// wouldRetryReset is RetryStateImpl::wouldRetryFromReset; started reports
// whether any byte of the request went upstream.
func (s *retryState) wouldRetryReset(r resetReason, started bool) bool {
	switch {
	case r == resetOverflow:
		// "we never retry if the reset reason is overflow"
		return false
	case r == resetConnectFailure && s.on&RetryOnConnectFailure != 0:
		return true
	case s.on&RetryOnResetBeforeRequest != 0 && !started:
		return true
	case s.on&(RetryOnReset|RetryOn5xx|RetryOnGatewayError) != 0:
		// "Currently we count an upstream reset as a "5xx" (since it will
		// result in one)."
		return true
	case s.on&RetryOnRefusedStream != 0 && r == resetRefusedStream:
		return true
	}
	return false
}

// shouldRetry is RetryStateImpl::shouldRetry: it judges the previous retry
// (upstream_rq_retry_success), then grants a retry if one is left and the
// cluster's retry circuit breaker allows it.
func (s *retryState) shouldRetry(would bool, rm *upstream.ResourceManager, st *upstream.RetryStats) retryStatus {
	if s.armed && !would {
		st.UpstreamRqRetrySuccess.Inc()
	}
	s.release(rm)
	if !would {
		return retryNo
	}
	if s.remaining == 0 {
		st.UpstreamRqRetryLimitExceeded.Inc()
		return retryNoLimitExceeded
	}
	s.remaining--
	if !rm.Retries.TryAcquire() {
		st.UpstreamRqRetryOverflow.Inc()
		return retryNoOverflow
	}
	s.armed = true
	st.UpstreamRqRetry.Inc()
	st.UpstreamRqRetryBackoffExponential.Inc()
	return retryYes
}

// release gives back a held retry (Envoy's resetRetry).
func (s *retryState) release(rm *upstream.ResourceManager) {
	if s.armed {
		rm.Retries.Dec()
		s.armed = false
	}
}

// backOff returns the next fully jittered exponential back-off, as
// Envoy's JitteredExponentialBackOffStrategy::nextBackOffMs: a random value
// in [0, interval) where the interval starts at the base, doubles per retry
// and is capped at the maximum.
func (s *retryState) backOff(random uint64) time.Duration {
	b := s.next
	if b == 0 {
		return 0
	}
	if s.next < s.maxMs/2 {
		s.next *= 2
	} else {
		s.next = s.maxMs
	}
	return time.Duration(random%b) * time.Millisecond
}

// attempted records a host an attempt went to (for previous_hosts).
func (s *retryState) attempted(h *upstream.Host) {
	if s.policy != nil && s.policy.previousHosts {
		s.hosts = append(s.hosts, h)
	}
}

// rejectHost is the previous_hosts retry host predicate: a host already
// attempted is rejected.
func (s *retryState) rejectHost(h *upstream.Host) bool {
	for _, p := range s.hosts {
		if p == h {
			return true
		}
	}
	return false
}
