package connmgr

import "github.com/herald-proxy/herald/internal/http/httpfilter"

// Concurrent encoding (httpfilter.ConcurrentEncoder): a filter — the router
// streaming a request to an HTTP/2 upstream — encodes the response from its
// own goroutine while this stream's goroutine keeps reading the request
// body and passing it through DecodeData. While as.conc is set, the
// response fields of the stream (responseStarted, responseComplete,
// closeConn, downstreamGone, info's response fields and flags, curEncode,
// dataFollows) belong to that goroutine; the decode side reads them only
// once as.conc is closed, which orders the encoder's writes before the
// reads.

var _ httpfilter.ConcurrentEncoder = (*stream)(nil)

// BeginConcurrentEncode implements httpfilter.ConcurrentEncoder. An
// HTTP/2 downstream qualifies: its codec's read and write halves are
// synchronised, while the HTTP/1.1 codec's share the connection's buffers,
// except in its upgrade mode, so an HTTP/1.1 stream qualifies only as an
// allowed upgrade (upgrade.go). HTTP/3 qualifies like HTTP/2: its codec
// reads the request from the QUIC stream's receive side and writes the
// response to its send side, which quic-go allows at once.
func (as *stream) BeginConcurrentEncode(done <-chan struct{}) bool {
	if done == nil || as.conc != nil || as.curDecode < 0 || (!as.c.http2 && !as.upgrade) ||
		as.rb.sinking || as.responseStarted || as.responseComplete {
		return false
	}
	// The context must exist before the encoder may call Context: it is
	// created lazily, on the decode side.
	as.Context()
	as.conc = done
	return true
}

// responseDone is responseComplete as the decode side may read it: while a
// concurrent encoder runs, the response is not complete.
func (as *stream) responseDone() bool {
	if as.conc != nil && !as.concurrentFinished() {
		return false
	}
	return as.responseComplete
}

// concurrentFinished reports whether the concurrent encoder has finished,
// and then forgets it.
func (as *stream) concurrentFinished() bool {
	select {
	case <-as.conc:
		as.conc = nil
		return true
	default:
		return false
	}
}

// awaitConcurrent waits for a concurrent encoder to finish on its own.
func (as *stream) awaitConcurrent() {
	if as.conc != nil {
		<-as.conc
		as.conc = nil
	}
}

// stopConcurrent ends a concurrent encoder before the stream answers for
// itself: it cancels the stream context and wakes the aborter, then waits.
// It reports whether an encoder was running.
func (as *stream) stopConcurrent() bool {
	if as.conc == nil {
		return false
	}
	if !as.concurrentFinished() {
		as.cancel()
		if as.aborter != nil {
			as.aborter.Abort()
		}
		as.awaitConcurrent()
	}
	return true
}
