package http2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// stream is one HTTP/2 stream seen as an hhttp.ServerStream. It is pooled;
// it goes back to the pool once its handler returned and it left the
// connection's active set.
type stream struct {
	sc *serverConn
	id uint32

	// Set by the reader before dispatch, then owned by the handler goroutine.
	reqHeaders  hhttp.Headers
	noBody      bool
	extConnect  bool // the request was an extended CONNECT (RFC 8441)
	headersSent bool // response headers (final) written; handler only
	deferFlush  bool // DeferHeadersFlush: the next headers wait for the data; handler only
	deferred    bool // HEADERS queued unflushed, counted in sc.deferred; under sc.mu

	// Guarded by sc.mu.
	start         time.Time // when the request headers were dispatched
	responded     bool      // final response headers written
	inMap         bool      // in sc.streams: open or half-closed
	handlerDone   bool
	decoding      bool // the reader is decoding request trailers into st
	remoteEnded   bool // END_STREAM received
	localEnded    bool // END_STREAM sent
	reset         bool // reset either way or connection gone
	err           error
	inflow        int32 // receive window left to the peer
	inflowPending int32 // consumed, not yet announced
	outflow       int64 // send window
	waitingWindow bool
	body          []byte
	bodyOff       int
	trailers      hhttp.Headers
	hasTrailers   bool
	declaredLen   int64 // content-length, -1 when absent
	recvLen       int64
	ctx           context.Context
	cancel        context.CancelFunc

	bodyWake chan struct{} // data, END_STREAM or reset arrived
	winWake  chan struct{} // send window grew or reset
}

var _ hhttp.ServerStream = (*stream)(nil)

var streamPool = sync.Pool{New: func() any {
	return &stream{bodyWake: make(chan struct{}, 1), winWake: make(chan struct{}, 1)}
}}

// maxRetainedBody bounds the body buffer a pooled stream keeps.
const maxRetainedBody = 64 << 10

func newStream(sc *serverConn, id uint32) *stream {
	st := streamPool.Get().(*stream)
	st.sc, st.id = sc, id
	st.declaredLen = -1
	st.inflow = int32(sc.srv.streamWindow)
	return st
}

// maybeReleaseLocked pools st once nothing refers to it any more: its
// handler returned, it left the active set and the reader is not decoding
// into it. sc.mu held.
func (st *stream) maybeReleaseLocked() {
	if st.handlerDone && !st.inMap && !st.decoding {
		st.release()
	}
}

// release returns st to the pool; sc.mu held (or st never shared).
func (st *stream) release() {
	clear(st.reqHeaders.Fields)
	clear(st.trailers.Fields)
	h, t := st.reqHeaders.Fields[:0], st.trailers.Fields[:0]
	body := st.body[:0]
	if cap(body) > maxRetainedBody {
		body = nil
	}
	bw, ww := st.bodyWake, st.winWake
	select {
	case <-bw:
	default:
	}
	select {
	case <-ww:
	default:
	}
	*st = stream{bodyWake: bw, winWake: ww, body: body}
	st.reqHeaders.Fields, st.trailers.Fields = h, t
	streamPool.Put(st)
}

func (st *stream) wakeBody() {
	select {
	case st.bodyWake <- struct{}{}:
	default:
	}
}

func (st *stream) wakeWindow() {
	select {
	case st.winWake <- struct{}{}:
	default:
	}
}

// abortLocked marks st reset with err and wakes its handler.
func (st *stream) abortLocked(err error) {
	if st.reset {
		return
	}
	st.reset, st.err = true, err
	if st.cancel != nil {
		st.cancel()
	}
	st.wakeBody()
	st.wakeWindow()
}

// runStream is the goroutine of one stream.
func (sc *serverConn) runStream(st *stream) {
	defer sc.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			// A panicking handler loses its stream only (DESIGN: peer
			// input never panics the process).
			slog.Error("http2: panic serving stream", "panic", r, "stack", string(debug.Stack()))
		}
		sc.streamDone(st)
	}()
	sc.h.ServeStream(st)
}

// streamDone ends what the handler left open: a response not ended is reset
// with INTERNAL_ERROR (Envoy resets the downstream stream, so a truncated
// body never looks complete); a finished response with the request still
// open is closed with RST_STREAM(NO_ERROR) (RFC 9113 §8.1).
func (sc *serverConn) streamDone(st *stream) {
	sc.mu.Lock()
	st.undeferLocked()
	st.handlerDone = true
	switch {
	case !st.inMap:
		st.maybeReleaseLocked()
	case !st.localEnded && !st.reset:
		sc.resetStreamLocked(st.id, xhttp2.ErrCodeInternal)
	case !st.remoteEnded && !st.reset:
		sc.resetStreamLocked(st.id, xhttp2.ErrCodeNo)
	default:
		sc.closeStreamLocked(st)
	}
	sc.flushLocked()
	sc.mu.Unlock()
}

