package httpfilter

// ConcurrentEncoder is implemented by Callbacks whose stream can take the
// response from one other goroutine while request events go on: full-duplex
// streaming, where an upstream answers before the request has ended (gRPC
// bidirectional streams). The router uses it; most filters never need it.
//
// The contract, from a successful BeginConcurrentEncode until done is
// closed:
//
//   - The encoder — exactly one goroutine the filter starts after
//     BeginConcurrentEncode returned true — owns the response: it alone
//     calls EncodeHeaders, EncodeData, EncodeTrailers, SendLocalReply and
//     ResponseStarted, and sets response fields and flags of StreamInfo.
//     It may call Context. It must not call SetAborter. It closes done when
//     it makes no more calls; done must close once Context is cancelled.
//   - The stream goroutine keeps delivering DecodeData and DecodeTrailers.
//     Decoder filters running there must not answer nor read the response
//     state (SendLocalReply, Encode*, ResponseStarted); the filter that
//     began waits for done before it returns from its last decode event.
//   - The connection manager reads no response state until done is closed.
//     Before it answers the stream itself (downstream reset, codec error,
//     stream timeout, a filter chain that did not answer) it cancels
//     Context, calls the registered Aborter and waits for done.
//
// Streams whose downstream codec cannot read and write at once (HTTP/1.1,
// whose halves share one connection's buffers, except for an allowed
// upgrade or CONNECT, whose raw halves the codec keeps apart), or whose
// request body a filter is buffering, refuse; the caller then stays on the stream
// goroutine (half-duplex: the response is read once the request ended).
type ConcurrentEncoder interface {
	// BeginConcurrentEncode hands the response to another goroutine until
	// done is closed. Call it from a decode event; it reports false when
	// the stream cannot, and then nothing changed.
	BeginConcurrentEncode(done <-chan struct{}) bool
}
