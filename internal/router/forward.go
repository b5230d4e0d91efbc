package router

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http2"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Envoy's router local-reply bodies and response_code_details
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/response_code_details).
const (
	bodyNoHealthyUpstream = "no healthy upstream"
	bodyTimeout           = "upstream request timeout"
	bodyResetPrefix       = "upstream connect error or disconnect/reset before headers. reset reason: "

	detailsRouteNotFound    = "route_not_found"
	detailsClusterNotFound  = "cluster_not_found"
	detailsNoHealthy        = "no_healthy_upstream"
	detailsDirectResponse   = "direct_response"
	detailsViaUpstream      = "via_upstream"
	detailsResponseTimeout  = "upstream_response_timeout"
	detailsResetBeforeStart = "upstream_reset_before_response_started"
	detailsResetAfterStart  = "upstream_reset_after_response_started"

	hdrUpstreamServiceTime = "x-envoy-upstream-service-time"
	// hdrImmediateHealthCheckFail in an upstream response fails the host's
	// active health check at once.
	hdrImmediateHealthCheckFail = "x-envoy-immediate-health-check-fail"
	hdrExpectedTimeout          = "x-envoy-expected-rq-timeout-ms"
	hdrOverloaded               = "x-envoy-overloaded"
)

// FilterConfig is the built envoy.filters.http.router: shared by every
// stream of a connection manager. Immutable.
type FilterConfig struct {
	Clusters *upstream.Manager
	// SuppressEnvoyHeaders: don't add x-envoy-* headers (Envoy default false).
	SuppressEnvoyHeaders bool
	// HTTP/2 and HTTP/3 streams go on the picked host's pools
	// (upstream.Host.HTTP2, HTTP3), owned by its cluster: a listener or
	// route update builds a new FilterConfig and leaves them alone.
	noRoute *stats.Counter
	shadow  *shadowClients // request mirroring (mirror.go)
}

// NewFilterConfig builds a router config. statPrefix is "http.<prefix>.".
func NewFilterConfig(clusters *upstream.Manager, store *stats.Store, statPrefix string, suppress bool) *FilterConfig {
	return &FilterConfig{
		Clusters:             clusters,
		SuppressEnvoyHeaders: suppress,
		noRoute:              store.Counter(statPrefix + "no_route"),
		shadow:               newShadowClients(clusters, store),
	}
}

// NewFilter is the per-stream constructor (httpfilter.Factory).
func (c *FilterConfig) NewFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := filterPool.Get().(*Filter)
	f.cfg = c
	f.cb = cb
	return f
}

var filterPool = sync.Pool{New: func() any { return &Filter{} }}

