package router

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http1"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

// The forwarding engine's attempts: circuit breakers, per-try timeouts and
// retries (Envoy's router.cc and upstream_request.cc). A request without a
// retry policy takes the same path as before and pays one header scan for
// the x-envoy-* headers it might carry plus the max_requests counter.

const (
	detailsPerTryTimeout     = "upstream_per_try_timeout"
	detailsPerTryIdleTimeout = "upstream_per_try_idle_timeout"
)

// errOverflow is a circuit breaker refusing an attempt (Envoy's
// PoolFailureReason::Overflow).
var errOverflow = errors.New("router: circuit breaker overflow")

// timerKind is which deadline the upstream read deadline is set to.
type timerKind int

const (
	timerNone timerKind = iota
	timerGlobal
	timerPerTry
	timerPerTryIdle
)

// setupAttempts reads the route's timeouts and retry policy and the
// request's x-envoy-* overrides (Envoy's FilterUtility::finalTimeout and
// RetryStateImpl::create), after the route's header mutations.
func (f *Filter) setupAttempts(rt *Route, h *hhttp.Headers) {
	f.timeout = rt.Timeout()
	f.attempts = 1
	f.cb.StreamInfo().UpstreamRequestAttemptCount = 1
	p := rt.RetryPolicy()
	if p != nil {
		f.perTry, f.perTryIdle = p.perTryTimeout, p.perTryIdleTimeout
	}
	e := scanEnvoyHeaders(h)
	if e.any {
		if d, ok := parseMillis(e.rqTimeout); e.hasRqTimeout && ok {
			f.timeout = d
		}
		if d, ok := parseMillis(e.perTry); e.hasPerTry && ok {
			f.perTry = d
		}
	}
	// "See if there is a per try/retry timeout. If it's >= global we just
	// ignore it."
	if f.timeout != 0 && f.perTry >= f.timeout {
		f.perTry = 0
	}
	f.hedge = hedgeOnPerTryTimeout(rt, &e)
	if f.upgrade {
		// An upgrade is never retried or hedged: its request body is the
		// upgraded protocol, streamed as it comes (upgrade.go).
		f.perTry, f.perTryIdle, f.hedge = 0, 0, false
	} else if f.retry.init(p, &e, h) {
		f.retry.attempted(f.host)
		f.buffering = true
		f.bufLimit = f.cb.BufferLimit()
		if n, ok := rt.RetryBufferLimit(); ok && n < f.bufLimit {
			f.bufLimit = n
		}
	}
	f.attemptReq, f.attemptResp = rt.IncludeAttemptCount()
	if f.attemptReq {
		h.Set(hdrAttemptCount, "1")
	}
	if !f.cfg.SuppressEnvoyHeaders {
		f.setExpectedTimeout(0)
	}
}

// setExpectedTimeout sets x-envoy-expected-rq-timeout-ms: the per-try
// timeout, else the global one, bounded by what is left of the global one
// after elapsed (Envoy's FilterUtility::setTimeoutHeaders).
func (f *Filter) setExpectedTimeout(elapsed time.Duration) {
	expected := f.perTry
	if expected == 0 || f.hedge {
		// Envoy's setTimeoutHeaders: with hedging the upstream may use the
		// whole global timeout.
		expected = f.timeout
	}
	if expected <= 0 {
		return
	}
	if f.timeout > 0 {
		if elapsed >= f.timeout {
			expected = time.Millisecond
		} else {
			expected = min(expected, f.timeout-elapsed)
		}
	}
	f.expectedTO = true
	if expected == f.route.Timeout() {
		f.headers.Set(hdrExpectedTimeout, f.route.TimeoutHeader())
		return
	}
	f.headers.Set(hdrExpectedTimeout, strconv.FormatInt(expected.Milliseconds(), 10))
}

// requestDone records the end of the downstream request.
func (f *Filter) requestDone() {
	f.reqDone = true
	if f.perTry > 0 || f.retry.enabled() {
		f.reqDoneAt = time.Now()
	}
}

