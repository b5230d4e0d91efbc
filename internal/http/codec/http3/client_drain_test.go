package http3

import (
	"context"
	"errors"
	"io"
	nethttp "net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestClientDrain: Drain closes an idle connection at once, lets a busy
// one finish its stream and closes it then, and gives a stream opened
// afterwards a connection of its own, closed when that stream ends.
func TestClientDrain(t *testing.T) {
	release := make(chan struct{})
	u := startUpstream(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(200)
			w.(nethttp.Flusher).Flush()
			<-release
		}
		io.WriteString(w, "ok")
	}))
	get := headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/")
	hold := headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/hold")
	conn := func(c *Client, key string) *quic.Conn {
		hp := c.hostPool(key)
		hp.mu.Lock()
		defer hp.mu.Unlock()
		if len(hp.conns) != 1 {
			t.Fatalf("%s has %d pooled connections, want 1", key, len(hp.conns))
		}
		return hp.conns[0].qc
	}
	closed := func(qc *quic.Conn) bool {
		select {
		case <-qc.Context().Done():
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}

	c := newTestClient(t)
	// "idle" carries a finished exchange, "busy" a response in flight.
	roundTrip(t, c, u, get, "", nil)
	idle := conn(c, u.addr)
	busyStream, err := c.NewStream(context.Background(), "busy", u.dial)
	if err != nil {
		t.Fatal(err)
	}
	if err := busyStream.WriteHeaders(hold, true); err != nil {
		t.Fatal(err)
	}
	var rh hhttp.Headers
	if _, err := busyStream.ReadHeaders(&rh); err != nil {
		t.Fatal(err)
	}
	busy := conn(c, "busy")

	c.Drain()
	if !closed(idle) {
		t.Error("idle connection not closed by Drain")
	}
	if busy.Context().Err() != nil {
		t.Fatal("busy connection closed by Drain")
	}
	if n := c.connCount("busy"); n != 0 {
		t.Errorf("drained client still pools %d connections", n)
	}

	// A stream after Drain: its own connection, closed after it.
	dials := u.dials.Load()
	s, err := c.NewStream(context.Background(), u.addr, u.dial)
	if err != nil {
		t.Fatalf("NewStream after Drain: %v", err)
	}
	straggler := s.(*upstreamStream).pc.qc
	finishStream(t, s, get)
	if got := u.dials.Load(); got != dials+1 {
		t.Errorf("dials after Drain = %d, want %d", got, dials+1)
	}
	if !closed(straggler) {
		t.Error("connection of a stream opened after Drain not closed when it ended")
	}

	close(release)
	b, err := io.ReadAll(readerFunc(busyStream.ReadBody))
	if err != nil || string(b) != "ok" {
		t.Fatalf("busy stream body %q, err %v; want it to finish", b, err)
	}
	busyStream.Close(nil)
	if !closed(busy) {
		t.Error("busy connection not closed after its last stream")
	}
}

// finishStream sends req on s, reads the whole response and closes s.
func finishStream(t *testing.T, s hhttp.UpstreamStream, req *hhttp.Headers) {
	t.Helper()
	if err := s.WriteHeaders(req, true); err != nil {
		t.Fatal(err)
	}
	var rh hhttp.Headers
	if _, err := s.ReadHeaders(&rh); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(readerFunc(s.ReadBody)); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	s.Close(nil)
}
