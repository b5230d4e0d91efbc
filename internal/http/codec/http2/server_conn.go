package http2

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// errConnClosed is what stream operations return once the connection is gone.
var errConnClosed = errors.New("http2: connection closed")

// errStreamEnded is returned by writes after the stream ended or was reset
// locally.
var errStreamEnded = errors.New("http2: stream ended")

// closeWriter is implemented by *net.TCPConn, *tls.Conn and peekedConn.
type closeWriter interface{ CloseWrite() error }

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// serverConn is one downstream HTTP/2 connection. The goroutine running
// ServeConn reads and processes every frame; stream goroutines write their
// own frames under mu. Nothing is handed between goroutines per frame.
type serverConn struct {
	// Immutable after newServerConn.
	srv    *Server
	conn   net.Conn
	h      hhttp.StreamHandler
	fr     *xhttp2.Framer
	br     *bufio.Reader
	dec    *hpack.Decoder
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader exits
	wg     sync.WaitGroup

	// Owned by the reader goroutine.
	hb             headerBlock
	emptyFrames    int // consecutive empty DATA/HEADERS/CONTINUATION without END_STREAM
	priorityFrames int
	windowUpdates  int
	settingsAcked  bool // our SETTINGS were acknowledged

	// Keepalive (connection_keepalive): pingOut is set while a PING waits
	// for its ACK; the timers are created once and guarded by mu.
	pingOut   atomic.Bool
	kaSend    *time.Timer
	kaTimeout *time.Timer

	// Guarded by mu.
	mu            sync.Mutex
	recentClosed  [32]uint32 // ring of recently closed stream ids (STREAM_CLOSED vs PROTOCOL_ERROR)
	recentPos     int
	streams       map[uint32]*stream
	maxClientID   uint32 // highest stream id the client opened
	openedStreams int    // streams whose response headers were sent (Envoy's opened_streams)
	dataSent      int    // DATA frames sent
	outflow       int64  // connection send window
	inflow        int32  // connection receive window left to the peer
	inflowPending int32  // consumed bytes not yet returned with WINDOW_UPDATE
	peerWindow    int32  // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame  uint32 // peer's SETTINGS_MAX_FRAME_SIZE
	enc           *hpack.Encoder
	hbuf          headerBuf
	out           []byte // frames waiting to be written
	spare         []byte
	queuedFrames  int // frames in out
	queuedControl int // control frames in out
	flightFrames  int // frames being written
	flightControl int
	flushing      bool // a goroutine is writing to conn with mu released
	deferred      int  // streams whose HEADERS wait in out for their DATA (DeferHeadersFlush)
	wclosed       bool // no new frames: shutting down or broken
	broken        bool // the write side failed or the connection is gone
	closeAfter    bool // close the write side once out is flushed
	closing       bool // shutting down: close once the active streams finish
	goAwayOnClose bool // CloseConnWhenIdle: send the final GOAWAY when closing
	refuseNew     bool // final GOAWAY sent or peer GOAWAY received
	goAwaySent    bool
	lastID        uint32 // last-stream-id of the final GOAWAY
	idleTimer     *time.Timer
	drainTimer    *time.Timer
	// Premature resets (Envoy's closed_non_internally_destroyed_requests_
	// and number_premature_stream_resets_).
	closedStreams   int
	prematureResets int
	prematureClosed bool
}

// headerBuf collects one encoded header block.
type headerBuf struct{ b []byte }

func (w *headerBuf) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// outWriter appends the framer's frames to sc.out; it is only called with
// sc.mu held.
type outWriter serverConn

func (w *outWriter) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}

func newServerConn(s *Server, c net.Conn, h hhttp.StreamHandler) *serverConn {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	sc := &serverConn{
		srv:          s,
		conn:         c,
		h:            h,
		br:           br,
		done:         make(chan struct{}),
		streams:      make(map[uint32]*stream),
		outflow:      65535,
		inflow:       int32(s.connWindow),
		peerWindow:   65535,
		peerMaxFrame: 16384,
	}
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	sc.fr = xhttp2.NewFramer((*outWriter)(sc), br)
	sc.fr.SetReuseFrames()
	// herald does not advertise SETTINGS_MAX_FRAME_SIZE, so the RFC
	// default applies; larger frames are FRAME_SIZE_ERROR (RFC 9113 §4.2).
	sc.fr.SetMaxReadFrameSize(16384)
	// The decoder allows the RFC default table until the client
	// acknowledged a smaller SETTINGS_HEADER_TABLE_SIZE (processSettings).
	sc.dec = hpack.NewDecoder(max(s.hpackTable, defaultHpackTableSize), sc.onHeaderField)
	sc.enc = hpack.NewEncoder(&sc.hbuf)
	if s.hpackTable < defaultHpackTableSize {
		sc.enc.SetMaxDynamicTableSizeLimit(s.hpackTable)
	}
	return sc
}