// Filter forwards one stream upstream (Envoy's router filter). It runs on
// the stream's goroutine: request bytes are written upstream as they come;
// once the request ends the response is read and encoded downstream on the
// same goroutine — no hand-off between the two halves. A request with a
// body sent to an HTTP/2 upstream is the exception: its response is read on
// a goroutine of its own while the request streams (duplex.go).
type Filter struct {
	cfg *FilterConfig
	cb  httpfilter.Callbacks

	route   *Route
	wc      *WeightedCluster
	cluster *upstream.Cluster
	host    *upstream.Host
	headers *hhttp.Headers

	up       hhttp.UpstreamStream
	h1       *h1Conn // set for HTTP/1.1 upstreams
	reused   bool
	sentBody bool
	start    time.Time
	deadline time.Time
	aborting bool // registered as the stream's aborter
	// headersOnly: the request had no body (safe to send again).
	headersOnly bool
	lb          upstream.LBContext
	// setCookies are Set-Cookie values of cookies the hash policy
	// generated, added to the upstream response.
	setCookies []string
	resp       hhttp.Headers
	active     bool

	// Circuit breakers and retries (retry_attempt.go).
	rm *upstream.ResourceManager
	// holdsRq: the current attempt holds one of the cluster's max_requests.
	holdsRq bool
	retry   retryState
	// timeout is the route timeout, or x-envoy-upstream-rq-timeout-ms;
	// perTry and perTryIdle the retry policy's per-try timeouts (or
	// x-envoy-upstream-rq-per-try-timeout-ms); 0 disables each.
	timeout, perTry, perTryIdle time.Duration
	// tryDeadline is the current attempt's per-try deadline; timer says
	// which deadline the upstream read deadline was last set to.
	tryDeadline time.Time
	timer       timerKind
	// reqDone: the downstream request has ended; reqDoneAt is when.
	reqDone   bool
	reqDoneAt time.Time
	// upstreamStarted: some request byte went upstream (Envoy's
	// upstream_request_started_, for reset-before-request).
	upstreamStarted bool
	// buffering: the request body is kept in body (and trailers) to
	// replay it on a retry, up to bufLimit bytes.
	buffering   bool
	body        []byte
	trailers    *hhttp.Headers
	bufLimit    int
	attempts    uint32
	attemptReq  bool // include_request_attempt_count
	attemptResp bool // include_attempt_count_in_response
	expectedTO  bool // x-envoy-expected-rq-timeout-ms is being sent
	mirror      mirrorState
	hedge       bool    // hedge_on_per_try_timeout (hedge.go)
	dx          *duplex // full-duplex exchange (duplex.go)
	// upgrade: the request is an upgrade the connection manager allowed
	// (upgrade.go): no retries, hedging or mirrors, and both directions
	// stream at once, each ending on its own once the upstream answered 101.
	upgrade bool
	// terminate: a CONNECT the route terminates (tcp_upstream.go); tcp is
	// its connection once open.
	terminate bool
	tcp       net.Conn
	// tlsOpts are the auto_sni/auto_san_validation options of the request
	// and poolKey their pool key ("" without them: the default pools).
	tlsOpts upstream.TLSOptions
	poolKey string
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
	_ httpfilter.Aborter       = (*Filter)(nil)
	_ HeaderValueContext       = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	info := f.cb.StreamInfo()
	rt, _ := f.cb.Route().(*Route)
	if rt == nil {
		f.cfg.noRoute.Inc()
		info.SetFlag(streaminfo.NoRouteFound)
		f.cb.SendLocalReply(404, "", detailsRouteNotFound, nil)
		return httpfilter.Stop
	}
	f.route = rt
	info.RouteName = rt.Name()
	switch rt.Kind() {
	case ActionDirectResponse:
		f.cb.SendLocalReply(rt.Status(), rt.DirectResponseBody(), detailsDirectResponse, func(rh *hhttp.Headers) {
			rt.ApplyResponseHeaders(rh, nil, f)
		})
		return httpfilter.Stop
	case ActionRedirect:
		loc := rt.RedirectLocation(h)
		f.cb.SendLocalReply(rt.Status(), "", detailsDirectResponse, func(rh *hhttp.Headers) {
			rh.Set("location", loc)
			rt.ApplyResponseHeaders(rh, nil, f)
		})
		return httpfilter.Stop
	}

	name, wc := rt.PickCluster(h, rand.Uint64())
	f.wc = wc
	info.UpstreamCluster = name
	cl := f.cfg.Clusters.Cluster(name)
	if cl == nil {
		info.SetFlag(streaminfo.NoClusterFound)
		f.cb.SendLocalReply(rt.ClusterNotFoundCode(), "", detailsClusterNotFound, nil)
		return httpfilter.Stop
	}
	f.cluster = cl
	f.lb, f.setCookies = upstream.LBContext{}, nil
	if cl.UsesHash() {
		// Envoy computes the route's hash only for load balancers that
		// use it, so round robin never generates a cookie.
		f.lb.Hash, f.lb.HasHash, f.setCookies = rt.HashPolicy().Hash(h, Downstream{
			Remote: f.cb.DownstreamRemoteAddress(),
			Local:  f.cb.StreamInfo().DownstreamLocalAddress,
		})
	}
	host := cl.Pick(&f.lb)
	if host == nil {
		info.SetFlag(streaminfo.NoHealthyUpstream)
		f.cb.SendLocalReply(503, bodyNoHealthyUpstream, detailsNoHealthy, nil)
		return httpfilter.Stop
	}
	f.host = host
	info.UpstreamHost = host.Address()

	rt.FinalizeRequestHeaders(h, wc, f, !f.cfg.SuppressEnvoyHeaders)
	if rt.AutoHostRewrite() {
		h.Set(hhttp.Authority, host.Hostname())
	}
	f.tlsOpts, f.poolKey = upstream.TLSOptions{}, ""
	if cl.AutoSNI() {
		// After the host rewrites, as Envoy's router.
		f.tlsOpts = cl.TLSOptionsFor(h.Authority(), headerOrEmpty(h, cl.AutoSNIHeader()))
		f.poolKey = f.tlsOpts.PoolKey()
	}
	f.headers = h
	f.rm = cl.Resources(rt.Priority())
	f.upgrade = !endStream && (isUpgradeRequest(h) || h.Method() == methodConnect)
	f.terminate = f.upgrade && rt.ConnectTerminate() && h.Method() == methodConnect
	f.setupAttempts(rt, h)
	if !f.upgrade {
		f.selectMirrors(rt, h, endStream)
	}
	if d, ok := rt.IdleTimeout(); ok {
		// Envoy: the route's idle_timeout overrides stream_idle_timeout.
		f.cb.SetIdleTimeout(d)
	}
	f.start = time.Now()
	cl.Stats.UpstreamRqTotal.Inc()
	cl.Stats.UpstreamRqActive.Inc()
	f.active = true
	host.Stats.RqTotal.Add(1)

	f.headersOnly = endStream
	if endStream {
		f.requestDone()
	}
	if f.timeout > 0 {
		// Bounds waiting for a connection of a headers-only request;
		// finish sets the response deadline.
		f.deadline = f.start.Add(f.timeout)
	}
	if !f.startAttempt(false) {
		return httpfilter.Stop
	}
	if endStream {
		f.finish()
	} else {
		f.startDuplex()
	}
	return httpfilter.Stop
}