// bufferBody keeps a copy of data for retries; past the buffer limit it
// gives up retrying, as Envoy's decodeData: retry_or_shadow_abandoned.
func (f *Filter) bufferBody(data []byte) {
	if len(f.body)+len(data) > f.bufLimit {
		f.cluster.RetryStats().RetryOrShadowAbandoned.Inc()
		f.retry.release(f.rm)
		f.retry.on = 0
		f.buffering = false
		f.body, f.trailers = f.body[:0], nil
		f.abandonMirrors()
		return
	}
	f.body = append(f.body, data...)
}

// startAttempt opens an upstream stream and sends the request so far; when
// retry is set it first picks the host of a new attempt. Failures are
// retried as the policy allows; it reports false when the request was
// answered (or the downstream is gone) instead.
func (f *Filter) startAttempt(retry bool) bool {
	for {
		if retry && !f.nextAttempt() {
			return false
		}
		reason, err := f.open(false)
		if err == nil {
			if retry && f.reqDone {
				f.armTry()
			}
			return true
		}
		if errors.Is(err, upstream.ErrPoolOverflow) {
			// Envoy: no connection pool could be created
			// (upstream_cx_pool_overflow): no healthy upstream.
			f.noHealthyUpstream()
			return false
		}
		if f.timedOut(err) {
			f.upstreamReset(err)
			return false
		}
		switch f.maybeRetry(reason) {
		case retryGo:
			retry = true
			continue
		case retryAnswered:
			return false
		}
		f.attemptFailed(reason, err)
		return false
	}
}

// retryAfterReset handles an attempt that failed after it was opened (the
// upstream is closed): it starts a retry if the policy allows one and
// reports true when the new attempt is running; otherwise it answers.
func (f *Filter) retryAfterReset(reason resetReason, err error) bool {
	switch f.maybeRetry(reason) {
	case retryGo:
		return f.startAttempt(true)
	case retryAnswered:
		return false
	}
	f.attemptFailed(reason, err)
	return false
}

// attemptFailed answers for an attempt that will not be retried.
func (f *Filter) attemptFailed(reason resetReason, err error) {
	switch reason {
	case resetOverflow:
		f.overflowReply()
	case resetConnectFailure:
		f.connectFailed(err)
	default:
		f.upstreamReset(err)
	}
}

// retryResult is what maybeRetry decided.
type retryResult int

const (
	// retryNone: no retry; the caller answers for the failed attempt.
	retryNone retryResult = iota
	// retryGo: back-off done, start the next attempt.
	retryGo
	// retryAnswered: the request was answered (or the downstream left)
	// while backing off.
	retryAnswered
)

// maybeRetry is Envoy's Filter::maybeRetryReset for an attempt that ended
// without a response.
func (f *Filter) maybeRetry(reason resetReason) retryResult {
	if reason != resetOverflow && reason != resetLocal {
		// Envoy's onUpstreamReset: every reset but a circuit breaker
		// overflow counts against the host for outlier detection.
		f.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
	}
	if f.retry.policy == nil || f.cb.ResponseStarted() {
		return retryNone
	}
	would := f.retry.enabled() && f.retry.wouldRetryReset(reason, f.upstreamStarted)
	switch f.retry.shouldRetry(would, f.rm, f.cluster.RetryStats()) {
	case retryYes:
		if reason != resetOverflow {
			f.host.Stats.RqError.Add(1)
		}
		return f.backOff()
	case retryNoOverflow:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamOverflow)
	case retryNoLimitExceeded:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRetryLimitExceeded)
	}
	return retryNone
}

