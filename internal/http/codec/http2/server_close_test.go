package http2

import (
	"io"
	"testing"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestServerCloseConnWhenIdle: a stream's CloseConnWhenIdle (the
// connection manager after refusing an upgrade) leaves the other streams
// and new ones served; once none is active the connection gets
// GOAWAY(NO_ERROR) with the last stream id and closes (Envoy's
// DrainState::Closing and checkForDeferredClose).
func TestServerCloseConnWhenIdle(t *testing.T) {
	handler := streamFunc(func(s hhttp.ServerStream) {
		h := &hhttp.Headers{}
		switch s.RequestHeaders().Path() {
		case "/refuse":
			s.(interface{ CloseConnWhenIdle() }).CloseConnWhenIdle()
			h.SetStatus(403)
			_ = s.WriteHeaders(h, true)
		case "/hold":
			// Answers at once and ends when the request does.
			h.SetStatus(200)
			if s.WriteHeaders(h, false) != nil {
				return
			}
			_, _ = io.Copy(io.Discard, bodyReader{s})
			_ = s.WriteData(nil, true)
		default:
			h.SetStatus(204)
			_ = s.WriteHeaders(h, true)
		}
	})
	opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{AllowConnect: true}}
	ts := startServer(t, opts, handler, nil)
	rc, _ := dialRawSettings(t, ts.addr)

	// noGoAway fails the test on a GOAWAY while streams are still due.
	noGoAway := func(match func(xhttp2.Frame) bool) func(xhttp2.Frame) bool {
		return func(f xhttp2.Frame) bool {
			if g, ok := f.(*xhttp2.GoAwayFrame); ok {
				t.Fatalf("GOAWAY %v (last stream %d) before the connection was idle", g.ErrCode, g.LastStreamID)
			}
			return match(f)
		}
	}
	status := func(id uint32, want string) func(xhttp2.Frame) bool {
		return func(f xhttp2.Frame) bool {
			mh, ok := f.(*xhttp2.MetaHeadersFrame)
			if !ok || mh.StreamID != id {
				return false
			}
			if got := mh.PseudoValue("status"); got != want {
				t.Fatalf("stream %d: status %s, want %s", id, got, want)
			}
			return true
		}
	}

	rc.headers(1, false, ":method", "POST", ":scheme", "http", ":authority", "example.com", ":path", "/hold")
	rc.waitFor("stream 1's 200", noGoAway(status(1, "200")))
	rc.headers(3, false, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "http",
		":path", "/refuse", ":authority", "example.com")
	rc.waitFor("stream 3's 403", noGoAway(status(3, "403")))
	// Still serving: a new stream is answered.
	rc.headers(5, true, getReq...)
	rc.waitFor("stream 5's 204", noGoAway(status(5, "204")))
	// The last active stream ends: GOAWAY, then the close.
	if err := rc.fr.WriteData(1, true, nil); err != nil {
		t.Fatal(err)
	}
	g := rc.waitGoAway()
	if g.ErrCode != xhttp2.ErrCodeNo || g.LastStreamID != 5 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 5", g.ErrCode, g.LastStreamID)
	}
	rc.waitEOF()
}
