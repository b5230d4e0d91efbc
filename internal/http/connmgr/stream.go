package connmgr

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

var streamIDs atomic.Uint64

// stream is one request/response exchange (Envoy's ActiveStream). Owned by
// the goroutine running ServeStream, except the fields marked atomic, which
// the timeout timer reads.
type stream struct {
	c    *conn
	cfg  *Config
	s    hhttp.ServerStream
	id   uint64
	info streaminfo.Info

	filters  []httpfilter.Filter
	decoders []httpfilter.DecoderFilter // index-aligned with filters, nil when not a decoder
	encoders []httpfilter.EncoderFilter

	// decodeLimit: body events go to filters[0:decodeLimit]; set when a
	// filter stops iteration on headers.
	decodeLimit int
	// curDecode is the index of the filter handling the current decode
	// event; curEncode likewise for encode events (-1 outside one).
	curDecode int
	curEncode int

	route         httpfilter.Route
	routeResolved bool

	// dataFollows: the encoding filter holds body bytes it sends right
	// after the headers (DataFollows).
	dataFollows bool

	remote netip.AddrPort

	requestComplete  bool
	responseStarted  bool
	responseComplete bool
	isGRPC           bool
	isHead           bool
	closeConn        bool
	// upgradeReq: the request is upgrade-shaped (isUpgrade) and keeps its
	// connection and upgrade headers; upgrade: the upgrade was allowed;
	// tunnel: a 101 answered it, each direction now ends on its own
	// (upgrade.go). tunnel is written by the encoding goroutine and read by
	// the decode side once the response is done.
	upgradeReq bool
	upgrade    bool
	tunnel     bool
	isConnect  bool // a CONNECT request: an upgrade of type "CONNECT"

	// ctx is created on first use (Context); cancel is nil until then.
	ctx    context.Context
	cancel context.CancelFunc
	// downstreamGone: the downstream reset or failed.
	downstreamGone bool

	// wd enforces the stream timeouts; nil when none is configured.
	wd *watchdog
	// aborter is the filter to wake when the stream is aborted.
	aborter httpfilter.Aborter

	// conc is the done channel of a filter encoding the response on
	// another goroutine (concurrent.go); nil otherwise. Decode side only.
	conc <-chan struct{}

	// Request body buffering (bufferbody.go); all zero unless a filter
	// called BufferRequestBody.
	rb requestBuffer
	// values is the stream's filter state (httpfilter.StreamState); kept
	// with its capacity across pooled streams.
	values []streamValue
}

type streamValue struct{ key, val any }

// Timeout kinds recorded in stream.timedOut.
const (
	noTimeout int32 = iota
	idleTimeout
	requestTimeout
	durationTimeout // the route's max_stream_duration / grpc-timeout (duration.go)
)

var streamPool = sync.Pool{New: func() any { return &stream{} }}

// ServeStream implements hhttp.StreamHandler.
func (c *conn) ServeStream(s hhttp.ServerStream) {
	if !c.http2 {
		if !c.state.CompareAndSwap(connIdle, connActive) {
			// Closed by drain while the request arrived: answer it, then close.
			c.state.Store(connActive)
		}
		defer c.state.CompareAndSwap(connActive, connIdle)
	}
	if c.cfg.HeadersWithUnderscores != AllowUnderscores && !c.checkUnderscores(s) {
		return
	}
	as := streamPool.Get().(*stream)
	as.serve(c, s)
	as.reset()
	streamPool.Put(as)
}

// ServeCodecError implements hhttp.StreamHandler: the request could not be
// parsed; answer with the codec's status and Envoy's details, count it, log it.
func (c *conn) ServeCodecError(s hhttp.ServerStream, err *hhttp.CodecError) {
	c.cfg.Stats.DownstreamCxProtocolError.Inc()
	as := streamPool.Get().(*stream)
	as.begin(c, s)
	as.info.SetFlag(streaminfo.DownstreamProtocolError)
	as.closeConn = true
	as.requestComplete = true
	if err.Status == 431 || err.Status == 413 {
		c.cfg.Stats.DownstreamRqTooLarge.Inc()
	}
	// Envoy answers codec errors with the status text as the body
	// (ServerConnectionImpl::sendProtocolError: CodeUtility::toString).
	as.sendLocalReply(err.Status, statusText(err.Status), err.Details, nil)
	as.end()
	as.reset()
	streamPool.Put(as)
}