// retryResponse is Envoy's onUpstreamHeaders retry check: it reports true
// when the response was dropped and a retry started.
func (f *Filter) retryResponse(endStream bool) bool {
	if f.retry.policy == nil {
		return false
	}
	would := f.retry.enabled() && f.retry.wouldRetryHeaders(&f.resp)
	switch f.retry.shouldRetry(would, f.rm, f.cluster.RetryStats()) {
	case retryYes:
		code := f.resp.StatusCode()
		f.host.Stats.RqError.Add(1)
		f.cluster.RetryStats().RecordRetriedResponse(code)
		if endStream && f.reqDone {
			f.closeUpstream(nil)
		} else {
			f.closeUpstream(errRetry)
		}
		switch f.backOff() {
		case retryGo:
			return f.startAttempt(true)
		default:
			return false
		}
	case retryNoOverflow:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamOverflow)
	case retryNoLimitExceeded:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRetryLimitExceeded)
	}
	// The response goes downstream: no more retries (Envoy resets its
	// retry state here).
	f.retry.release(f.rm)
	f.retry.policy, f.retry.on = nil, 0
	return false
}

var errRetry = errors.New("router: response retried")

// backOff waits the retry back-off. The route timeout, once running, still
// bounds the request: if it passes while waiting, the request is answered
// 504 as Envoy's onResponseTimeout does with no attempt in flight.
func (f *Filter) backOff() retryResult {
	d := f.retry.backOff(rand.Uint64())
	timedOut := false
	if !f.deadline.IsZero() && f.reqDone {
		if left := time.Until(f.deadline); left <= d {
			d, timedOut = max(left, 0), true
		}
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-f.cb.Context().Done():
			t.Stop()
			return retryAnswered
		}
	}
	if timedOut {
		f.retry.release(f.rm)
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRequestTimeout)
		f.cb.SendLocalReply(504, bodyTimeout, detailsResponseTimeout, f.replyHeaders(false))
		return retryAnswered
	}
	return retryGo
}

// nextAttempt picks the host of a retry and prepares the request headers.
func (f *Filter) nextAttempt() bool {
	h := f.pickRetryHost()
	if h == nil {
		f.noHealthyUpstream()
		return false
	}
	f.host = h
	info := f.cb.StreamInfo()
	info.UpstreamHost = h.Address()
	f.retry.attempted(h)
	f.attempts++
	info.UpstreamRequestAttemptCount = f.attempts
	if f.attemptReq {
		f.headers.Set(hdrAttemptCount, attemptString(f.attempts))
	}
	if f.route.AutoHostRewrite() {
		f.headers.Set(hhttp.Authority, h.Hostname())
	}
	if f.expectedTO {
		var elapsed time.Duration
		if f.reqDone {
			elapsed = time.Since(f.reqDoneAt)
		}
		f.setExpectedTimeout(elapsed)
	}
	f.cluster.Stats.UpstreamRqTotal.Inc()
	h.Stats.RqTotal.Add(1)
	return true
}

// pickRetryHost chooses the host of a retry. With the previous_hosts
// predicate, Envoy's LoadBalancerBase::chooseHost picks up to
// host_selection_retry_max_attempts + 1 times, skipping hosts already
// attempted, and keeps the last pick if all were.
func (f *Filter) pickRetryHost() *upstream.Host {
	tries := int64(1)
	if f.retry.policy != nil && f.retry.policy.previousHosts {
		tries += f.retry.policy.hostSelectionAttempts
	}
	var h *upstream.Host
	for i := int64(0); i < tries; i++ {
		h = f.cluster.Pick(&f.lb)
		if h == nil || !f.retry.rejectHost(h) {
			return h
		}
	}
	return h
}

// armTry starts the current attempt's per-try timeout.
func (f *Filter) armTry() {
	if f.perTry > 0 {
		f.tryDeadline = time.Now().Add(f.perTry)
	} else {
		f.tryDeadline = time.Time{}
	}
}

