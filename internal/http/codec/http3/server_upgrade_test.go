package http3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	nethttp "net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// dialRaw opens an HTTP/3 client connection to ts without quic-go's
// RoundTripper, so that a test drives request streams itself.
func (ts *testServer) dialRaw(t *testing.T) (*quic.Conn, *quichttp3.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, ts.addr, &tls.Config{RootCAs: ts.roots, ServerName: "localhost", NextProtos: []string{ALPN}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return qc, (&quichttp3.Transport{}).NewClientConn(qc)
}

// extendedConnect sends an extended CONNECT with :protocol websocket on a
// new request stream.
func extendedConnect(t *testing.T, cc *quichttp3.ClientConn) *quichttp3.RequestStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://localhost/chat")
	req := &nethttp.Request{Method: nethttp.MethodConnect, Proto: "websocket", URL: u, Host: "localhost", Header: nethttp.Header{"Sec-Websocket-Version": {"13"}}}
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	return str
}

// TestServeExtendedConnect: with allow_extended_connect an extended
// CONNECT reaches the handler as an HTTP/1.1 upgrade and its 101 goes out
// as 200, the stream then carrying the tunnel both ways; without it the
// request is an invalid message: the connection closes, or only the stream
// is reset with override_stream_error_on_invalid_http_message.
func TestServeExtendedConnect(t *testing.T) {
	t.Run("allowed: upgrade both ways", func(t *testing.T) {
		got := make(chan []hhttp.HeaderField, 1)
		ts := startServer(t, hhttp.ServerOptions{HTTP3: &hhttp.HTTP3Options{AllowExtendedConnect: true}}, handlerFunc{serve: func(s hhttp.ServerStream) {
			got <- append([]hhttp.HeaderField(nil), s.RequestHeaders().Fields...)
			if s.RequestEndStream() {
				t.Error("RequestEndStream: a tunnel request has a body")
			}
			// The response is written on another goroutine while this one
			// reads the request, as the connection manager's concurrent
			// encoder does for a tunnel.
			chunks := make(chan []byte)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.WriteHeaders(headers(":status", "101", "upgrade", "websocket", "connection", "upgrade", "content-length", "0", "x-up", "1"), false)
				for c := range chunks {
					s.WriteData(c, false)
				}
				s.WriteData(nil, true)
			}()
			for {
				buf := make([]byte, 64)
				n, err := s.ReadBody(buf)
				if n > 0 {
					chunks <- buf[:n]
				}
				if err != nil {
					close(chunks)
					<-done
					return
				}
			}
		}})
		_, cc := ts.dialRaw(t)
		str := extendedConnect(t, cc)
		resp, err := str.ReadResponse()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Errorf("status %d, want 200 (101 becomes 200)", resp.StatusCode)
		}
		if diff := cmp.Diff(nethttp.Header{"X-Up": {"1"}}, resp.Header); diff != "" {
			t.Errorf("response header (-want +got):\n%s", diff)
		}
		want := []hhttp.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: "localhost"},
			{Name: ":path", Value: "/chat"}, {Name: "sec-websocket-version", Value: "13"}, {Name: "upgrade", Value: "websocket"}, {Name: "connection", Value: "upgrade"}}
		if diff := cmp.Diff(want, without(<-got, "accept-encoding", "user-agent")); diff != "" {
			t.Errorf("request headers (-want +got):\n%s", diff)
		}
		for _, msg := range []string{"ping", "pong"} {
			if _, err := str.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(str, buf); err != nil {
				t.Fatal(err)
			}
			if string(buf) != msg {
				t.Errorf("echo %q, want %q", buf, msg)
			}
		}
		str.Close()
		if b, err := io.ReadAll(str); err != nil || len(b) != 0 {
			t.Errorf("after close: %q, %v; want the tunnel's end", b, err)
		}
	})

	tests := []struct {
		name string
		opts hhttp.HTTP3Options
		// wantConnClosed: the connection closes with H3_MESSAGE_ERROR;
		// otherwise only the stream is reset with it.
		wantConnClosed bool
	}{
		{name: "refused: connection closes", opts: hhttp.HTTP3Options{}, wantConnClosed: true},
		{name: "refused: stream error", opts: hhttp.HTTP3Options{StreamErrorOnInvalidHTTPMessage: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, hhttp.ServerOptions{HTTP3: &tc.opts}, handlerFunc{serve: func(s hhttp.ServerStream) {
				s.WriteHeaders(headers(":status", "200"), true)
			}})
			qc, cc := ts.dialRaw(t)
			str := extendedConnect(t, cc)
			_, err := str.ReadResponse()
			if err == nil {
				t.Fatal("ReadResponse succeeded, want an error")
			}
			if tc.wantConnClosed {
				select {
				case <-qc.Context().Done():
				case <-time.After(5 * time.Second):
					t.Fatal("connection still open")
				}
				var ae *quic.ApplicationError
				if cause := context.Cause(qc.Context()); !errors.As(cause, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(quichttp3.ErrCodeMessageError) {
					t.Errorf("connection closed with %v, want H3_MESSAGE_ERROR", cause)
				}
				return
			}
			var se *quic.StreamError
			if !errors.As(err, &se) || se.ErrorCode != quic.StreamErrorCode(quichttp3.ErrCodeMessageError) {
				t.Errorf("ReadResponse: %v, want a stream reset with H3_MESSAGE_ERROR", err)
			}
			// The connection still serves requests.
			req, _ := nethttp.NewRequest("GET", "https://localhost/", nil)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				t.Fatalf("request after the reset: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestCloseConnWhenIdle: a stream asking for the connection to close when
// idle gets GOAWAY sent (no new stream may open) while a stream in flight
// finishes; the connection closes once it has.
func TestCloseConnWhenIdle(t *testing.T) {
	release := make(chan struct{})
	slowStarted := make(chan struct{})
	ts := startServer(t, hhttp.ServerOptions{}, handlerFunc{serve: func(s hhttp.ServerStream) {
		switch s.RequestHeaders().Path() {
		case "/slow":
			close(slowStarted)
			<-release
			s.WriteHeaders(headers(":status", "200"), false)
			s.WriteData([]byte("done"), true)
		default:
			s.(interface{ CloseConnWhenIdle() }).CloseConnWhenIdle()
			s.WriteHeaders(headers(":status", "403"), true)
		}
	}})
	qc, cc := ts.dialRaw(t)
	slowResp := make(chan error, 1)
	go func() {
		req, _ := nethttp.NewRequest("GET", "https://localhost/slow", nil)
		resp, err := cc.RoundTrip(req)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			if err == nil && string(b) != "done" {
				err = errors.New("body " + string(b))
			}
		}
		slowResp <- err
	}()
	<-slowStarted
	req, _ := nethttp.NewRequest("GET", "https://localhost/refuse", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	// GOAWAY arrives: the client may open no new request stream.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		str, err := cc.OpenRequestStream(ctx)
		cancel()
		if err != nil {
			break
		}
		str.CancelWrite(0)
		str.CancelRead(0)
		if time.Now().After(deadline) {
			t.Fatal("no GOAWAY: new request streams still open")
		}
	}
	select {
	case <-qc.Context().Done():
		t.Fatal("connection closed while a stream was active")
	default:
	}
	close(release)
	if err := <-slowResp; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	select {
	case <-qc.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open once idle")
	}
}