func (as *stream) begin(c *conn, s hhttp.ServerStream) {
	as.c = c
	as.cfg = c.cfg
	as.s = s
	as.id = streamIDs.Add(1)
	as.curDecode = -1
	as.curEncode = -1
	now := time.Now()
	as.info.StartTime = now
	as.info.Protocol = s.Protocol()
	as.info.DownstreamLocalAddress = c.nc.Local
	as.info.DirectRemoteAddress = c.nc.DirectRemote
	as.info.DownstreamRemoteAddress = c.nc.Remote
	as.info.RequestedServerName = c.nc.ServerName
	as.info.JA3Hash = c.nc.JA3Hash
	as.remote = c.nc.Remote
	h := s.RequestHeaders()
	as.info.RequestHeaders = h
	st := as.cfg.Stats
	st.DownstreamRqTotal.Inc()
	if c.http3 {
		st.DownstreamRqHTTP3Total.Inc()
	} else if c.http2 {
		st.DownstreamRqHTTP2Total.Inc()
	} else {
		st.DownstreamRqHTTP1Total.Inc()
	}
	st.DownstreamRqActive.Inc()
}

func (as *stream) serve(c *conn, s hhttp.ServerStream) {
	as.begin(c, s)
	cfg := as.cfg
	h := s.RequestHeaders()
	as.isHead = h.Method() == "HEAD"
	ct := h.Get("content-type")
	as.isGRPC = hhttp.IsGRPCContentType(ct)
	if c.draining.Load() && !c.http2 {
		as.closeConn = true
	}
	if cfg.MaxRequestsPerConnection > 0 {
		as.countRequest()
	}
	as.armTimer(cfg.StreamIdleTimeout)

	// Before mutateRequestHeaders drops the hop-by-hop fields (upgrade.go).
	as.isConnect = h.Method() == methodConnect
	as.upgradeReq = as.isConnect || isUpgrade(h)
	if !as.checkRequest(h) || !as.mutateRequestHeaders(h) {
		as.end()
		return
	}
	// Build the filter chain for this stream. Filters disabled for the
	// route are left out, as Envoy's filter chain creation consults the
	// route resolved from the request headers (FilterConfig.disabled, and
	// http_filters[].disabled unless the route enables the filter).
	// The route is resolved here anyway (the router needs it; it is cached).
	disabler, _ := as.Route().(httpfilter.FilterDisabler)
	as.armStreamDuration(h)
	for _, f := range cfg.Filters {
		off := f.Disabled
		if disabler != nil {
			if d, set := disabler.FilterDisabled(f.Name); set {
				off = d
			}
		}
		if off {
			continue
		}
		flt := f.Factory(as)
		as.filters = append(as.filters, flt)
		d, _ := flt.(httpfilter.DecoderFilter)
		e, _ := flt.(httpfilter.EncoderFilter)
		as.decoders = append(as.decoders, d)
		as.encoders = append(as.encoders, e)
	}
	as.decodeLimit = len(as.filters)
	if as.upgradeReq && as.startUpgrade(h) {
		as.end()
		return
	}

	endStream := s.RequestEndStream()
	if endStream {
		as.markRequestComplete()
	}
	as.decodeHeaders(h, endStream)
	if !endStream {
		as.readBody()
	}
	as.awaitConcurrent()
	if k := as.timedOutKind(); k != noTimeout && !as.responseComplete {
		// A stream timeout fired while a filter waited (on the upstream).
		as.onTimeout(k)
	} else if !as.responseStarted && !as.responseComplete && !as.downstreamGone {
		// No filter answered: a filter stopped without answering.
		as.sendLocalReply(500, "", "filter_chain_not_answered", nil)
	}
	as.end()
}

// trailersAllowed reports whether trailers cross this downstream
// connection: always on HTTP/2, on HTTP/1.x only with enable_trailers.
func (as *stream) trailersAllowed() bool { return as.c.http2 || as.cfg.EnableTrailers }