// armDeadline sets the upstream read deadline to the earliest of the
// route timeout, the attempt's per-try timeout and the per-try idle timeout.
func (f *Filter) armDeadline() {
	var rd readDeadliner
	if f.h1 != nil {
		rd = f.h1.nc
	} else if d, ok := f.up.(readDeadliner); ok {
		// An HTTP/2 upstream stream: the codec resets the stream at the
		// deadline.
		rd = d
	} else {
		return
	}
	d, kind := f.deadline, timerGlobal
	if !f.tryDeadline.IsZero() && (d.IsZero() || f.tryDeadline.Before(d)) {
		d, kind = f.tryDeadline, timerPerTry
	}
	if f.perTryIdle > 0 {
		if idle := time.Now().Add(f.perTryIdle); d.IsZero() || idle.Before(d) {
			d, kind = idle, timerPerTryIdle
		}
	}
	if d.IsZero() {
		kind = timerNone
	}
	if kind == timerNone && f.timer == timerNone {
		return
	}
	f.timer = kind
	rd.SetReadDeadline(d)
}

// readDeadliner is what armDeadline sets: an HTTP/1.1 upstream connection
// or an HTTP/2 upstream stream.
type readDeadliner interface {
	SetReadDeadline(t time.Time) error
}

// tryTimedOut reports whether err is a per-try or per-try idle timeout
// (not the route timeout, nor an abort of the stream).
func (f *Filter) tryTimedOut(err error) bool {
	if f.timer != timerPerTry && f.timer != timerPerTryIdle {
		return false
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || f.timedOut(err) {
		return false
	}
	return f.cb.Context().Err() == nil
}

// perTryTimeout is Envoy's onPerTryTimeoutCommon: count the timeout,
// retry if allowed, else answer 504. It reports true when a retry started.
func (f *Filter) perTryTimeout() bool {
	details := detailsPerTryTimeout
	if f.timer == timerPerTryIdle {
		f.cluster.RetryStats().UpstreamRqPerTryIdleTimeout.Inc()
		details = detailsPerTryIdleTimeout
	} else {
		f.cluster.Stats.UpstreamRqPerTryTimeout.Inc()
	}
	f.host.Stats.RqTimeout.Add(1)
	f.host.RecordLocalOrigin(upstream.LocalOriginTimeout)
	if f.cb.ResponseStarted() {
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRequestTimeout)
		f.cb.SendLocalReply(504, bodyTimeout, details, nil)
		return false
	}
	switch f.maybeRetry(resetLocal) {
	case retryGo:
		return f.startAttempt(true)
	case retryAnswered:
		return false
	}
	f.cluster.RecordResponse(504)
	f.host.Stats.RqError.Add(1)
	f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRequestTimeout)
	f.cb.SendLocalReply(504, bodyTimeout, details, f.replyHeaders(false))
	return false
}

// acquireRequest takes one of the cluster's max_requests for the attempt;
// over the limit it counts upstream_rq_pending_overflow, as Envoy's
// ConnPoolImplBase::attachStreamToClient.
func (f *Filter) acquireRequest() bool {
	if !f.rm.Requests.TryAcquire() {
		f.rm.Overflow.UpstreamRqPendingOverflow.Inc()
		return false
	}
	f.holdsRq = true
	return true
}

// releaseRequest gives the attempt's request back.
func (f *Filter) releaseRequest() {
	if f.holdsRq {
		f.rm.Requests.Dec()
		f.holdsRq = false
	}
}

// newConn gets a connection for a request that found no idle one: the
// request is pending (max_pending_requests, upstream_rq_pending_total and
// _active) until a connection is dialed or one of the host's connections
// becomes idle. Over max_connections no connection is dialed
// (upstream_cx_overflow) unless the host has none, as Envoy's
// ConnPoolImplBase::tryCreateNewConnection. reused reports a connection
// taken from the idle pool while waiting.
func (f *Filter) newConn() (pc *h1Conn, reused bool, err error) {
	rm, cl, host := f.rm, f.cluster, f.host
	if !rm.PendingRequests.TryAcquire() {
		rm.Overflow.UpstreamRqPendingOverflow.Inc()
		return nil, false, errOverflow
	}
	cl.Stats.UpstreamRqPendingTotal.Inc()
	cl.Stats.UpstreamRqPendingActive.Inc()
	defer func() {
		rm.PendingRequests.Dec()
		cl.Stats.UpstreamRqPendingActive.Dec()
	}()
	ctx := f.cb.Context()
	if !f.canDial() {
		rm.Overflow.UpstreamCxOverflow.Inc()
		if pc, err = f.waitConn(ctx); pc != nil || err != nil {
			return pc, pc != nil, err
		}
	}
	nc, err := cl.DialTLS(ctx, host, f.tlsOpts)
	if err != nil {
		return nil, false, err
	}
	if cl.HTTPProtocol() != upstream.Auto {
		// auto_config counts once ALPN decided (adoptNegotiated).
		cl.Stats.UpstreamCxHTTP1Total.Inc()
	}
	return &h1Conn{nc: nc, cc: http1.NewClientConn(nc)}, false, nil
}