// connError is a connection error: GOAWAY with code, then close.
type connError struct {
	code   xhttp2.ErrCode
	reason string
}

func (e connError) Error() string {
	return "http2: connection error " + e.code.String() + ": " + e.reason
}

// streamError resets one stream with code.
type streamError struct {
	id   uint32
	code xhttp2.ErrCode
}

func (e streamError) Error() string { return "http2: stream error " + e.code.String() }

// serve runs the reader loop until the connection ends, then tears down.
func (sc *serverConn) serve(drain <-chan struct{}) {
	defer sc.teardown()
	if drain != nil {
		sc.wg.Add(1)
		go sc.watchDrain(drain)
	}
	var preface [len(Preface)]byte
	if _, err := io.ReadFull(sc.br, preface[:]); err != nil || string(preface[:]) != Preface {
		// nghttp2 (Envoy) drops a connection with a bad client magic.
		return
	}
	sc.mu.Lock()
	// Envoy's sendSettingsHelper (source/common/http/http2/codec_impl.cc)
	// sends hpack_table_size, allow_connect, max_concurrent_streams and
	// initial_stream_window_size; herald leaves out the values equal to
	// the RFC defaults, and SETTINGS_ENABLE_CONNECT_PROTOCOL unless
	// allow_connect is set.
	settings := [5]xhttp2.Setting{
		{ID: xhttp2.SettingMaxConcurrentStreams, Val: sc.srv.maxStreams},
		{ID: xhttp2.SettingInitialWindowSize, Val: sc.srv.streamWindow},
		{ID: xhttp2.SettingMaxHeaderListSize, Val: sc.srv.maxHeaderList},
	}
	n := 3
	if sc.srv.hpackTable != defaultHpackTableSize {
		settings[n] = xhttp2.Setting{ID: xhttp2.SettingHeaderTableSize, Val: sc.srv.hpackTable}
		n++
	}
	if sc.srv.allowConnect {
		settings[n] = xhttp2.Setting{ID: xhttp2.SettingEnableConnectProtocol, Val: 1}
		n++
	}
	_ = sc.fr.WriteSettings(settings[:n]...)
	if d := sc.srv.connWindow - 65535; d > 0 {
		_ = sc.fr.WriteWindowUpdate(0, d)
	}
	if sc.srv.idleTimeout > 0 {
		sc.idleTimer = time.AfterFunc(sc.srv.idleTimeout, sc.onIdle)
	}
	sc.startKeepaliveLocked()
	sc.flushLocked()
	sc.mu.Unlock()

	first := true
	for {
		if sc.br.Buffered() == 0 {
			sc.mu.Lock()
			sc.flushLocked()
			sc.mu.Unlock()
		}
		f, err := sc.fr.ReadFrame()
		if err != nil {
			sc.onReadError(err)
			return
		}
		if sc.pingOut.Load() {
			sc.onFrameWhilePinging(f)
		}
		if first {
			// RFC 9113 §3.4: the preface ends with a SETTINGS frame.
			if _, ok := f.(*xhttp2.SettingsFrame); !ok {
				sc.goAwayAndClose(xhttp2.ErrCodeProtocol)
				return
			}
			first = false
		}
		if err := sc.processFrame(f); err != nil {
			var se streamError
			if errors.As(err, &se) {
				sc.mu.Lock()
				sc.resetStreamLocked(se.id, se.code)
				sc.mu.Unlock()
				continue
			}
			var ce connError
			if errors.As(err, &ce) {
				slog.Debug("http2: connection error", "code", ce.code.String(), "reason", ce.reason)
				sc.goAwayAndClose(ce.code)
				return
			}
			sc.closeNow()
			return
		}
	}
}