// checkRequest applies the connection manager's request checks that come
// before any filter: HTTP/1.0 is refused with 426 unless accept_http_10, and
// a request without :authority gets 400, as Envoy's ConnectionManagerImpl.
func (as *stream) checkRequest(h *hhttp.Headers) bool {
	if as.info.Protocol == "HTTP/1.0" {
		if !as.cfg.AcceptHTTP10 {
			as.closeConn = true
			as.sendLocalReply(426, "", "low_version", nil)
			return false
		}
		if !h.Has(hhttp.Authority) && as.cfg.DefaultHostForHTTP10 != "" {
			h.Add(hhttp.Authority, as.cfg.DefaultHostForHTTP10)
		}
	}
	if a, ok := h.Lookup(hhttp.Authority); (!ok || a == "") && h.Method() != "CONNECT" {
		as.closeConn = true
		as.sendLocalReply(400, "", "missing_host_header", nil)
		return false
	}
	return true
}

// readBody pumps the request body through the decoder filters.
//
// It returns at the end of the body, when the response is complete, or,
// while a filter buffers the body (BufferRequestBody), when the buffer has
// the whole body or is over its limit; the codec is never read after EOF.
func (as *stream) readBody() {
	if as.rb.eof {
		return
	}
	// Taken per request body, not per connection: an idle keep-alive
	// connection holds no body buffer.
	own := network.GetCopyBuffer()
	buf := *own
	defer network.PutCopyBuffer(own)
	for !as.rb.sinkDone() {
		if as.responseDone() && !as.tunnel {
			return
		}
		n, err := as.s.ReadBody(buf)
		if n > 0 {
			as.touch()
			as.info.BytesReceived += uint64(n)
		}
		if err == io.EOF {
			as.rb.eof = true
			as.markRequestComplete()
			if t := as.s.RequestTrailers(); t != nil && t.Len() > 0 && as.trailersAllowed() {
				if n > 0 {
					as.decodeData(buf[:n], false)
				}
				as.decodeTrailers(t)
			} else {
				as.decodeData(buf[:n], true)
			}
			return
		}
		if n > 0 {
			as.decodeData(buf[:n], false)
		}
		if err != nil {
			as.onDownstreamReadError(err)
			return
		}
	}
}

// onDownstreamReadError handles a failed request body read: a codec error
// answers 400 (or the codec's status), a timeout answers 408, a reset ends
// the stream.
func (as *stream) onDownstreamReadError(err error) {
	if as.stopConcurrent() && as.responseComplete && as.timedOutKind() == noTimeout {
		// The concurrent encoder completed the response while the request
		// was still open: the exchange is over, whatever the downstream
		// does with the rest of its request.
		as.closeConn = as.closeConn || !as.c.http2
		return
	}
	as.closeConn = true
	if k := as.timedOutKind(); k != noTimeout {
		as.onTimeout(k)
		return
	}
	var ce *hhttp.CodecError
	if errors.As(err, &ce) {
		as.cfg.Stats.DownstreamCxProtocolError.Inc()
		as.info.SetFlag(streaminfo.DownstreamProtocolError)
		if !as.responseStarted {
			as.sendLocalReply(ce.Status, statusText(ce.Status), ce.Details, nil)
		}
		return
	}
	as.cfg.Stats.DownstreamRqRxReset.Inc()
	as.info.SetFlag(streaminfo.DownstreamConnectionTermination)
	as.info.ResponseCodeDetails = "downstream_remote_disconnect"
	as.abortUpstream()
	as.responseComplete = true
}

func (as *stream) onTimeout(kind int32) {
	as.stopConcurrent()
	as.closeConn = true
	switch kind {
	case idleTimeout:
		as.cfg.Stats.DownstreamRqIdleTimeout.Inc()
		as.info.SetFlag(streaminfo.StreamIdleTimeout)
		if !as.responseStarted {
			as.sendLocalReply(408, "stream timeout", "stream_idle_timeout", nil)
		}
	case requestTimeout:
		as.cfg.Stats.DownstreamRqTimeout.Inc()
		if !as.responseStarted {
			as.sendLocalReply(408, "request timeout", "request_overall_timeout", nil)
		}
	case durationTimeout:
		as.onMaxDuration()
	}
	as.responseComplete = true
}

func (as *stream) decodeHeaders(h *hhttp.Headers, endStream bool) {
	as.touch()
	as.rb.inHeaders = true
	as.rb.headersEnd = endStream
	for i, d := range as.decoders {
		if d == nil {
			continue
		}
		as.curDecode = i
		st := d.DecodeHeaders(h, endStream)
		as.curDecode = -1
		if st == httpfilter.Stop || as.responseDone() {
			as.decodeLimit = i + 1
			break
		}
	}
	as.rb.inHeaders = false
	if as.rb.held {
		as.flushBufferedBody()
	}
}