// open gets an upstream stream for f.host and sends the request as far as
// it has come, replacing once a reused keep-alive connection that turns
// out to be closed (nothing was sent, so this is safe for any method and is
// not a retry). On failure the upstream is closed and the reason returned.
func (f *Filter) open(fresh bool) (resetReason, error) {
	for attempt := 0; ; attempt++ {
		err := f.connect(fresh || attempt > 0)
		if err != nil {
			if errors.Is(err, errOverflow) {
				return resetOverflow, err
			}
			return resetConnectFailure, err
		}
		// Envoy: UpstreamRequest::onPoolReady reports the connection to
		// outlier detection.
		f.host.RecordLocalOrigin(upstream.LocalOriginConnectSuccess)
		if err = f.sendRequest(); err == nil {
			return 0, nil
		}
		stale := f.reused && attempt == 0 && !fresh
		f.closeUpstream(err)
		if !stale {
			return resetReasonOf(err), err
		}
	}
}

// sendRequest writes what the request has so far to the new upstream
// stream: headers, the buffered body and trailers (a retry replays them),
// with end of stream when the request is complete.
func (f *Filter) sendRequest() error {
	bodyDone := f.reqDone && f.trailers == nil
	if err := f.up.WriteHeaders(f.headers, bodyDone && len(f.body) == 0); err != nil {
		return err
	}
	f.upstreamStarted = true
	if len(f.body) > 0 {
		if err := f.up.WriteData(f.body, bodyDone); err != nil {
			return err
		}
	}
	if f.reqDone && f.trailers != nil {
		return f.up.WriteTrailers(f.trailers)
	}
	return nil
}