// onReadError maps a Framer error onto RFC 9113's handling.
func (sc *serverConn) onReadError(err error) {
	var ce xhttp2.ConnectionError
	var se xhttp2.StreamError
	switch {
	case errors.As(err, &ce):
		sc.goAwayAndClose(xhttp2.ErrCode(ce))
	case errors.Is(err, xhttp2.ErrFrameTooLarge):
		sc.goAwayAndClose(xhttp2.ErrCodeFrameSize)
	case errors.As(err, &se):
		// The Framer reports a few malformed frames as stream errors
		// (zero WINDOW_UPDATE increment, bad HEADERS padding). Its
		// reader cannot resume after them, so this is the last frame.
		sc.mu.Lock()
		sc.resetStreamLocked(se.StreamID, se.Code)
		sc.mu.Unlock()
		sc.goAwayAndClose(xhttp2.ErrCodeProtocol)
	default:
		sc.closeNow()
	}
}

// goAwayAndClose sends GOAWAY(code) and closes the connection, lingering
// up to closeLinger so that the peer reads the GOAWAY before a TCP reset
// (Envoy's delayed close).
func (sc *serverConn) goAwayAndClose(code xhttp2.ErrCode) {
	sc.mu.Lock()
	if !sc.wclosed {
		sc.writeGoAwayLocked(sc.maxClientID, code)
	}
	sc.shutdownWriteLocked()
	sc.mu.Unlock()
	_, _ = io.Copy(io.Discard, sc.br)
}

func (sc *serverConn) closeNow() { sc.conn.Close() }

// teardown resets every stream, waits for their handlers and releases the
// connection's buffers.
func (sc *serverConn) teardown() {
	sc.conn.Close()
	sc.mu.Lock()
	sc.wclosed, sc.broken, sc.closing = true, true, true
	for id, st := range sc.streams {
		st.abortLocked(errConnClosed)
		delete(sc.streams, id)
		st.inMap = false
		st.maybeReleaseLocked()
	}
	if sc.idleTimer != nil {
		sc.idleTimer.Stop()
	}
	if sc.drainTimer != nil {
		sc.drainTimer.Stop()
	}
	if sc.kaSend != nil {
		sc.kaSend.Stop()
	}
	if sc.kaTimeout != nil {
		sc.kaTimeout.Stop()
	}
	sc.mu.Unlock()
	close(sc.done)
	sc.cancel()
	sc.wg.Wait()
	sc.br.Reset(nil)
	readerPool.Put(sc.br)
	sc.br = nil
}

// watchDrain starts the drain sequence when drain closes.
func (sc *serverConn) watchDrain(drain <-chan struct{}) {
	defer sc.wg.Done()
	select {
	case <-drain:
		sc.startDrain()
	case <-sc.done:
	}
}

// startDrain sends Envoy's shutdown notice: GOAWAY with last-stream-id
// 2^31-1, then the final GOAWAY after the drain timeout
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpconnectionmanager-drain-timeout).
func (sc *serverConn) startDrain() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.wclosed || sc.goAwaySent {
		return
	}
	sc.goAwaySent = true
	sc.writeGoAwayLocked(1<<31-1, xhttp2.ErrCodeNo)
	sc.drainTimer = time.AfterFunc(sc.srv.drainTimeout, sc.finalGoAway)
	sc.flushLocked()
}

// finalGoAway sends the GOAWAY carrying the last stream processed; newer
// streams are refused and the connection closes when none is active.
func (sc *serverConn) finalGoAway() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.wclosed || sc.refuseNew {
		return
	}
	sc.refuseNew = true
	sc.closing = true
	sc.lastID = sc.maxClientID
	sc.writeGoAwayLocked(sc.lastID, xhttp2.ErrCodeNo)
	sc.flushLocked()
	sc.maybeCloseLocked()
}

// onIdle fires IdleTimeout after the last stream closed: GOAWAY, then close.
func (sc *serverConn) onIdle() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.wclosed || len(sc.streams) > 0 {
		return
	}
	sc.refuseNew, sc.closing = true, true
	sc.lastID = sc.maxClientID
	sc.writeGoAwayLocked(sc.lastID, xhttp2.ErrCodeNo)
	sc.flushLocked()
	sc.maybeCloseLocked()
}

