package router

import (
	"math/rand/v2"
	"os"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

// HedgePolicy (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-hedgepolicy)
// on a virtual host or route (the route's replaces the virtual host's).
// Envoy implements only hedge_on_per_try_timeout: initial_requests and
// additional_request_chance are "[#not-implemented-hide:]" in its proto,
// so herald refuses them rather than accept settings that do nothing.
//
// With hedge_on_per_try_timeout (or x-envoy-hedge-on-per-try-timeout:
// true), as Envoy's router.cc onSoftPerTryTimeout: when an attempt's
// per-try timeout fires it is not reset; it counts as a timeout for
// outlier detection and, if the retry policy grants a retry, another
// attempt starts after the back-off while the first stays open. The first
// response that is not discarded wins and the other attempts are reset. A
// retriable response (per retry_on) arriving while other attempts are in
// flight is discarded; one from an attempt not yet hedged is retried if a
// retry is left. The route timeout bounds them all (504, upstream_rq_timeout
// counted per attempt in flight, as onResponseTimeout). Envoy counts no
// upstream_rq_per_try_timeout for a hedged timeout and has no hedge stats;
// the hedges count as retries (upstream_rq_retry, upstream_rq_total,
// upstream_rq_retry_success when a hedge wins). x-envoy-expected-rq-timeout-ms
// carries the route timeout, as the upstream may use all of it.
//
// herald's router otherwise reads one attempt on the stream's goroutine;
// while hedging, each attempt's response headers are read on a goroutine
// of its own and the stream goroutine waits for the first (hedgeHeaders);
// the body of the winner is then read as usual. Hedging applies while the
// response headers are awaited (Envoy's per-try timeout ends there too).

// buildHedgePolicy compiles hp (nil: no hedging) and reports what herald
// refuses; p is hp's path.
func buildHedgePolicy(hp *routev3.HedgePolicy, p string, errs *configerr.List) bool {
	if hp == nil {
		return false
	}
	*errs = append(*errs, configerr.CheckFields(hp, p, "hedge_on_per_try_timeout")...)
	return hp.GetHedgeOnPerTryTimeout()
}

// hedgeOnPerTryTimeout is Envoy's FilterUtility::finalHedgingParams: the
// route's policy, overridden by x-envoy-hedge-on-per-try-timeout "true" or
// "false".
func hedgeOnPerTryTimeout(rt *Route, e *envoyHeaders) bool {
	on := rt.ext.hedge
	if e.hasHedge {
		switch e.hedge {
		case "true":
			on = true
		case "false":
			on = false
		}
	}
	return on
}

// hedgeAttempt is one upstream attempt racing the others for the response
// headers. Its reader goroutine owns up and resp until it delivers the
// attempt on the results channel; the stream goroutine owns the rest.
type hedgeAttempt struct {
	up      hhttp.UpstreamStream
	h1      *h1Conn
	host    *upstream.Host
	holdsRq bool
	resp    hhttp.Headers
	end     bool
	err     error
	// soft: its per-try timeout fired and a hedge was considered (Envoy's
	// upstream_request.retried()).
	soft   bool
	closed bool
	// readDone is closed when the reader goroutine's ReadHeaders returned.
	readDone chan struct{}
}

// hedgeHeaders reads the response headers with hedge_on_per_try_timeout:
// Envoy's onSoftPerTryTimeout and the multi-request parts of
// onUpstreamHeaders/onUpstreamReset/onResponseTimeout. The attempt in f.up
// and every hedge run on their own reader goroutines; the first response
// that is not discarded wins, the others are reset. It returns with the
// winner installed in f (f.up, f.h1, f.host, f.resp) and ok set, or ok
// false when the request was answered or the downstream went away.
func (f *Filter) hedgeHeaders() (endStream, ok bool) {
	// Readers deliver on results while the loop runs; once it returns,
	// done releases the ones still blocked (losers being reset).
	results := make(chan *hedgeAttempt, 2)
	done := make(chan struct{})
	defer close(done)
	var inflight []*hedgeAttempt
	var newest *hedgeAttempt
	tryTimer := time.NewTimer(time.Hour)
	tryTimer.Stop()
	defer tryTimer.Stop()
	var tryC <-chan time.Time
	launch := func() {
		a := f.takeAttempt()
		inflight = append(inflight, a)
		newest = a
		f.readAttempt(a, results, done)
		tryTimer.Reset(f.perTry)
		tryC = tryTimer.C
	}
	closeAll := func(err error) {
		for _, a := range inflight {
			f.closeAttempt(a, err)
		}
		inflight = inflight[:0]
	}
	// timeoutAll is Envoy's onResponseTimeout: upstream_rq_timeout counts
	// every attempt in flight (upstreamReset counts the last one), all are
	// reset and the request is answered 504.
	timeoutAll := func(err error) {
		for _, a := range inflight[min(1, len(inflight)):] {
			f.cluster.Stats.UpstreamRqTimeout.Inc()
			a.host.Stats.RqTimeout.Add(1)
		}
		closeAll(err)
		f.retry.release(f.rm)
		f.upstreamReset(err)
	}
	remove := func(a *hedgeAttempt) {
		for i, x := range inflight {
			if x == a {
				inflight = append(inflight[:i], inflight[i+1:]...)
				return
			}
		}
	}
	var globalC <-chan time.Time
	if !f.deadline.IsZero() {
		g := time.NewTimer(time.Until(f.deadline))
		defer g.Stop()
		globalC = g.C
	}
	// pending retries wait out their back-off on backoffTimer.
	backoffTimer := time.NewTimer(time.Hour)
	backoffTimer.Stop()
	defer backoffTimer.Stop()
	var backoffC <-chan time.Time
	pending := 0
	grant := func() {
		pending++
		if backoffC == nil {
			backoffTimer.Reset(f.retry.backOff(rand.Uint64()))
			backoffC = backoffTimer.C
		}
	}
	ctx := f.cb.Context()
	launch()
	for {
		select {
		case <-ctx.Done():
			closeAll(errDownstream)
			return false, false
		case <-globalC:
			timeoutAll(os.ErrDeadlineExceeded)
			return false, false
		case <-tryC:
			tryC = nil
			f.softTimeout(newest, grant)
		case <-backoffC:
			backoffC = nil
			pending--
			if pending > 0 {
				backoffTimer.Reset(f.retry.backOff(rand.Uint64()))
				backoffC = backoffTimer.C
			}
			if !f.nextAttempt() {
				closeAll(errRetry)
				return false, false
			}
			reason, err := f.open(false)
			if err != nil {
				if reason != resetOverflow {
					f.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
				}
				if len(inflight) > 0 || pending > 0 {
					// Envoy's onUpstreamReset: other requests may still
					// answer.
					continue
				}
				f.attemptFailed(reason, err)
				return false, false
			}
			launch()
		case a := <-results:
			if a.closed {
				continue
			}
			remove(a)
			if a.err != nil {
				f.closeAttempt(a, a.err)
				f.host = a.host
				if f.timedOut(a.err) {
					inflight = append(inflight, a) // counted with the others
					timeoutAll(a.err)
					return false, false
				}
				reason := resetReasonOf(a.err)
				if len(inflight) > 0 || pending > 0 {
					if reason != resetOverflow {
						a.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
					}
					a.host.Stats.RqError.Add(1)
					continue
				}
				if !a.soft {
					switch f.maybeRetry(reason) {
					case retryGo:
						if !f.startAttempt(true) {
							return false, false
						}
						launch()
						continue
					case retryAnswered:
						return false, false
					}
				} else {
					a.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
				}
				f.attemptFailed(reason, a.err)
				return false, false
			}
			code := a.resp.StatusCode()
			a.host.RecordResult(code)
			if len(inflight) > 0 || pending > 0 {
				if f.retry.enabled() && f.retry.wouldRetryHeaders(&a.resp) {
					// Envoy: a retriable response while other requests
					// are in flight is discarded ("After per-try timeout,
					// an error response would be discarded"); one from an
					// attempt not yet hedged is retried if allowed.
					if !a.soft && f.retry.shouldRetry(true, f.rm, f.cluster.RetryStats()) == retryYes {
						f.cluster.RetryStats().RecordRetriedResponse(code)
						grant()
					}
					a.host.Stats.RqError.Add(1)
					f.closeAttempt(a, errRetry)
					continue
				}
			}
			closeAll(errRetry)
			f.installAttempt(a)
			return a.end, true
		}
	}
}

// softTimeout is Envoy's onSoftPerTryTimeout: the attempt stays open, counts
// as a timeout for outlier detection, and a hedge starts if the retry
// policy allows one. Envoy counts no upstream_rq_per_try_timeout here.
func (f *Filter) softTimeout(a *hedgeAttempt, grant func()) {
	if a == nil || a.closed || a.soft {
		return
	}
	a.soft = true
	a.host.RecordLocalOrigin(upstream.LocalOriginTimeout)
	if !f.retry.enabled() {
		return
	}
	switch f.retry.shouldRetry(true, f.rm, f.cluster.RetryStats()) {
	case retryYes:
		grant()
	case retryNoOverflow:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamOverflow)
	case retryNoLimitExceeded:
		f.cb.StreamInfo().SetFlag(streaminfo.UpstreamRetryLimitExceeded)
	}
}

