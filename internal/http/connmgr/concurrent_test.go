package connmgr

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
)

// pipeStream is a downstream stream the test feeds chunk by chunk (a
// closed in channel ends the request; a value on reset fails the read, as
// a client's RST_STREAM). Its write half is synchronised, as the HTTP/2
// codec's is.
type pipeStream struct {
	headers *hhttp.Headers
	proto   string
	in      chan []byte
	reset   chan struct{}

	mu       sync.Mutex
	status   string
	body     []byte
	trailers bool
	ended    bool
	changed  chan struct{} // a value after every write
}

func newPipeStream() *pipeStream {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "POST")
	h.Add(hhttp.Path, "/svc/Method")
	h.Add(hhttp.Authority, "example.com")
	return &pipeStream{headers: h, proto: "HTTP/2", in: make(chan []byte), reset: make(chan struct{}), changed: make(chan struct{}, 64)}
}

func (s *pipeStream) RequestHeaders() *hhttp.Headers  { return s.headers }
func (s *pipeStream) RequestEndStream() bool          { return false }
func (s *pipeStream) RequestTrailers() *hhttp.Headers { return nil }
func (s *pipeStream) Protocol() string                { return s.proto }
func (s *pipeStream) Context() context.Context        { return context.Background() }

func (s *pipeStream) ReadBody(p []byte) (int, error) {
	select {
	case b, ok := <-s.in:
		if !ok {
			return 0, io.EOF
		}
		return copy(p, b), nil
	case <-s.reset:
		return 0, errors.New("stream reset by peer")
	}
}

func (s *pipeStream) note(f func()) error {
	s.mu.Lock()
	f()
	s.mu.Unlock()
	s.changed <- struct{}{}
	return nil
}

func (s *pipeStream) WriteHeaders(h *hhttp.Headers, end bool) error {
	return s.note(func() { s.status, s.ended = h.Get(hhttp.Status), end })
}

func (s *pipeStream) WriteData(p []byte, end bool) error {
	return s.note(func() { s.body, s.ended = append(s.body, p...), end })
}

func (s *pipeStream) WriteTrailers(*hhttp.Headers) error {
	return s.note(func() { s.trailers, s.ended = true, true })
}

// waitFor polls the recorded response until cond holds.
func (s *pipeStream) waitFor(t *testing.T, what string, cond func(s *pipeStream) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// duplexFilter echoes each request chunk from a goroutine of its own
// under the ConcurrentEncoder contract, as the router's duplex mode does.
type duplexFilter struct {
	cb    httpfilter.Callbacks
	began bool
	// finishEarly: the encoder completes the response after the first
	// echo, while the request is still open.
	finishEarly bool

	chunks   chan []byte // decode side → encoder; closed at end of request
	done     chan struct{}
	aborted  chan struct{} // closed by Abort
	abortOne sync.Once
	sawCtx   bool // the encoder ended because the context was cancelled
}

func (f *duplexFilter) DecodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	f.chunks, f.done, f.aborted = make(chan []byte, 16), make(chan struct{}), make(chan struct{})
	f.cb.SetAborter(f)
	ce, ok := f.cb.(httpfilter.ConcurrentEncoder)
	if !ok || !ce.BeginConcurrentEncode(f.done) {
		return httpfilter.Continue
	}
	f.began = true
	go f.encode(f.cb.Context())
	return httpfilter.Stop
}

func (f *duplexFilter) encode(ctx context.Context) {
	defer close(f.done)
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, "200")
	if f.cb.EncodeHeaders(h, false) != nil {
		return
	}
	for {
		select {
		case b, ok := <-f.chunks:
			if !ok {
				t := &hhttp.Headers{}
				t.Add("grpc-status", "0")
				f.cb.EncodeTrailers(t)
				return
			}
			if f.cb.EncodeData(b, false) != nil {
				return
			}
			if f.finishEarly {
				f.cb.EncodeData(nil, true)
				return
			}
		case <-ctx.Done():
			f.sawCtx = true
			return
		}
	}
}

func (f *duplexFilter) DecodeData(data []byte, end bool) httpfilter.Status {
	if !f.began {
		return httpfilter.Stop
	}
	if len(data) > 0 {
		f.chunks <- append([]byte(nil), data...)
	}
	if end {
		close(f.chunks)
		<-f.done
	}
	return httpfilter.Stop
}

func (f *duplexFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	if !f.began {
		return httpfilter.Stop
	}
	close(f.chunks)
	<-f.done
	return httpfilter.Stop
}

func (f *duplexFilter) Abort() { f.abortOne.Do(func() { close(f.aborted) }) }

// serveDuplex serves s on a connection (HTTP/2 unless h1) whose chain is
// one duplexFilter; it returns the filter, the store and a channel closed
// when ServeStream returned.
func serveDuplex(s *pipeStream, h1, finishEarly bool) (*duplexFilter, *stats.Store, chan struct{}) {
	return serveDuplexWith(s, h1, finishEarly, 0)
}