func (as *stream) decodeData(data []byte, endStream bool) {
	as.decodeDataFrom(0, data, endStream)
}

// decodeDataFrom passes data through the decoder filters from index from
// up to decodeLimit; when every one continues and a filter buffers the
// body (decodeLimit is then its index), data goes into that buffer.
func (as *stream) decodeDataFrom(from int, data []byte, endStream bool) {
	as.touch()
	prev := as.curDecode
	for i := from; i < as.decodeLimit; i++ {
		d := as.decoders[i]
		if d == nil {
			continue
		}
		as.curDecode = i
		st := d.DecodeData(data, endStream)
		as.curDecode = prev
		if st == httpfilter.Stop || as.responseDone() {
			return
		}
	}
	if as.rb.sinking {
		as.rb.sinkData(data, endStream)
	}
}

func (as *stream) decodeTrailers(t *hhttp.Headers) {
	as.decodeTrailersFrom(0, t)
}

// decodeTrailersFrom is decodeDataFrom for trailers.
func (as *stream) decodeTrailersFrom(from int, t *hhttp.Headers) {
	as.touch()
	prev := as.curDecode
	for i := from; i < as.decodeLimit; i++ {
		d := as.decoders[i]
		if d == nil {
			continue
		}
		as.curDecode = i
		st := d.DecodeTrailers(t)
		as.curDecode = prev
		if st == httpfilter.Stop || as.responseDone() {
			return
		}
	}
	if as.rb.sinking {
		as.rb.sinkTrailers(t)
	}
}

// encodeStart is the index of the first encoder filter to run for an
// encode event raised by the current filter: encoder filters run in reverse
// order; a decoder filter's response goes through every encoder filter, an
// encoder filter's through those before it.
func (as *stream) encodeStart() int {
	if as.curEncode >= 0 {
		return as.curEncode - 1
	}
	return len(as.encoders) - 1
}

// EncodeHeaders implements httpfilter.Callbacks.
func (as *stream) EncodeHeaders(h *hhttp.Headers, endStream bool) error {
	as.touch()
	prev := as.curEncode
	for i := as.encodeStart(); i >= 0; i-- {
		e := as.encoders[i]
		if e == nil {
			continue
		}
		as.curEncode = i
		st := e.EncodeHeaders(h, endStream)
		as.curEncode = prev
		if st == httpfilter.Stop {
			return nil
		}
	}
	as.curEncode = prev
	return as.writeHeaders(h, endStream)
}

// EncodeData implements httpfilter.Callbacks.
func (as *stream) EncodeData(data []byte, endStream bool) error {
	as.touch()
	prev := as.curEncode
	for i := as.encodeStart(); i >= 0; i-- {
		e := as.encoders[i]
		if e == nil {
			continue
		}
		as.curEncode = i
		st := e.EncodeData(data, endStream)
		as.curEncode = prev
		if st == httpfilter.Stop {
			return nil
		}
	}
	as.curEncode = prev
	as.info.BytesSent += uint64(len(data))
	err := as.s.WriteData(data, endStream)
	if endStream {
		as.responseComplete = true
	}
	if err != nil {
		as.onDownstreamWriteError(err)
	}
	return err
}

// EncodeTrailers implements httpfilter.Callbacks.
func (as *stream) EncodeTrailers(t *hhttp.Headers) error {
	as.touch()
	prev := as.curEncode
	for i := as.encodeStart(); i >= 0; i-- {
		e := as.encoders[i]
		if e == nil {
			continue
		}
		as.curEncode = i
		st := e.EncodeTrailers(t)
		as.curEncode = prev
		if st == httpfilter.Stop {
			return nil
		}
	}
	as.curEncode = prev
	if !as.trailersAllowed() {
		// Envoy's HTTP/1 codec drops trailers unless enable_trailers: the
		// body just ends.
		err := as.s.WriteData(nil, true)
		as.responseComplete = true
		if err != nil {
			as.onDownstreamWriteError(err)
		}
		return err
	}
	as.info.ResponseTrailers = t
	err := as.s.WriteTrailers(t)
	as.responseComplete = true
	if err != nil {
		as.onDownstreamWriteError(err)
	}
	return err
}