// maybeCloseLocked closes a connection that is shutting down once no stream
// is active. The reader goroutine then sees EOF (or the linger deadline) and
// tears down.
func (sc *serverConn) maybeCloseLocked() {
	if !sc.closing || len(sc.streams) > 0 || sc.wclosed {
		return
	}
	if sc.goAwayOnClose && !sc.refuseNew {
		sc.refuseNew = true
		sc.lastID = sc.maxClientID
		sc.writeGoAwayLocked(sc.lastID, xhttp2.ErrCodeNo)
	}
	sc.shutdownWriteLocked()
}

// shutdownWriteLocked stops accepting frames, flushes what is queued, then
// half-closes the connection and bounds how long the reader lingers.
func (sc *serverConn) shutdownWriteLocked() {
	sc.wclosed = true
	sc.closeAfter = true
	_ = sc.conn.SetReadDeadline(time.Now().Add(closeLinger))
	sc.flushLocked()
}

// processFrame handles one frame on the reader goroutine.
func (sc *serverConn) processFrame(f xhttp2.Frame) error {
	switch f := f.(type) {
	case *xhttp2.DataFrame:
		return sc.processData(f)
	case *xhttp2.HeadersFrame:
		return sc.processHeaders(f)
	case *xhttp2.ContinuationFrame:
		return sc.processContinuation(f)
	case *xhttp2.SettingsFrame:
		return sc.processSettings(f)
	case *xhttp2.PingFrame:
		if f.IsAck() {
			sc.onPingAck()
			return nil
		}
		sc.mu.Lock()
		if !sc.wclosed {
			_ = sc.fr.WritePing(true, f.Data)
			sc.countControlLocked()
		}
		sc.mu.Unlock()
		return nil
	case *xhttp2.WindowUpdateFrame:
		return sc.processWindowUpdate(f)
	case *xhttp2.RSTStreamFrame:
		return sc.processRSTStream(f)
	case *xhttp2.PriorityFrame:
		// PRIORITY is ignored (RFC 9113 deprecates the scheme), but a
		// self-dependency is still a stream error and floods are counted.
		sc.priorityFrames++
		sc.mu.Lock()
		opened := sc.openedStreams
		sc.mu.Unlock()
		if sc.priorityFrames > sc.srv.limits.priorityPerStream*(1+opened) {
			return connError{xhttp2.ErrCodeEnhanceYourCalm, "inbound priority frames flood"}
		}
		if f.StreamDep == f.StreamID {
			return streamError{f.StreamID, xhttp2.ErrCodeProtocol}
		}
		return nil
	case *xhttp2.GoAwayFrame:
		// A client's GOAWAY changes nothing for the server: Envoy "does
		// nothing with remote go away frames" (ConnectionManagerImpl::
		// onGoAway), so the connection keeps being served — PINGs
		// answered, open streams finished — until the client closes it or
		// the idle timeout ends it. Closing at once raced with frames the
		// client sent after its GOAWAY (h2spec http2/7/1).
		return nil
	case *xhttp2.PushPromiseFrame:
		// A client must not push (RFC 9113 §8.4).
		return connError{xhttp2.ErrCodeProtocol, "push promise from client"}
	default:
		// Unknown frame types are ignored (RFC 9113 §5.5).
		return nil
	}
}

// countEmpty applies Envoy's max_consecutive_inbound_frames_with_empty_payload.
func (sc *serverConn) countEmpty(n int, end bool) error {
	if n > 0 || end {
		sc.emptyFrames = 0
		return nil
	}
	sc.emptyFrames++
	if sc.emptyFrames > sc.srv.limits.emptyFrames {
		return connError{xhttp2.ErrCodeEnhanceYourCalm, "inbound empty frames flood"}
	}
	return nil
}

// rememberClosed records a closed stream id; mu held.
func (sc *serverConn) rememberClosed(id uint32) {
	sc.recentClosed[sc.recentPos] = id
	sc.recentPos = (sc.recentPos + 1) % len(sc.recentClosed)
}

// recentlyClosed reports whether id closed recently; mu held.
func (sc *serverConn) recentlyClosed(id uint32) bool {
	for _, c := range sc.recentClosed {
		if c == id {
			return true
		}
	}
	return false
}