func serveDuplexWith(s *pipeStream, h1, finishEarly bool, idle time.Duration) (*duplexFilter, *stats.Store, chan struct{}) {
	store := stats.NewStore()
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store, StreamIdleTimeout: idle}
	f := &duplexFilter{finishEarly: finishEarly}
	cfg.Filters = []FilterFactory{{Name: "duplex", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
		f.cb = cb
		return f
	}}}
	c := &conn{cfg: cfg, nc: &network.Conn{}, http2: !h1}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c.ServeStream(s)
	}()
	return f, store, served
}

func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestConcurrentEncode(t *testing.T) {
	t.Run("ping-pong: each response chunk goes out before the next request chunk", func(t *testing.T) {
		s := newPipeStream()
		f, store, served := serveDuplex(s, false, false)
		for i, msg := range []string{"ping1", "ping2", "ping3"} {
			s.in <- []byte(msg)
			n := i
			s.waitFor(t, "echo of "+msg, func(s *pipeStream) bool {
				return s.status == "200" && len(s.body) == len("pingN")*(n+1)
			})
		}
		close(s.in)
		waitClosed(t, served, "ServeStream")
		if !f.began {
			t.Fatal("BeginConcurrentEncode refused an HTTP/2 stream")
		}
		if got := string(s.body); got != "ping1ping2ping3" || !s.trailers {
			t.Errorf("response body %q trailers %v, want ping1ping2ping3 with trailers", got, s.trailers)
		}
		if got := store.Counter("http.test.downstream_rq_2xx").Value(); got != 1 {
			t.Errorf("downstream_rq_2xx = %d, want 1", got)
		}
	})

	t.Run("downstream reset cancels the encoder before the stream ends", func(t *testing.T) {
		s := newPipeStream()
		f, store, served := serveDuplex(s, false, false)
		s.in <- []byte("x")
		s.waitFor(t, "echo", func(s *pipeStream) bool { return len(s.body) == 1 })
		close(s.reset)
		waitClosed(t, served, "ServeStream")
		waitClosed(t, f.aborted, "Abort")
		if !f.sawCtx {
			t.Error("the encoder did not see the stream context cancelled")
		}
		if got := store.Counter("http.test.downstream_rq_rx_reset").Value(); got != 1 {
			t.Errorf("downstream_rq_rx_reset = %d, want 1", got)
		}
		if s.ended {
			t.Error("a reset stream got a complete response")
		}
	})

	t.Run("response completes before the request: the exchange ends cleanly", func(t *testing.T) {
		s := newPipeStream()
		_, store, served := serveDuplex(s, false, true)
		s.in <- []byte("x")
		s.waitFor(t, "complete response", func(s *pipeStream) bool { return s.ended })
		// The client then resets what is left of its request.
		close(s.reset)
		waitClosed(t, served, "ServeStream")
		if got := store.Counter("http.test.downstream_rq_rx_reset").Value(); got != 0 {
			t.Errorf("downstream_rq_rx_reset = %d, want 0 after a complete response", got)
		}
		if got := store.Counter("http.test.downstream_rq_2xx").Value(); got != 1 {
			t.Errorf("downstream_rq_2xx = %d, want 1", got)
		}
	})

	t.Run("stream idle timeout cancels the encoder", func(t *testing.T) {
		s := newPipeStream()
		f, store, served := serveDuplexWith(s, false, false, 50*time.Millisecond)
		s.in <- []byte("x")
		s.waitFor(t, "echo", func(s *pipeStream) bool { return len(s.body) == 1 })
		// Nothing more either way: the idle timeout fires and ends the
		// encoder through the stream context.
		waitClosed(t, f.done, "the encoder to end")
		if !f.sawCtx {
			t.Error("the encoder ended without seeing the context cancelled")
		}
		// The HTTP/2 codec wakes the body read when the stream is reset.
		close(s.reset)
		waitClosed(t, served, "ServeStream")
		if got := store.Counter("http.test.downstream_rq_idle_timeout").Value(); got != 1 {
			t.Errorf("downstream_rq_idle_timeout = %d, want 1", got)
		}
		if got := store.Counter("http.test.downstream_rq_rx_reset").Value(); got != 0 {
			t.Errorf("downstream_rq_rx_reset = %d, want 0: the timeout ended the stream", got)
		}
	})

	t.Run("HTTP/1.1 downstream refuses", func(t *testing.T) {
		s := newPipeStream()
		s.proto = "HTTP/1.1"
		f, _, served := serveDuplex(s, true, false)
		close(s.in)
		waitClosed(t, served, "ServeStream")
		if f.began {
			t.Error("BeginConcurrentEncode accepted an HTTP/1.1 stream")
		}
	})
}