// RequestHeaders implements hhttp.ServerStream.
func (st *stream) RequestHeaders() *hhttp.Headers { return &st.reqHeaders }

// RequestEndStream implements hhttp.ServerStream.
func (st *stream) RequestEndStream() bool { return st.noBody }

// ReadBody implements hhttp.ServerStream. Consumed bytes are returned to the
// client's stream and connection windows once half a window is used.
func (st *stream) ReadBody(p []byte) (int, error) {
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for {
		if st.reset {
			return 0, st.err
		}
		if st.bodyOff < len(st.body) {
			n := copy(p, st.body[st.bodyOff:])
			st.bodyOff += n
			if st.bodyOff == len(st.body) {
				st.body, st.bodyOff = st.body[:0], 0
			}
			sc.consumedLocked(st, n)
			if len(sc.out) > 0 {
				sc.flushLocked()
			}
			if st.bodyOff == 0 && st.remoteEnded {
				return n, io.EOF
			}
			return n, nil
		}
		if st.remoteEnded {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		sc.mu.Unlock()
		<-st.bodyWake
		sc.mu.Lock()
	}
}

// consumedLocked returns n read bytes to the flow-control windows.
func (sc *serverConn) consumedLocked(st *stream, n int) {
	sc.returnConnWindowLocked(int32(n))
	if !st.inMap || st.remoteEnded || sc.wclosed {
		return
	}
	st.inflowPending += int32(n)
	if st.inflowPending >= int32(sc.srv.streamWindow/2) {
		_ = sc.fr.WriteWindowUpdate(st.id, uint32(st.inflowPending))
		sc.countFrameLocked()
		st.inflow += st.inflowPending
		st.inflowPending = 0
	}
}

// RequestTrailers implements hhttp.ServerStream: the trailing HEADERS of
// the request, declared in a "trailer" header or not.
func (st *stream) RequestTrailers() *hhttp.Headers {
	if !st.hasTrailers {
		return nil
	}
	return &st.trailers
}

var (
	errHeadersNotSent = errors.New("http2: response data before headers")
	errHeadersSent    = errors.New("http2: response headers already sent")
)

// writableLocked reports why st cannot carry more response frames.
func (st *stream) writableLocked() error {
	switch {
	case st.reset:
		return st.err
	case st.localEnded:
		return errStreamEnded
	case st.sc.wclosed:
		return errConnClosed
	}
	return nil
}

// endLocalLocked records END_STREAM sent.
func (sc *serverConn) endLocalLocked(st *stream) {
	st.localEnded = true
	if st.remoteEnded {
		sc.closeStreamLocked(st)
	}
}

// WriteHeaders implements hhttp.ServerStream. Fields go out in the order
// given; pseudo-headers other than :status and connection-specific fields
// are dropped. 1xx headers may precede the final ones.
//
// An upgrade response (101, or any response carrying "upgrade" and
// "connection: upgrade") to an extended CONNECT is sent as Envoy's
// transformUpgradeResponseFromH1toH2 does (source/common/http/utility.cc,
// called from ServerStreamImpl::encodeHeaders): 101 becomes 200, upgrade
// and connection are dropped and so is "content-length: 0". The stream then
// carries the tunnel's bytes as DATA.
func (st *stream) WriteHeaders(h *hhttp.Headers, endStream bool) error {
	status := h.StatusCode()
	upgrade := false
	if status == 101 || st.extConnect {
		upgrade = isUpgrade(h)
	}
	if status == 101 {
		if !upgrade && !st.extConnect {
			// 101 has no meaning in HTTP/2 (RFC 9113 §8.6).
			return fmt.Errorf("http2: response headers: bad :status %q", h.Get(hhttp.Status))
		}
		status, upgrade = 200, true
	}
	if status < 100 {
		return fmt.Errorf("http2: response headers: bad :status %q", h.Get(hhttp.Status))
	}
	if st.headersSent {
		return errHeadersSent
	}
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	if status < 200 {
		sc.writeHeadersLocked(st.id, h, false, false)
		sc.flushLocked()
		return nil
	}
	st.headersSent = true
	st.responded = true
	sc.openedStreams++
	if upgrade {
		sc.writeUpgradeHeadersLocked(st.id, h, endStream)
	} else {
		sc.writeHeadersLocked(st.id, h, endStream, false)
	}
	if endStream {
		sc.endLocalLocked(st)
	}
	if st.deferFlush && !endStream {
		// The body follows at once (DeferHeadersFlush): WriteData sends
		// HEADERS and DATA in one write.
		st.deferFlush = false
		st.deferred = true
		sc.deferred++
		return nil
	}
	sc.flushLocked()
	return nil
}

// undeferLocked ends a DeferHeadersFlush wait: whatever writes next flushes
// the HEADERS.
func (st *stream) undeferLocked() {
	if st.deferred {
		st.deferred = false
		st.sc.deferred--
	}
}

var _ hhttp.HeadersDeferrer = (*stream)(nil)

// DeferHeadersFlush implements hhttp.HeadersDeferrer.
func (st *stream) DeferHeadersFlush() { st.deferFlush = true }

// WriteData implements hhttp.ServerStream. It blocks while the client's
// stream or connection window is exhausted, and fails once the stream is
// reset or the connection is gone.
func (st *stream) WriteData(p []byte, endStream bool) error {
	if !st.headersSent {
		return errHeadersNotSent
	}
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	st.undeferLocked()
	for {
		if err := st.writableLocked(); err != nil {
			return err
		}
		if len(p) == 0 {
			if endStream {
				_ = sc.fr.WriteData(st.id, true, nil)
				sc.countFrameLocked()
				sc.dataSent++
				sc.endLocalLocked(st)
			}
			break
		}
		avail := min(st.outflow, sc.outflow, int64(sc.peerMaxFrame))
		if avail <= 0 {
			// Let the client see what was sent so that it can open
			// the window, then wait for WINDOW_UPDATE or a reset.
			sc.flushLocked()
			st.waitingWindow = true
			sc.mu.Unlock()
			<-st.winWake
			sc.mu.Lock()
			st.waitingWindow = false
			continue
		}
		n := min(int64(len(p)), avail)
		end := endStream && n == int64(len(p))
		_ = sc.fr.WriteData(st.id, end, p[:n])
		sc.countFrameLocked()
		sc.dataSent++
		st.outflow -= n
		sc.outflow -= n
		p = p[n:]
		if end {
			sc.endLocalLocked(st)
			break
		}
		if len(sc.out) >= maxRetainedOut {
			sc.flushLocked()
		}
	}
	sc.flushLocked()
	return nil
}

// WriteTrailers implements hhttp.ServerStream: a HEADERS frame with
// END_STREAM, or an empty DATA frame with END_STREAM when t is empty.
func (st *stream) WriteTrailers(t *hhttp.Headers) error {
	if !st.headersSent {
		return errHeadersNotSent
	}
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	st.undeferLocked()
	if err := st.writableLocked(); err != nil {
		return err
	}
	if t == nil || t.Len() == 0 {
		_ = sc.fr.WriteData(st.id, true, nil)
	} else {
		sc.writeHeadersLocked(st.id, t, true, true)
	}
	sc.countFrameLocked()
	sc.endLocalLocked(st)
	sc.flushLocked()
	return nil
}

// Protocol implements hhttp.ServerStream.
func (st *stream) Protocol() string { return "HTTP/2" }

// CloseConnWhenIdle marks the connection to be closed once no stream is
// active; streams keep being served until then. It is Envoy's
// DrainState::Closing on HTTP/2, which the connection manager enters after
// refusing an upgrade (ActiveStream::decodeHeaders sets
// saw_connection_close_, ConnectionManagerImpl::checkForDeferredClose
// closes the connection once streams_ is empty). Envoy closes without a
// GOAWAY; herald sends GOAWAY(NO_ERROR) with the last stream id first, as
// its idle close does, so that the client knows no stream was lost.
func (st *stream) CloseConnWhenIdle() {
	sc := st.sc
	sc.mu.Lock()
	sc.closing, sc.goAwayOnClose = true, true
	if len(sc.streams) == 0 {
		sc.maybeCloseLocked()
	}
	sc.mu.Unlock()
}

// Context implements hhttp.ServerStream. It is created on first use and
// cancelled when the stream is reset or closes, or the connection ends.
func (st *stream) Context() context.Context {
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if st.ctx == nil {
		st.ctx, st.cancel = context.WithCancel(sc.ctx)
		if st.reset || !st.inMap {
			st.cancel()
		}
	}
	return st.ctx
}
