package router

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Full-duplex streaming. A request whose body follows its headers, sent to
// an HTTP/2 upstream, has its response read on a goroutine of its own
// while DecodeData goes on writing the request upstream, as Envoy's router
// streams both directions at once: an upstream may answer before the
// request ends (gRPC bidirectional streams: ping-pong, cancel after the
// first response). The response goroutine encodes downstream under the
// connection manager's httpfilter.ConcurrentEncoder contract; the router's
// last decode event (or OnDestroy, after the stream was aborted) waits for
// it.
//
// Duplex mode is used only when nothing needs the request to be complete
// before the response is read: no retry policy in force, no per-try
// timeouts, no hedging, no mirrors. Envoy retries a streaming request only
// while its body is still buffered and no response byte went downstream;
// herald keeps such requests half-duplex instead (the response is read once
// the request ended, which lets retries replay the buffered body), so a
// bidirectional stream on a route with a retry policy still needs the
// request to end first. HTTP/1.1 upstreams are half-duplex too (one
// net.Conn per exchange), as are HTTP/1.1 downstreams (their codec's read
// and write halves share buffers; the connection manager refuses), except
// for upgrades and CONNECT (upgrade.go): their raw bytes stream both ways
// at once whatever the protocols, and once the upstream answered 101 (2xx
// to CONNECT) the end of the response leaves the request direction open
// until the downstream ends it, the upstream connection being closed then
// by the decode side (complete, duplexEnd, OnDestroy).
//
// Ownership while duplex: the decode side (the stream goroutine) touches
// only dx (the upstream stream's write half and dx.failed); the response
// goroutine owns every other field the response path uses (f.up, f.resp,
// f.deadline, the circuit-breaker hold, stats). The route timeout starts
// when the request ends (Envoy's onRequestComplete): the decode side then
// publishes the deadline in dx.deadline and sets it on the upstream
// stream, which resets the stream when it passes.
type duplex struct {
	up   hhttp.UpstreamStream
	done chan struct{}
	// deadline is the route timeout's deadline in Unix nanoseconds, set
	// by the decode side when the request ended; 0 when none.
	deadline atomic.Int64
	// nc is the upstream connection of an HTTP/1.1 upgrade or a
	// terminated CONNECT (nil for HTTP/2): dx is then the stream's
	// aborter. Immutable.
	nc net.Conn
	// failed: writing the request failed (the upstream reset the stream
	// or answered and stopped reading); the rest of the request is
	// dropped and the response goroutine reports what happened. Decode
	// side only.
	failed bool
}

// errDuplexDone closes a duplex upstream stream once its response went
// downstream: a request still being sent is cut off (its write fails), as
// Envoy resets an upstream request whose response completed first.
var errDuplexDone = errors.New("router: response complete")

// startDuplex switches a request with a body to duplex mode when it can
// (see above). Called at the end of DecodeHeaders once the request headers
// went upstream.
func (f *Filter) startDuplex() {
	if (f.h1 != nil && !f.upgrade) || f.up == nil || f.retry.enabled() || f.perTry > 0 || f.perTryIdle > 0 ||
		f.hedge || f.mirror.targets != nil {
		return
	}
	ce, ok := f.cb.(httpfilter.ConcurrentEncoder)
	if !ok {
		return
	}
	dx := &duplex{up: f.up, done: make(chan struct{})}
	if f.h1 != nil {
		dx.nc = f.h1.nc
	} else if f.tcp != nil {
		dx.nc = f.tcp
	}
	if !ce.BeginConcurrentEncode(dx.done) {
		return
	}
	f.dx = dx
	if dx.nc != nil {
		// The response goroutine owns f.h1 from now on: the stream's
		// aborter becomes dx, which holds only the connection.
		f.cb.SetAborter(dx)
		f.aborting = false
	}
	// The route timeout starts with the end of the request.
	f.deadline = time.Time{}
	go f.duplexRespond(dx)
}

// duplexData is DecodeData in duplex mode.
func (f *Filter) duplexData(data []byte, endStream bool) {
	dx := f.dx
	if !dx.failed && (len(data) > 0 || endStream) {
		if err := dx.up.WriteData(data, endStream); err != nil {
			dx.failed = true
		}
	}
	if endStream {
		f.duplexEnd()
	}
}

// duplexTrailers is DecodeTrailers in duplex mode.
func (f *Filter) duplexTrailers(t *hhttp.Headers) {
	dx := f.dx
	if !dx.failed {
		if err := dx.up.WriteTrailers(t); err != nil {
			dx.failed = true
		}
	}
	f.duplexEnd()
}

// duplexEnd runs when the request ended: the route timeout starts, then
// the decode side waits for the response goroutine.
func (f *Filter) duplexEnd() {
	dx := f.dx
	if f.timeout > 0 {
		select {
		case <-dx.done:
		default:
			d := time.Now().Add(f.timeout)
			dx.deadline.Store(d.UnixNano())
			if dx.nc != nil {
				_ = dx.nc.SetReadDeadline(d)
			} else if rd, ok := dx.up.(readDeadliner); ok {
				rd.SetReadDeadline(d)
			}
		}
	}
	<-dx.done
	f.dx = nil
	f.requestDone()
}

var _ httpfilter.Aborter = (*duplex)(nil)

// Abort implements httpfilter.Aborter for an HTTP/1.1 upgrade: a past
// deadline wakes the response goroutine's upstream read and the decode
// side's upstream write.
func (dx *duplex) Abort() {
	if dx.nc != nil {
		_ = dx.nc.SetDeadline(time.Unix(1, 0))
	}
}

// awaitDuplex waits for a response goroutine still running when the
// stream ends early (the connection manager cancelled the stream context,
// which ends it).
func (f *Filter) awaitDuplex() {
	if f.dx != nil {
		<-f.dx.done
		f.dx = nil
	}
}

// duplexRespond reads the response and encodes it downstream: finish's
// response half, on the response goroutine, without retries.
func (f *Filter) duplexRespond(dx *duplex) {
	defer close(dx.done)
	f.resp.Reset()
	endStream, err := dx.up.ReadHeaders(&f.resp)
	if err != nil {
		f.closeUpstream(err)
		if f.cb.Context().Err() != nil {
			// The downstream went away or a stream timeout fired: the
			// connection manager answers.
			return
		}
		f.loadDuplexDeadline(dx)
		if f.timedOut(err) {
			f.upstreamReset(err)
			return
		}
		f.host.RecordLocalOrigin(upstream.LocalOriginConnectFailed)
		f.attemptFailed(resetReasonOf(err), err)
		return
	}
	f.host.RecordResult(f.resp.StatusCode())
	f.relayResponse(endStream, dx)
}

// loadDuplexDeadline takes the route timeout's deadline the decode side
// published, so that timedOut can tell a timeout from a reset.
func (f *Filter) loadDuplexDeadline(dx *duplex) {
	if d := dx.deadline.Load(); d != 0 {
		f.deadline = time.Unix(0, d)
	}
}
