package http2

import (
	"context"
	nethttp "net/http"
	"sync/atomic"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestClientMaxRequestsPerConnection: a connection that has carried
// MaxRequestsPerConnection streams leaves the pool and closes after its
// last stream; OnConnect counts every connection, OnMaxRequests every
// connection that reached the limit.
func TestClientMaxRequestsPerConnection(t *testing.T) {
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	dial := dialer(be.addr)
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
			c := newTestClient(t, ClientOptions{
				MaxRequestsPerConnection: tc.max,
				OnConnect:                func() { connects.Add(1) },
				OnMaxRequests:            func() { maxed.Add(1) },
			})
			before := be.accepted.Load()
			var conns []*poolConn
			for range tc.requests {
				s, err := c.NewStream(context.Background(), be.addr, dial)
				if err != nil {
					t.Fatalf("NewStream: %v", err)
				}
				if pc := s.(*upstreamStream).pc; len(conns) == 0 || conns[len(conns)-1] != pc {
					conns = append(conns, pc)
				}
				finishExchange(t, s)
			}
			if got := be.accepted.Load() - before; got != tc.wantConns {
				t.Errorf("backend connections = %d, want %d", got, tc.wantConns)
			}
			if got := connects.Load(); got != tc.wantConns {
				t.Errorf("OnConnect calls = %d, want %d", got, tc.wantConns)
			}
			if got := maxed.Load(); got != tc.wantMaxed {
				t.Errorf("OnMaxRequests calls = %d, want %d", got, tc.wantMaxed)
			}
			if got := c.connCount(be.addr); got != tc.wantPooled {
				t.Errorf("pooled connections = %d, want %d", got, tc.wantPooled)
			}
			closed := 0
			for _, pc := range conns {
				if pc.cc.State().Closed {
					closed++
				}
			}
			if closed != tc.wantClosed {
				t.Errorf("closed connections = %d, want %d", closed, tc.wantClosed)
			}
		})
	}
}

// TestClientMaxRequestsBusy: the stream that spends a connection's last
// request sends the next stream to a new connection at once, while the
// spent connection closes only when its last stream ends.
func TestClientMaxRequestsBusy(t *testing.T) {
	hold := make(chan struct{})
	be := startBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(200)
			w.(nethttp.Flusher).Flush()
			<-hold
		}
		_, _ = w.Write([]byte("ok"))
	}))
	dial := dialer(be.addr)
	c := newTestClient(t, ClientOptions{MaxRequestsPerConnection: 2})
	open := func(path string) hhttp.UpstreamStream {
		t.Helper()
		s, err := c.NewStream(context.Background(), be.addr, dial)
		if err != nil {
			t.Fatalf("NewStream: %v", err)
		}
		if err := s.WriteHeaders(requestHeaders("GET", "a", path), true); err != nil {
			t.Fatalf("WriteHeaders: %v", err)
		}
		var res hhttp.Headers
		if _, err := s.ReadHeaders(&res); err != nil {
			t.Fatalf("ReadHeaders: %v", err)
		}
		return s
	}
	s1 := open("/hold")
	s2 := open("/hold")
	spent := s1.(*upstreamStream).pc
	if s2.(*upstreamStream).pc != spent {
		t.Fatal("second stream went to another connection, want the first one's")
	}
	s3 := open("/")
	if s3.(*upstreamStream).pc == spent {
		t.Fatal("third stream went to the spent connection")
	}
	drainBody(t, s3)
	s3.Close(nil)
	close(hold)
	drainBody(t, s1)
	s1.Close(nil)
	if spent.cc.State().Closed {
		t.Fatal("spent connection closed with a stream still open")
	}
	drainBody(t, s2)
	s2.Close(nil)
	eventually(t, "the spent connection to close after its last stream", func() bool { return spent.cc.State().Closed })
	if got := be.accepted.Load(); got != 2 {
		t.Errorf("backend connections = %d, want 2", got)
	}
}

// finishExchange sends a GET on s, reads the whole response and closes s.
func finishExchange(t *testing.T, s hhttp.UpstreamStream) {
	t.Helper()
	if err := s.WriteHeaders(requestHeaders("GET", "a", "/"), true); err != nil {
		t.Fatalf("WriteHeaders: %v", err)
	}
	var res hhttp.Headers
	if _, err := s.ReadHeaders(&res); err != nil {
		t.Fatalf("ReadHeaders: %v", err)
	}
	drainBody(t, s)
	s.Close(nil)
}

// drainBody reads s's body to its end and checks it is "ok".
func drainBody(t *testing.T, s hhttp.UpstreamStream) {
	t.Helper()
	var body []byte
	buf := make([]byte, 64)
	for {
		n, err := s.ReadBody(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(body) != "ok" {
		t.Errorf("body = %q, want %q", body, "ok")
	}
}