// connect takes a pooled connection or dials one (always dials when
// fresh), within the cluster's circuit breakers: max_requests for the
// stream, and for a new HTTP/1.1 connection max_pending_requests and
// max_connections (newConn).
func (f *Filter) connect(fresh bool) error {
	cl, host := f.cluster, f.host
	if f.terminate {
		return f.dialTCP()
	}
	if done, err := f.connectByProtocol(); done { // HTTP/2, HTTP/3, auto_config (upstream_protocol.go)
		return err
	}
	var pc *h1Conn
	if !fresh {
		pc, _ = host.Idle().Sub(f.poolKey).Get().(*h1Conn)
	}
	f.reused = pc != nil
	if pc == nil {
		var err error
		if pc, f.reused, err = f.newConn(); err != nil {
			return err
		}
		if done, err := f.adoptNegotiated(pc); done { // ALPN chose h2
			return err
		}
	}
	if !f.acquireRequest() {
		f.h1 = pc
		f.up = pc.cc
		f.closeUpstream(nil)
		return errOverflow
	}
	f.h1 = pc
	f.h1.cc.Reset()
	f.up = f.h1.cc
	// max_requests_per_connection: the request that uses up the
	// connection counts upstream_cx_max_requests as it attaches and the
	// connection closes after it (Envoy's attachStreamToClient, then
	// draining).
	pc.requests++
	if max := cl.MaxRequestsPerConnection(); max > 0 && pc.requests == max {
		cl.Stats.UpstreamCxMaxRequests.Inc()
	}
	// Downstream failures and stream timeouts wake blocked upstream I/O
	// through Abort.
	f.cb.SetAborter(f)
	f.aborting = true
	return nil
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData(data []byte, endStream bool) httpfilter.Status {
	if f.dx != nil {
		f.duplexData(data, endStream)
		return httpfilter.Stop
	}
	if f.up == nil {
		return httpfilter.Stop
	}
	if f.buffering {
		f.bufferBody(data)
	}
	if endStream {
		f.requestDone()
	}
	if len(data) > 0 || endStream {
		f.sentBody = true
		if err := f.up.WriteData(data, endStream); err != nil {
			if f.earlyResponse(err) {
				return httpfilter.Stop
			}
			f.closeUpstream(err)
			if f.cb.Context().Err() != nil {
				f.upstreamReset(err)
				return httpfilter.Stop
			}
			if !f.retryAfterReset(resetReasonOf(err), err) {
				return httpfilter.Stop
			}
		}
	}
	if endStream {
		f.finish()
	}
	return httpfilter.Stop
}

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(t *hhttp.Headers) httpfilter.Status {
	if f.dx != nil {
		f.duplexTrailers(t)
		return httpfilter.Stop
	}
	if f.up == nil {
		return httpfilter.Stop
	}
	if f.buffering {
		f.trailers = t.Clone()
	}
	f.requestDone()
	if err := f.up.WriteTrailers(t); err != nil {
		if f.earlyResponse(err) {
			return httpfilter.Stop
		}
		f.closeUpstream(err)
		if !f.retryAfterReset(resetReasonOf(err), err) {
			return httpfilter.Stop
		}
	}
	f.finish()
	return httpfilter.Stop
}

// finish reads the response and encodes it downstream. The route timeout
// runs from the end of the request to the end of the response, as Envoy's;
// a per-try timeout from the end of the request (or the start of a retry)
// to the response headers.
func (f *Filter) finish() {
	if f.mirror.targets != nil && f.reqDone {
		// Envoy shadows in onRequestComplete: only a complete request.
		f.sendMirrors()
	}
	if f.timeout > 0 {
		f.deadline = time.Now().Add(f.timeout)
	} else {
		f.deadline = time.Time{}
	}
	f.armTry()
	var endStream bool
	var err error
	for first := true; ; first = false {
		if !first && !f.reqDone {
			// A retry of an early response (earlyResponse) started before
			// the request ended: the decode side goes on sending the
			// request to the new attempt and calls finish again when the
			// request is complete. Reading it here would wait for a
			// request body this goroutine is the one to send.
			return
		}
		if f.hedge && f.perTry > 0 && f.reqDone {
			// Attempts race on their own goroutines (hedge.go); the
			// per-try timer runs once the request is complete, as Envoy's.
			var ok bool
			if endStream, ok = f.hedgeHeaders(); !ok {
				return
			}
			if f.retryResponse(endStream) {
				continue
			}
			break
		}
		f.armDeadline()
		f.resp.Reset()
		endStream, err = f.up.ReadHeaders(&f.resp)
		if err != nil && f.staleConn(err) {
			// A pooled keep-alive connection the upstream had closed:
			// nothing of the response arrived and the request had no
			// body, so it is sent again once on a new connection. Envoy
			// notices such closes on idle connections before reusing
			// them; herald learns it here.
			f.closeUpstream(err)
			if reason, oerr := f.open(true); oerr != nil {
				if !f.retryAfterReset(reason, oerr) {
					return
				}
			}
			continue
		}
		if err != nil {
			f.closeUpstream(err)
			if f.tryTimedOut(err) {
				if f.perTryTimeout() {
					continue
				}
				return
			}
			if f.timedOut(err) || f.cb.Context().Err() != nil {
				// The route timeout ends the request, never retried;
				// an aborted stream is answered by the connection
				// manager.
				f.upstreamReset(err)
				return
			}
			if f.retryAfterReset(resetReasonOf(err), err) {
				continue
			}
			return
		}
		f.host.RecordResult(f.resp.StatusCode())
		if f.retryResponse(endStream) {
			continue
		}
		break
	}
	f.relayResponse(endStream, nil)
}

// relayResponse encodes the upstream response headers in f.resp, then its
// body and trailers, downstream: the response half shared by finish and,
// with dx set, the duplex response goroutine (duplexRespond).
func (f *Filter) relayResponse(endStream bool, dx *duplex) {
	code := f.resp.StatusCode()
	f.cluster.RecordResponse(code)
	if f.cluster.HealthChecked() && f.resp.Has(hdrImmediateHealthCheckFail) {
		// Envoy's router: an upstream answering with
		// x-envoy-immediate-health-check-fail is taken out of rotation
		// at once (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-immediate-health-check-fail).
		f.host.ImmediateHealthCheckFail()
	}
	f.cb.StreamInfo().ResponseCodeDetails = detailsViaUpstream
	if !f.cfg.SuppressEnvoyHeaders {
		f.resp.Set(hdrUpstreamServiceTime, strconv.FormatInt(time.Since(f.start).Milliseconds(), 10))
	}
	f.route.ApplyResponseHeaders(&f.resp, f.wc, f)
	for _, c := range f.setCookies {
		f.resp.Add("set-cookie", c)
	}
	if f.attemptResp {
		f.resp.Set(hdrAttemptCount, attemptString(f.attempts))
	}
	if !endStream && f.h1 != nil && f.h1.cc.Buffered() > 0 {
		// Body bytes came with the headers: an HTTP/2 downstream can send
		// HEADERS and the first DATA in one write.
		if d, ok := f.cb.(httpfilter.DataFollows); ok {
			d.DataFollows()
		}
	}
	if err := f.cb.EncodeHeaders(&f.resp, endStream); err != nil {
		f.closeUpstream(err)
		return
	}
	if endStream {
		f.complete(dx)
		return
	}
	// The per-try timeout ends with the response headers; the idle one
	// goes on.
	f.tryDeadline = time.Time{}
	if f.perTryIdle > 0 {
		f.armDeadline()
	}
	bp := network.GetCopyBuffer()
	defer network.PutCopyBuffer(bp)
	buf := *bp
	for {
		n, err := f.up.ReadBody(buf)
		if err == io.EOF {
			tr := f.up.Trailers()
			if tr != nil && tr.Len() > 0 {
				if n > 0 {
					if f.cb.EncodeData(buf[:n], false) != nil {
						f.closeUpstream(errDownstream)
						return
					}
				}
				if f.cb.EncodeTrailers(tr) != nil {
					f.closeUpstream(errDownstream)
					return
				}
			} else if f.cb.EncodeData(buf[:n], true) != nil {
				f.closeUpstream(errDownstream)
				return
			}
			f.complete(dx)
			return
		}
		if n > 0 {
			if f.cb.EncodeData(buf[:n], false) != nil {
				f.closeUpstream(errDownstream)
				return
			}
		}
		if err != nil {
			f.closeUpstream(err)
			if dx != nil {
				f.loadDuplexDeadline(dx)
			}
			if f.tryTimedOut(err) {
				f.perTryTimeout()
				return
			}
			if !f.timedOut(err) {
				f.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
			}
			f.upstreamReset(err)
			return
		}
		if f.perTryIdle > 0 {
			f.armDeadline()
		}
	}
}

var errDownstream = errors.New("router: downstream went away")

// earlyResponse handles an HTTP/2 upstream that stopped reading the
// request body: it may have answered before the request ended (RFC 9113
// §8.1: a complete response, then RST_STREAM NO_ERROR — what gRPC servers
// do for an unknown service). The response is read and forwarded, as
// Envoy forwards an early upstream response; the rest of the request is
// dropped. When no response came, reading fails and finish treats it as
// the reset it is. It reports whether it took over.
func (f *Filter) earlyResponse(err error) bool {
	if f.h1 != nil || !errors.Is(err, http2.ErrRequestBodyAborted) {
		return false
	}
	f.finish()
	return true
}

// complete releases the upstream stream after a full exchange. A duplex
// stream (dx set) may still be sending the request: it is cut off
// (errDuplexDone), as Envoy resets an upstream request whose response
// completed first.
func (f *Filter) complete(dx *duplex) {
	f.host.Stats.RqSuccess.Add(1)
	if dx != nil && f.upgrade {
		// The request direction of an upgrade goes on until the
		// downstream ends it; the decode side closes the upstream then
		// (duplexEnd, OnDestroy).
		return
	}
	if dx != nil {
		f.closeUpstream(errDuplexDone)
		return
	}
	f.closeUpstream(nil)
}

// closeUpstream ends the upstream stream; a clean HTTP/1.1 exchange goes
// back to the host's idle pool.
func (f *Filter) closeUpstream(err error) {
	if f.aborting {
		// After this returns Abort is not running and will not run, so
		// f.h1 may change.
		f.cb.SetAborter(nil)
		f.aborting = false
	}
	f.releaseRequest()
	if f.up == nil {
		return
	}
	if f.h1 != nil {
		pc := f.h1
		f.h1 = nil
		f.up = nil
		if max := f.cluster.MaxRequestsPerConnection(); err == nil && pc.cc.Reusable() && (max == 0 || pc.requests < max) {
			pc.nc.SetDeadline(time.Time{})
			if f.host.Idle().Sub(f.poolKey).Put(pc) {
				// A request waiting for a connection may take it.
				f.rm.ConnectionReleased()
				return
			}
		}
		pc.Close()
		return
	}
	f.up.Close(err)
	f.up = nil
}

// connectFailed answers 503 for a connection that could not be made.
func (f *Filter) connectFailed(err error) {
	info := f.cb.StreamInfo()
	if f.cb.Context().Err() != nil {
		return
	}
	info.SetFlag(streaminfo.UpstreamConnectionFailure)
	reason := connectFailureReason(err)
	info.UpstreamTransportFailureReason = reason
	f.host.Stats.RqError.Add(1)
	f.cluster.RecordResponse(503)
	f.cb.SendLocalReply(503, f.resetBody("remote connection failure, transport failure reason: "+reason),
		detailsResetBeforeStart+"{remote_connection_failure|"+detailsToken(reason)+"}", f.replyHeaders(false))
}

// upstreamReset handles an upstream that failed after the connection was
// made: a timeout answers 504, a reset 503, or — once the response has
// started — resets the downstream stream.
func (f *Filter) upstreamReset(err error) {
	info := f.cb.StreamInfo()
	if f.cb.Context().Err() != nil && !f.timedOut(err) {
		// The downstream went away or a stream timeout fired: the connection
		// manager answers for the stream.
		return
	}
	f.host.Stats.RqError.Add(1)
	if f.timedOut(err) {
		if !f.cb.ResponseStarted() {
			f.host.RecordLocalOrigin(upstream.LocalOriginTimeout)
		}
		f.cluster.Stats.UpstreamRqTimeout.Inc()
		info.SetFlag(streaminfo.UpstreamRequestTimeout)
		if !f.cb.ResponseStarted() {
			f.cluster.RecordResponse(504)
		}
		f.cb.SendLocalReply(504, bodyTimeout, detailsResponseTimeout, f.replyHeaders(false))
		return
	}
	if f.cb.ResponseStarted() {
		info.SetFlag(streaminfo.UpstreamRemoteReset)
		f.cb.SendLocalReply(502, "", detailsResetAfterStart+"{remote_reset}", nil)
		return
	}
	info.SetFlag(streaminfo.UpstreamConnectionTermination)
	f.cluster.RecordResponse(503)
	f.cb.SendLocalReply(503, f.resetBody("connection termination"), detailsResetBeforeStart+"{connection_termination}", f.replyHeaders(false))
}

// staleConn reports whether err means a reused HTTP/1.1 connection was
// already closed by the upstream before it answered a headers-only request.
func (f *Filter) staleConn(err error) bool {
	if !f.reused || f.sentBody || !f.headersOnly || f.h1 == nil || f.timedOut(err) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// timedOut reports whether err is the route timeout.
func (f *Filter) timedOut(err error) bool {
	if f.deadline.IsZero() {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return !time.Now().Before(f.deadline)
	}
	return false
}

// Abort implements httpfilter.Aborter: a past deadline wakes the blocked
// upstream read or write.
func (f *Filter) Abort() {
	if h := f.h1; h != nil {
		h.nc.SetDeadline(time.Unix(1, 0))
	}
}

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	f.awaitDuplex()
	f.closeUpstream(errDownstream)
	if f.rm != nil {
		f.retry.release(f.rm)
	}
	if f.active {
		f.cluster.Stats.UpstreamRqActive.Dec()
		f.cluster.Stats.UpstreamRqTime.Record(uint64(time.Since(f.start).Milliseconds()))
	}
	body := f.body[:0]
	if cap(body) > maxPooledBody {
		body = nil
	}
	*f = Filter{resp: hhttp.Headers{Fields: f.resp.Fields[:0]}, body: body}
	filterPool.Put(f)
}

// maxPooledBody bounds the retry buffer a pooled Filter keeps.
const maxPooledBody = 64 << 10

// headerOrEmpty is h's name header, "" when name is "" (no
// override_auto_sni_header).
func headerOrEmpty(h *hhttp.Headers, name string) string {
	if name == "" {
		return ""
	}
	return h.Get(name)
}