func (sc *serverConn) processData(f *xhttp2.DataFrame) error {
	id := f.StreamID
	data := f.Data()
	flowLen := int32(f.Length) // padding counts against flow control
	if err := sc.countEmpty(len(data), f.StreamEnded()); err != nil {
		return err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if flowLen > sc.inflow {
		return connError{xhttp2.ErrCodeFlowControl, "connection window exceeded"}
	}
	sc.inflow -= flowLen
	st := sc.streams[id]
	if st == nil || st.remoteEnded || st.reset {
		// The bytes will never be read: give them back to the
		// connection window now.
		sc.returnConnWindowLocked(flowLen)
		if id > sc.maxClientID {
			return connError{xhttp2.ErrCodeProtocol, "DATA on idle stream"}
		}
		return streamError{id, xhttp2.ErrCodeStreamClosed}
	}
	if flowLen > st.inflow {
		sc.returnConnWindowLocked(flowLen)
		return streamError{id, xhttp2.ErrCodeFlowControl}
	}
	st.inflow -= flowLen
	if pad := flowLen - int32(len(data)); pad > 0 {
		st.inflow += pad
		sc.returnConnWindowLocked(pad)
	}
	st.recvLen += int64(len(data))
	if st.declaredLen >= 0 && (st.recvLen > st.declaredLen || f.StreamEnded() && st.recvLen != st.declaredLen) {
		// RFC 9113 §8.1.1: content-length mismatch makes the request
		// malformed; Envoy terminates the connection by default
		// (override_stream_error_on_invalid_http_message).
		if sc.srv.streamErrors {
			return streamError{id, xhttp2.ErrCodeProtocol}
		}
		return connError{xhttp2.ErrCodeProtocol, "content-length mismatch"}
	}
	if len(data) > 0 {
		st.body = append(st.body, data...)
	}
	if f.StreamEnded() {
		sc.endRemoteLocked(st)
	}
	st.wakeBody()
	return nil
}

// endRemoteLocked records END_STREAM from the client.
func (sc *serverConn) endRemoteLocked(st *stream) {
	st.remoteEnded = true
	if st.localEnded {
		sc.closeStreamLocked(st)
	}
}

func (sc *serverConn) processSettings(f *xhttp2.SettingsFrame) error {
	if f.IsAck() {
		if !sc.settingsAcked {
			sc.settingsAcked = true
			// The client now knows our hpack_table_size.
			sc.dec.SetAllowedMaxDynamicTableSize(sc.srv.hpackTable)
		}
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	err := f.ForeachSetting(func(s xhttp2.Setting) error {
		if err := s.Valid(); err != nil {
			var ce xhttp2.ConnectionError
			if errors.As(err, &ce) {
				return connError{xhttp2.ErrCode(ce), "bad setting " + s.ID.String()}
			}
			return connError{xhttp2.ErrCodeProtocol, "bad setting"}
		}
		switch s.ID {
		case xhttp2.SettingHeaderTableSize:
			// hpack_table_size also caps what herald's encoder uses.
			sc.enc.SetMaxDynamicTableSizeLimit(min(s.Val, sc.srv.hpackTable))
		case xhttp2.SettingInitialWindowSize:
			// RFC 9113 §6.9.2: adjust every open stream by the delta;
			// windows may go negative.
			delta := int64(s.Val) - int64(sc.peerWindow)
			sc.peerWindow = int32(s.Val)
			for _, st := range sc.streams {
				st.outflow += delta
				if st.outflow > maxSettingValue {
					return connError{xhttp2.ErrCodeFlowControl, "stream window overflow"}
				}
				if delta > 0 {
					st.wakeWindow()
				}
			}
		case xhttp2.SettingMaxFrameSize:
			sc.peerMaxFrame = s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !sc.wclosed {
		_ = sc.fr.WriteSettingsAck()
		sc.countControlLocked()
	}
	return nil
}

func (sc *serverConn) processWindowUpdate(f *xhttp2.WindowUpdateFrame) error {
	sc.windowUpdates++
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// Envoy's max_inbound_window_update_frames_per_data_frame_sent.
	if sc.windowUpdates > 5+2*(sc.openedStreams+sc.srv.limits.windowUpdatesPerData*sc.dataSent) {
		return connError{xhttp2.ErrCodeEnhanceYourCalm, "inbound window update frames flood"}
	}
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		sc.outflow += inc
		if sc.outflow > maxSettingValue {
			return connError{xhttp2.ErrCodeFlowControl, "connection window overflow"}
		}
		for _, st := range sc.streams {
			if st.waitingWindow {
				st.wakeWindow()
			}
		}
		return nil
	}
	st := sc.streams[f.StreamID]
	if st == nil {
		if f.StreamID > sc.maxClientID {
			return connError{xhttp2.ErrCodeProtocol, "WINDOW_UPDATE on idle stream"}
		}
		return nil
	}
	st.outflow += inc
	if st.outflow > maxSettingValue {
		return streamError{f.StreamID, xhttp2.ErrCodeFlowControl}
	}
	st.wakeWindow()
	return nil
}

func (sc *serverConn) processRSTStream(f *xhttp2.RSTStreamFrame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	st := sc.streams[f.StreamID]
	if st == nil {
		if f.StreamID > sc.maxClientID {
			return connError{xhttp2.ErrCodeProtocol, "RST_STREAM on idle stream"}
		}
		return nil
	}
	st.abortLocked(xhttp2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
	sc.returnConnWindowLocked(int32(len(st.body) - st.bodyOff))
	st.body, st.bodyOff = st.body[:0], 0
	sc.closeStreamLocked(st)
	return nil
}

// resetStreamLocked sends RST_STREAM(code) and closes the stream if open.
func (sc *serverConn) resetStreamLocked(id uint32, code xhttp2.ErrCode) {
	if !sc.wclosed {
		_ = sc.fr.WriteRSTStream(id, code)
		sc.countControlLocked()
	}
	if st := sc.streams[id]; st != nil {
		st.abortLocked(errStreamEnded)
		sc.returnConnWindowLocked(int32(len(st.body) - st.bodyOff))
		st.body, st.bodyOff = st.body[:0], 0
		sc.closeStreamLocked(st)
	}
	sc.rememberClosed(id)
}

// closeStreamLocked removes st from the active set. Its handler may still run
// and read buffered body bytes.
func (sc *serverConn) closeStreamLocked(st *stream) {
	if !st.inMap {
		return
	}
	delete(sc.streams, st.id)
	st.inMap = false
	sc.rememberClosed(st.id)
	if st.cancel != nil {
		st.cancel()
	}
	sc.countClosedLocked(st)
	st.maybeReleaseLocked()
	if len(sc.streams) == 0 {
		if sc.idleTimer != nil && !sc.closing {
			sc.idleTimer.Reset(sc.srv.idleTimeout)
		}
		sc.maybeCloseLocked()
	}
}

// returnConnWindowLocked gives n consumed bytes back to the connection
// window, announcing them once half the window is used (as nghttp2 does).
func (sc *serverConn) returnConnWindowLocked(n int32) {
	if n <= 0 {
		return
	}
	sc.inflowPending += n
	if sc.inflowPending >= int32(sc.srv.connWindow/2) && !sc.wclosed {
		_ = sc.fr.WriteWindowUpdate(0, uint32(sc.inflowPending))
		sc.queuedFrames++
		sc.inflow += sc.inflowPending
		sc.inflowPending = 0
	}
}

// startKeepaliveLocked arms connection_keepalive's PING timer.
func (sc *serverConn) startKeepaliveLocked() {
	ka := sc.srv.keepalive
	if ka.Timeout <= 0 {
		return
	}
	sc.kaTimeout = time.AfterFunc(ka.Timeout, sc.onKeepaliveTimeout)
	sc.kaTimeout.Stop()
	if ka.Interval > 0 {
		sc.kaSend = time.AfterFunc(keepaliveInterval(ka), sc.sendKeepalive)
	}
}

// keepaliveInterval is Envoy's ConnectionImpl::onKeepaliveResponse: the
// interval plus a random part of interval_jitter percent of it.
func keepaliveInterval(ka hhttp.KeepaliveOptions) time.Duration {
	d := ka.Interval
	if j := time.Duration(float64(d) * ka.IntervalJitterPercent / 100); j > 0 {
		d += rand.N(j)
	}
	return d
}

// sendKeepalive sends a keepalive PING unless one is outstanding, and arms
// the timeout (Envoy's ConnectionImpl::sendKeepalive; the payload is the
// time in milliseconds, as Envoy's).
func (sc *serverConn) sendKeepalive() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.wclosed || sc.pingOut.Load() {
		return
	}
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], uint64(time.Now().UnixMilli()))
	_ = sc.fr.WritePing(false, data)
	sc.countControlLocked()
	sc.pingOut.Store(true)
	sc.kaTimeout.Reset(sc.srv.keepalive.Timeout)
	sc.flushLocked()
}

// onFrameWhilePinging extends the PING timeout on any frame but a PING ACK:
// Envoy's onBeforeFrameReceived, so that a busy connection whose ACK is
// queued behind other frames is not closed.
func (sc *serverConn) onFrameWhilePinging(f xhttp2.Frame) {
	if p, ok := f.(*xhttp2.PingFrame); ok && p.IsAck() {
		return
	}
	sc.mu.Lock()
	if sc.kaTimeout != nil && sc.pingOut.Load() {
		sc.kaTimeout.Reset(sc.srv.keepalive.Timeout)
	}
	sc.mu.Unlock()
}

// onPingAck is Envoy's onKeepaliveResponse: any PING ACK stops the timeout
// and schedules the next PING.
func (sc *serverConn) onPingAck() {
	if sc.kaTimeout == nil {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.pingOut.Store(false)
	sc.kaTimeout.Stop()
	if sc.kaSend != nil && !sc.wclosed {
		sc.kaSend.Reset(keepaliveInterval(sc.srv.keepalive))
	}
}

// onKeepaliveTimeout closes the connection without flushing: Envoy's
// onKeepaliveResponseTimeout ("h2_ping_timeout", ConnectionCloseType::NoFlush).
func (sc *serverConn) onKeepaliveTimeout() {
	if !sc.pingOut.Load() {
		return
	}
	slog.Debug("http2: closing connection due to keepalive timeout")
	sc.mu.Lock()
	sc.breakLocked()
	sc.mu.Unlock()
}

// countClosedLocked records a stream leaving the connection for Envoy's
// premature-reset check and applies it.
func (sc *serverConn) countClosedLocked(st *stream) {
	sc.closedStreams++
	if !st.responded && prematureLifetime(time.Since(st.start), sc.srv.prematureLifetime) {
		sc.prematureResets++
	}
	if sc.prematureResets > 0 && tooManyPrematureResets(sc.closedStreams, sc.prematureResets, sc.srv.prematureTotal) {
		sc.closeForPrematureResetsLocked()
	}
}

// prematureLifetime is Envoy's isPrematureRstStream lifetime test: a stream
// is young while its lifetime in whole seconds is not above
// premature_reset_min_stream_lifetime_seconds. (The other half, no response
// code, is the caller's st.responded.)
func prematureLifetime(lifetime, minLifetime time.Duration) bool {
	return lifetime/time.Second <= minLifetime/time.Second
}

// tooManyPrematureResets is Envoy's maybeDrainDueToPrematureResets: once
// total streams closed, at least half of them premature; before that, as
// soon as the premature ones alone reach half of total.
func tooManyPrematureResets(closed, premature, total int) bool {
	if closed < total {
		return premature*2 >= total
	}
	return premature*2 >= closed
}

// closeForPrematureResetsLocked ends a connection that resets streams too
// quickly (CVE-2023-44487): the counter, then GOAWAY and close, resetting
// the active streams, as Envoy does with
// envoy.restart_features.send_goaway_for_premature_rst_streams
// (ConnectionManagerImpl::maybeDrainDueToPrematureResets,
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/stats
// downstream_rq_too_many_premature_resets).
func (sc *serverConn) closeForPrematureResetsLocked() {
	if sc.prematureClosed || sc.wclosed {
		return
	}
	sc.prematureClosed = true
	slog.Debug("http2: closing connection for too many premature stream resets",
		"closed", sc.closedStreams, "premature", sc.prematureResets)
	if f := sc.srv.onPremature; f != nil {
		f()
	}
	sc.refuseNew, sc.closing = true, true
	sc.writeGoAwayLocked(sc.maxClientID, xhttp2.ErrCodeNo)
	for _, other := range sc.streams {
		other.abortLocked(errConnClosed)
	}
	sc.shutdownWriteLocked()
}