// waitConn waits, while the cluster is at max_connections and the host has
// a connection, for an idle connection of the host or a free connection
// slot. It returns (nil, nil) when a new connection may be dialed.
func (f *Filter) waitConn(ctx context.Context) (*h1Conn, error) {
	rm, host := f.rm, f.host
	var timeout <-chan time.Time
	if f.reqDone && !f.deadline.IsZero() {
		t := time.NewTimer(time.Until(f.deadline))
		defer t.Stop()
		timeout = t.C
	}
	for {
		ch, done := rm.WaitRelease()
		if pc, _ := host.Idle().Sub(f.poolKey).Get().(*h1Conn); pc != nil {
			done()
			return pc, nil
		}
		if f.canDial() || host.Stats.CxActive.Load() == 0 {
			done()
			return nil, nil
		}
		select {
		case <-ch:
			done()
		case <-ctx.Done():
			done()
			return nil, ctx.Err()
		case <-timeout:
			done()
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// resetReasonOf classifies an upstream I/O error.
func resetReasonOf(err error) resetReason {
	var se xhttp2.StreamError
	if errors.As(err, &se) && se.Code == xhttp2.ErrCodeRefusedStream {
		return resetRefusedStream
	}
	return resetConnectionTermination
}

// resetBody is Envoy's local reply body for a reset before the response:
// "... retried and the latest reset reason: ..." after retries.
func (f *Filter) resetBody(reason string) string {
	if f.attempts > 1 {
		return bodyResetPrefixRetried + reason
	}
	return bodyResetPrefix + reason
}

const bodyResetPrefixRetried = "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: "

// overflowReply answers a circuit breaker overflow: 503 with
// x-envoy-overloaded: true and the UO flag (Envoy's onUpstreamAbort with
// dropped set).
func (f *Filter) overflowReply() {
	f.cb.StreamInfo().SetFlag(streaminfo.UpstreamOverflow)
	f.cluster.RecordResponse(503)
	f.cb.SendLocalReply(503, f.resetBody("overflow"), detailsResetBeforeStart+"{overflow}", f.replyHeaders(true))
}

// noHealthyUpstream answers 503 "no healthy upstream" (UH).
func (f *Filter) noHealthyUpstream() {
	f.cb.StreamInfo().SetFlag(streaminfo.NoHealthyUpstream)
	f.cluster.RecordResponse(503)
	f.cb.SendLocalReply(503, bodyNoHealthyUpstream, detailsNoHealthy, f.replyHeaders(false))
}

// replyHeaders returns the modifier of a local reply the router sends once
// it tried upstream: x-envoy-overloaded for an overflow, and
// x-envoy-attempt-count with include_attempt_count_in_response. nil when
// there is nothing to add.
func (f *Filter) replyHeaders(overloaded bool) func(*hhttp.Headers) {
	overloaded = overloaded && !f.cfg.SuppressEnvoyHeaders
	if !overloaded && !f.attemptResp {
		return nil
	}
	attempts := f.attempts
	attemptResp := f.attemptResp
	return func(h *hhttp.Headers) {
		if overloaded {
			h.Set(hdrOverloaded, "true")
		}
		if attemptResp {
			h.Set(hdrAttemptCount, attemptString(attempts))
		}
	}
}

func attemptString(n uint32) string {
	if n == 1 {
		return "1"
	}
	return strconv.FormatUint(uint64(n), 10)
}