// takeAttempt moves the upstream stream f holds into a hedgeAttempt. The
// aborter is unregistered first so Abort no longer touches f.h1; the
// stream context wakes the hedge loop instead.
func (f *Filter) takeAttempt() *hedgeAttempt {
	if f.aborting {
		f.cb.SetAborter(nil)
		f.aborting = false
	}
	a := &hedgeAttempt{up: f.up, h1: f.h1, host: f.host, holdsRq: f.holdsRq}
	f.up, f.h1, f.holdsRq = nil, nil, false
	return a
}

// readAttempt reads a's response headers on a goroutine, bounded by the
// route timeout only (the per-try timeout is the hedge loop's timer).
func (f *Filter) readAttempt(a *hedgeAttempt, results chan<- *hedgeAttempt, done <-chan struct{}) {
	if a.h1 != nil {
		a.h1.nc.SetReadDeadline(f.deadline)
	} else if rd, ok := a.up.(readDeadliner); ok {
		rd.SetReadDeadline(f.deadline)
	}
	a.readDone = make(chan struct{})
	go func() {
		a.end, a.err = a.up.ReadHeaders(&a.resp)
		close(a.readDone)
		select {
		case results <- a:
		case <-done:
		}
	}()
}

// closeAttempt resets an attempt that lost (or failed) and gives back its
// request; its reader goroutine, if still blocked, wakes on the close.
func (f *Filter) closeAttempt(a *hedgeAttempt, err error) {
	if a.closed {
		return
	}
	a.closed = true
	if a.holdsRq {
		f.rm.Requests.Dec()
		a.holdsRq = false
	}
	if a.h1 != nil {
		// Closing the socket is safe while the reader is blocked on it.
		a.h1.Close()
		return
	}
	if a.up == nil {
		return
	}
	if a.readDone != nil {
		// An HTTP/2 stream must not be closed while ReadHeaders runs: a
		// past read deadline cancels it, then the reader is waited for.
		if rd, ok := a.up.(readDeadliner); ok {
			rd.SetReadDeadline(time.Unix(1, 0))
			<-a.readDone
		}
	}
	a.up.Close(err)
}

// installAttempt makes the winning attempt f's upstream stream again, for
// the response body and the retry check that follow.
func (f *Filter) installAttempt(a *hedgeAttempt) {
	f.up, f.h1, f.host, f.holdsRq = a.up, a.h1, a.host, a.holdsRq
	a.holdsRq = false
	if a.soft {
		// Envoy never retries an attempt it already hedged
		// (upstream_request.retried()): its response goes downstream as
		// it is, and the hedge's retry is not judged a success.
		f.retry.release(f.rm)
		f.retry.policy, f.retry.on = nil, 0
	}
	f.resp.Fields = append(f.resp.Fields[:0], a.resp.Fields...)
	f.cb.StreamInfo().UpstreamHost = a.host.Address()
	f.tryDeadline = time.Time{}
	f.timer = timerGlobal
	if f.h1 != nil {
		f.cb.SetAborter(f)
		f.aborting = true
	}
}
