package connmgr

import (
	"errors"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// maxKeptBodyStore bounds the body buffer a pooled stream keeps for the
// next request: larger ones are left to the garbage collector.
const maxKeptBodyStore = 64 << 10

var (
	errBufferOutsideHeaders = errors.New("connmgr: BufferRequestBody called outside DecodeHeaders")
	errStreamEnded          = errors.New("connmgr: stream ended while buffering the request body")
)

// requestBuffer is the state of httpfilter.Callbacks.BufferRequestBody:
// Envoy's buffered request body (the decoding buffer) held at one filter.
// Owned by the stream goroutine.
type requestBuffer struct {
	// inHeaders: a DecodeHeaders iteration is running; headersEnd is its
	// endStream.
	inHeaders  bool
	headersEnd bool
	// eof: the codec returned io.EOF; the body is never read again.
	eof bool

	// sinking: BufferRequestBody is reading; what passes the filters before
	// the buffering filter (the stream's decodeLimit is its index) lands in
	// body.
	sinking bool
	max     int
	// over: more than max bytes reached the buffer.
	over bool
	// tooLarge: BufferRequestBody returned ErrBodyTooLarge; the next 413
	// local reply counts downstream_rq_too_large.
	tooLarge bool

	// held: body (with end and trailers) was buffered at filter index at
	// and is passed on to the filters after it when the DecodeHeaders
	// iteration ends.
	held     bool
	at       int
	body     []byte
	end      bool
	trailers *hhttp.Headers

	// store is the stream's reusable body storage; body usually aliases it.
	store []byte
}

// sinkDone reports whether a buffering read can stop: the buffer has the
// whole body or went over its limit.
func (rb *requestBuffer) sinkDone() bool {
	return rb.sinking && (rb.end || rb.over)
}

func (rb *requestBuffer) sinkData(data []byte, endStream bool) {
	rb.body = append(rb.body, data...)
	if endStream {
		rb.end = true
	}
	if len(rb.body) > rb.max {
		rb.over = true
	}
}

func (rb *requestBuffer) sinkTrailers(t *hhttp.Headers) {
	rb.trailers = t
	rb.end = true
}

// keepStore returns the body storage a pooled stream keeps, emptied.
func (rb *requestBuffer) keepStore() []byte {
	if cap(rb.store) > maxKeptBodyStore {
		return nil
	}
	return rb.store[:0]
}

// BufferRequestBody implements httpfilter.Callbacks.
func (as *stream) BufferRequestBody(max int) ([]byte, *hhttp.Headers, error) {
	rb := &as.rb
	j := as.curDecode
	if !rb.inHeaders || j < 0 {
		return nil, nil, errBufferOutsideHeaders
	}
	if rb.headersEnd {
		return nil, nil, nil
	}
	// A filter before this one buffered the body and continued: it has not
	// reached the filters after that one yet. It goes through them into
	// this buffer, then the rest of the body is read (Envoy's filters see
	// a buffered body when the buffering filter continues).
	prevHeld, prevAt, prevBody, prevEnd, prevTrailers := rb.held, rb.at, rb.body, rb.end, rb.trailers
	rb.held, rb.body, rb.end, rb.trailers, rb.over = false, nil, false, nil, false
	if !prevHeld {
		rb.body = rb.store[:0]
	}
	limit := as.decodeLimit
	as.decodeLimit = j
	rb.sinking, rb.max = true, max
	if prevHeld {
		from := prevAt + 1
		if len(prevBody) > 0 || (prevEnd && prevTrailers == nil) {
			as.decodeDataFrom(from, prevBody, prevEnd && prevTrailers == nil)
		}
		if prevTrailers != nil && !as.responseDone() {
			as.decodeTrailersFrom(from, prevTrailers)
		}
	}
	as.readBody()
	if rb.eof && !as.responseDone() {
		// The codec's body ended (a filter before this one may have held
		// end of stream back without answering): what arrived is all.
		rb.end = true
	}
	rb.sinking = false
	as.decodeLimit = limit
	if cap(rb.body) > cap(rb.store) && !prevHeld {
		rb.store = rb.body[:0]
	}
	if as.responseDone() {
		rb.body, rb.trailers = nil, nil
		return nil, nil, errStreamEnded
	}
	rb.held, rb.at = true, j
	if rb.over {
		rb.tooLarge = true
		return rb.body, nil, httpfilter.ErrBodyTooLarge
	}
	return rb.body, rb.trailers, nil
}

// SetBufferedRequestBody implements httpfilter.Callbacks.
func (as *stream) SetBufferedRequestBody(body []byte) {
	if as.rb.held {
		as.rb.body = body
	}
}

// InjectDecodedData implements httpfilter.Callbacks.
func (as *stream) InjectDecodedData(data []byte, endStream bool) {
	// While a filter buffers the body from its DecodeHeaders, the filters
	// before it decode data (their index is below decodeLimit) and may
	// inject; a filter inside DecodeHeaders may not.
	if as.curDecode < 0 || (as.rb.inHeaders && !(as.rb.sinking && as.curDecode < as.decodeLimit)) {
		return
	}
	as.decodeDataFrom(as.curDecode+1, data, endStream)
}

// flushBufferedBody passes the body a filter buffered during DecodeHeaders
// on to the filters after it, now that they have seen the headers: one
// DecodeData, then the trailers. Nothing is passed when the buffering
// filter stopped (decodeLimit is then just past it).
func (as *stream) flushBufferedBody() {
	rb := &as.rb
	from, body, end, t := rb.at+1, rb.body, rb.end, rb.trailers
	rb.held, rb.body, rb.trailers = false, nil, nil
	if as.responseDone() || from >= as.decodeLimit {
		return
	}
	if len(body) > 0 || (end && t == nil) {
		as.decodeDataFrom(from, body, end && t == nil)
	}
	if t != nil && !as.responseDone() {
		as.decodeTrailersFrom(from, t)
	}
}