func (as *stream) writeHeaders(h *hhttp.Headers, endStream bool) error {
	as.mutateResponseHeaders(h)
	if as.upgrade && as.tunnelResponse(h) {
		as.tunnel = true
	}
	as.responseStarted = true
	as.info.ResponseCode = h.StatusCode()
	as.info.ResponseHeaders = h
	if as.isHead {
		endStream = true
	}
	if as.dataFollows {
		as.dataFollows = false
		if d, ok := as.s.(hhttp.HeadersDeferrer); ok && !endStream {
			d.DeferHeadersFlush()
		}
	}
	err := as.s.WriteHeaders(h, endStream)
	if endStream {
		as.responseComplete = true
	}
	if err != nil {
		as.onDownstreamWriteError(err)
	}
	return err
}

func (as *stream) onDownstreamWriteError(error) {
	as.closeConn = true
	as.responseComplete = true
	as.cfg.Stats.DownstreamRqTxReset.Inc()
	as.info.SetFlag(streaminfo.DownstreamConnectionTermination)
	as.abortUpstream()
}

// abortUpstream ends what the filters wait on: the stream context and the
// registered aborter (the router's upstream connection). Called on the
// stream goroutine; the watchdog does the same from its own.
func (as *stream) abortUpstream() {
	as.downstreamGone = true
	if as.cancel != nil {
		as.cancel()
	}
	if as.aborter != nil {
		as.aborter.Abort()
	}
	as.wakeUpgradeRead()
}

// end finishes the stream: stats, access logs.
func (as *stream) end() {
	as.stopTimer()
	as.info.EndTime = time.Now()
	st := as.cfg.Stats
	st.DownstreamRqActive.Dec()
	if as.upgrade {
		st.DownstreamCxUpgradesActive.Dec()
	}
	if code := as.info.ResponseCode; code >= 100 && code < 600 {
		st.DownstreamRqXX[code/100].Inc()
		st.DownstreamRqCompleted.Inc()
		if ls := as.c.lstats; ls != nil {
			ls.DownstreamRqXX[code/100].Inc()
			ls.DownstreamRqCompleted.Inc()
		}
	}
	st.DownstreamRqTime.Record(uint64(as.info.EndTime.Sub(as.info.StartTime).Milliseconds()))
	// Access logs read the response headers, which filters may own: log
	// first, then destroy the filters.
	for _, l := range as.cfg.AccessLogs {
		l.Log(&as.info)
	}
	for _, f := range as.filters {
		if d, ok := f.(httpfilter.Destroyer); ok {
			d.OnDestroy()
		}
	}
	if as.cancel != nil {
		as.cancel()
	}
}

func (as *stream) reset() {
	filters := as.filters[:0]
	decoders := as.decoders[:0]
	encoders := as.encoders[:0]
	for i := range as.filters {
		as.filters[i] = nil
		as.decoders[i] = nil
		as.encoders[i] = nil
	}
	store := as.rb.keepStore()
	clear(as.values)
	values := as.values[:0]
	*as = stream{}
	as.filters, as.decoders, as.encoders = filters, decoders, encoders
	as.rb.store = store
	as.values = values
}

// touch records stream activity for the idle timeout.
func (as *stream) touch() {
	if as.wd != nil {
		as.wd.lastActivity.Store(time.Now().UnixNano())
	}
}

// timedOutKind reports which timeout fired, if any.
func (as *stream) timedOutKind() int32 {
	if as.wd == nil {
		return noTimeout
	}
	return as.wd.timedOut.Load()
}

// markRequestComplete records that the whole request was received.
func (as *stream) markRequestComplete() {
	as.requestComplete = true
	if as.wd != nil {
		as.wd.reqDone.Store(true)
	}
}

// armTimer arms the watchdog when a timeout is configured (idle, the
// stream's idle timeout, or request_timeout): the connection's own for
// HTTP/1.1 (one stream at a time, so it is reused and a request costs no
// allocation), a new one per HTTP/2 stream.
func (as *stream) armTimer(idle time.Duration) {
	if req := as.cfg.RequestTimeout; idle > 0 || req > 0 {
		as.armWatchdog(idle, req)
	}
}

