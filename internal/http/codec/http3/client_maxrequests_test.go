package http3

import (
	"context"
	"io"
	nethttp "net/http"
	"sync/atomic"
	"testing"

	"github.com/quic-go/quic-go"
)

// TestClientMaxRequestsPerConnection: a connection that has carried
// MaxRequestsPerConnection streams leaves the pool and closes after its
// last stream; OnConnect counts every connection, OnMaxRequests every
// connection that reached the limit.
func TestClientMaxRequestsPerConnection(t *testing.T) {
	u := startUpstream(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "ok")
	}))
	get := headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/")
	tests := []struct {
		name       string
		max        uint32
		requests   int
		wantConns  int32
		wantMaxed  int32
		wantPooled int
		wantClosed int // connections closed by the client after the requests
	}{
		{name: "unlimited", max: 0, requests: 5, wantConns: 1, wantMaxed: 0, wantPooled: 1, wantClosed: 0},
		// 2+2+1: the third connection carried one stream and stays pooled.
		{name: "two per connection", max: 2, requests: 5, wantConns: 3, wantMaxed: 2, wantPooled: 1, wantClosed: 2},
		{name: "one per connection", max: 1, requests: 3, wantConns: 3, wantMaxed: 3, wantPooled: 0, wantClosed: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var connects, maxed atomic.Int32
			c := NewClient(ClientOptions{
				MaxRequestsPerConnection: tc.max,
				OnConnect:                func() { connects.Add(1) },
				OnMaxRequests:            func() { maxed.Add(1) },
			})
			t.Cleanup(func() { c.Close() })
			dials := u.dials.Load()
			var conns []*quic.Conn
			for range tc.requests {
				s, err := c.NewStream(context.Background(), u.addr, u.dial)
				if err != nil {
					t.Fatalf("NewStream: %v", err)
				}
				if qc := s.(*upstreamStream).pc.qc; len(conns) == 0 || conns[len(conns)-1] != qc {
					conns = append(conns, qc)
				}
				finishStream(t, s, get)
			}
			if got := u.dials.Load() - dials; got != tc.wantConns {
				t.Errorf("dials = %d, want %d", got, tc.wantConns)
			}
			if got := connects.Load(); got != tc.wantConns {
				t.Errorf("OnConnect calls = %d, want %d", got, tc.wantConns)
			}
			if got := maxed.Load(); got != tc.wantMaxed {
				t.Errorf("OnMaxRequests calls = %d, want %d", got, tc.wantMaxed)
			}
			if got := c.connCount(u.addr); got != tc.wantPooled {
				t.Errorf("pooled connections = %d, want %d", got, tc.wantPooled)
			}
			closed := 0
			for _, qc := range conns {
				// CloseWithError returns once the connection is closed.
				if qc.Context().Err() != nil {
					closed++
				}
			}
			if closed != tc.wantClosed {
				t.Errorf("closed connections = %d, want %d", closed, tc.wantClosed)
			}
		})
	}
}