// armWatchdog arms the stream's watchdog with the idle and request
// timeouts (0: none).
func (as *stream) armWatchdog(idle, req time.Duration) {
	wd := as.c.wd
	if wd == nil || as.c.http2 {
		wd = &watchdog{}
		if !as.c.http2 {
			wd.raw = as.c.raw
			as.c.wd = wd
		}
	}
	wd.arm(as.info.StartTime, idle, req)
	as.wd = wd
}

func (as *stream) stopTimer() {
	if as.wd != nil {
		as.wd.disarm()
	}
}

// --- httpfilter.Callbacks ---

var (
	_ httpfilter.Callbacks       = (*stream)(nil)
	_ httpfilter.ConnectionState = (*stream)(nil)
	_ httpfilter.StreamState     = (*stream)(nil)
)

// StreamValue implements httpfilter.StreamState.
func (as *stream) StreamValue(key any, create func() any) any {
	for _, v := range as.values {
		if v.key == key {
			return v.val
		}
	}
	v := create()
	as.values = append(as.values, streamValue{key: key, val: v})
	return v
}

// ConnectionValue implements httpfilter.ConnectionState.
func (as *stream) ConnectionValue(key any, create func() any) any {
	if v, ok := as.c.filterState.Load(key); ok {
		return v
	}
	v, _ := as.c.filterState.LoadOrStore(key, create())
	return v
}

// Context implements httpfilter.Callbacks. It is created on first use: most
// streams never need one.
func (as *stream) Context() context.Context {
	if as.ctx == nil {
		as.ctx, as.cancel = context.WithCancel(as.s.Context())
		if as.wd != nil {
			as.wd.setCancel(as.cancel)
		}
		if as.downstreamGone {
			as.cancel()
		}
	}
	return as.ctx
}

// SetIdleTimeout implements httpfilter.Callbacks.
func (as *stream) SetIdleTimeout(d time.Duration) {
	if as.wd == nil {
		as.armTimer(d)
		return
	}
	as.wd.setIdle(d)
}

// SetAborter implements httpfilter.Callbacks.
func (as *stream) SetAborter(a httpfilter.Aborter) {
	as.aborter = a
	if as.wd != nil {
		as.wd.setAborter(a)
	}
}

// StreamInfo implements httpfilter.Callbacks.
func (as *stream) StreamInfo() *streaminfo.Info { return &as.info }

// Route implements httpfilter.Callbacks.
func (as *stream) Route() httpfilter.Route {
	if !as.routeResolved {
		as.routeResolved = true
		if as.cfg.Routes != nil {
			as.route = as.cfg.Routes.Resolve(as.s.RequestHeaders(), as.c.nc.Local.Port())
		}
	}
	return as.route
}

// DataFollows implements httpfilter.DataFollows.
func (as *stream) DataFollows() { as.dataFollows = true }

// ClearRouteCache implements httpfilter.Callbacks.
func (as *stream) ClearRouteCache() { as.routeResolved = false; as.route = nil }

// SendLocalReply implements httpfilter.Callbacks.
func (as *stream) SendLocalReply(code int, body, details string, modify func(*hhttp.Headers)) {
	if code == 413 && as.rb.tooLarge {
		// Envoy counts the 413 its filter manager sends for a body over
		// a buffer limit (FilterManager::... downstream_rq_too_large).
		as.rb.tooLarge = false
		as.cfg.Stats.DownstreamRqTooLarge.Inc()
	}
	as.sendLocalReply(code, body, details, modify)
}

// ResponseStarted implements httpfilter.Callbacks.
func (as *stream) ResponseStarted() bool { return as.responseStarted }

// DownstreamRemoteAddress implements httpfilter.Callbacks.
func (as *stream) DownstreamRemoteAddress() netip.AddrPort { return as.remote }

// DownstreamDirectRemoteAddress implements httpfilter.Callbacks.
func (as *stream) DownstreamDirectRemoteAddress() netip.AddrPort { return as.c.nc.DirectRemote }

// BufferLimit implements httpfilter.Callbacks.
func (as *stream) BufferLimit() int {
	if as.cfg.BufferLimit > 0 {
		return as.cfg.BufferLimit
	}
	return 1 << 20
}

// StreamID implements httpfilter.Callbacks.
func (as *stream) StreamID() uint64 { return as.id }
